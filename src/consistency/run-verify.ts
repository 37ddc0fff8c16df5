import type { Store } from '../db/store.js';
import { readStateForUpdate, writeState } from '../db/table-state.js';
import type { EventSink } from '../events.js';
import type { Policy } from '../policy/policy.js';
import type { KeyValues } from '../shared/row.js';
import { requeueKey } from './requeue-key.js';
import { verifyTable, type VerifyOptions, type VerifyReport } from './verify.js';

/**
 * Runs verify, publishes its metrics, repairs when asked (re-enqueue each differing key's
 * source image under a row lock), and clears the stale mark after a clean run while
 * dual-write is on. Shared by the admin endpoint and the CLI.
 */
export async function runVerify(
  source: Store,
  target: Store,
  policy: Policy,
  events: EventSink,
  options: VerifyOptions & { repair?: boolean },
): Promise<VerifyReport & { repaired: number; staleCleared: boolean }> {
  const report = await verifyTable(source, target, policy, options);
  events.emit({ type: 'verify', report });
  let repaired = 0;
  if (options.repair) {
    for (const key of report.differingKeys as KeyValues[]) if (await requeueKey(source, policy, key)) repaired++;
  }
  let staleCleared = false;
  if (report.clean) {
    staleCleared = await source.knex.transaction(async (trx) => {
      const state = await readStateForUpdate(trx, source.adapter, policy.name);
      if (!state?.dualWrite || !state.stale) return false;
      await writeState(trx, policy.name, { stale: false, staleReason: null });
      return true;
    });
    if (staleCleared) events.emit({ type: 'stage', table: policy.name, stage: 'dual-write', stale: false, reason: 'a clean verify cleared the stale mark' });
  }
  return { ...report, repaired, staleCleared };
}
