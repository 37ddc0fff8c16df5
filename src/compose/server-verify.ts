import { runVerify } from '../consistency/run-verify.js';
import type { VerifyOptions, VerifyReport } from '../consistency/verify.js';
import { directionOf } from '../cutover/direction.js';
import type { StoreName } from '../db/store.js';
import { TandemError } from '../errors.js';
import type { EventSink } from '../events.js';
import type { Core } from './open-core.js';
import type { VerifySummary } from './status.js';

/**
 * verify (and --repair) from inside the server, in the table's current direction: differing keys are re-enqueued under a row
 * lock and the worker applies them (`after` wakes it); a clean verify of a dual-writing
 * table clears its stale mark. The summary is kept for `/admin/status`.
 */
export async function verifyInServer(
  core: Core | undefined,
  table: string,
  primary: StoreName,
  events: EventSink,
  lastVerify: Map<string, VerifySummary>,
  options: VerifyOptions & { repair?: boolean },
  after: () => Promise<void>,
): Promise<VerifyReport & { repaired: number; staleCleared: boolean }> {
  const policy = core?.policies.get(table);
  if (!policy || !core) throw new TandemError('unknown_table', 404, `table: no table named "${table.slice(0, 64)}"`, { field: 'table' });
  // Whichever store is primary: map(primary) against the secondary (inverse mapping after a cutover).
  const direction = directionOf(core.source, core.target, policy, primary);
  const result = await runVerify(direction.from, direction.to, direction.policy, events, options);
  const { differingKeys: _keys, ...summary } = result;
  lastVerify.set(table, { ...summary, finishedAt: new Date().toISOString() });
  await after();
  return result;
}
