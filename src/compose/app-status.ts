import type { StoreBreaker } from '../db/breaker.js';
import type { Store } from '../db/store.js';
import type { FlagSource } from '../flags/flag-source.js';
import { orphanStats } from '../outbox/orphans.js';
import { outboxStats } from '../outbox/outbox-stats.js';
import { workerHealth, type WorkerHealth } from '../outbox/worker-health.js';
import type { Reads } from './make-reads.js';
import type { WriteSide } from './make-write-side.js';
import type { Core } from './open-core.js';
import { buildStatus, type VerifySummary } from './status.js';

/** What the app holds while it runs; each part is undefined until start() has built it. */
export interface AppParts {
  version: string;
  startedAt: number;
  stallAfterMs: number;
  core: Core | undefined;
  stores: { source?: Store; target?: Store };
  flags: FlagSource | undefined;
  breakers: ReadonlyMap<string, StoreBreaker>;
  write: WriteSide | undefined;
  read: Reads | undefined;
  lastVerify: ReadonlyMap<string, VerifySummary>;
  schemaNotReady: ReadonlyMap<string, { error: string; since: string }>;
}

/** Is the outbox worker making progress? (outbox/worker-health.ts) */
export function writeSideHealth(write: WriteSide | undefined, targetBreaker: StoreBreaker | undefined, stallAfterMs: number): WorkerHealth {
  const now = Date.now();
  const worker = write?.delivery.worker;
  return workerHealth({
    now,
    lastRoundAt: worker?.lastRoundAt ?? now,
    lastProgressAt: worker?.lastProgressAt ?? now,
    tables: write?.housekeeper?.stats() ?? [],
    breaker: targetBreaker?.state(),
    stallAfterMs,
  });
}

/** `/admin/status` (status.ts), with the outbox counted for this call; `parts` is read again after the count (start may have gone on meanwhile). */
export async function collectStatus(parts: () => AppParts): Promise<unknown> {
  const before = parts();
  const primary = before.write?.delivery.route.primary;
  const tables = [...(before.core?.policies.keys() ?? [])];
  // Counted in the primary's outbox now; the housekeeper's last count when it does not answer in time.
  const fresh = primary ? await withTimeout(outboxStats(primary, tables), 2_000).catch(() => undefined) : undefined;
  const orphans = primary ? await withTimeout(orphanStats(primary), 2_000).catch(() => null) : null;
  const p = parts();
  const housekeeper = p.write?.housekeeper;
  return buildStatus({
    outboxCount: fresh ? { stats: fresh, countedAt: Date.now() } : { stats: housekeeper?.stats() ?? [], countedAt: housekeeper?.countedAt ?? 0 },
    worker: writeSideHealth(p.write, p.breakers.get('target'), p.stallAfterMs),
    orphans,
    schemaNotReady: p.schemaNotReady,
    version: p.version,
    startedAt: p.startedAt,
    source: p.stores.source,
    target: p.stores.target,
    breakers: p.breakers,
    flags: p.flags,
    policies: p.core?.policies ?? new Map(),
    reconciler: p.write?.reconciler,
    routing: p.read?.routing,
    consistency: p.read?.consistency,
    brake: p.read?.brake,
    housekeeper,
    reverseHousekeeper: p.write?.reverseHousekeeper,
    directory: p.write?.directory,
    lastVerify: p.lastVerify,
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
