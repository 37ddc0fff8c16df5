import type { TandemConfig } from '../config/schema.js';
import { requeueKey } from '../consistency/requeue-key.js';
import { SafetyBrake } from '../consistency/safety-brake.js';
import type { StageReconciler } from '../cutover/stage-reconciler.js';
import { makeStoreBreaker, type StoreBreaker } from '../db/breaker.js';
import type { Store } from '../db/store.js';
import type { EventBus } from '../events.js';
import type { FlagSource } from '../flags/flag-source.js';
import type { PendingKeys } from '../outbox/pending-keys.js';
import type { Policy } from '../policy/policy.js';
import { ConsistencyWindow } from '../read/consistency-window.js';
import { ReadRouting } from '../read/read-routing.js';
import { ReadService } from '../read/read-service.js';

export interface Reads {
  reads: ReadService;
  routing: ReadRouting;
  consistency: ConsistencyWindow;
  brake: SafetyBrake;
  /** The shadow reads' own breakers (quiet: they are not the stores' health). */
  shadowBreakers: { source: StoreBreaker; target: StoreBreaker };
}

export interface ReadDeps {
  config: Readonly<TandemConfig>;
  events: EventBus;
  source: Store;
  target: Store;
  /** The store read-repair re-enqueues into (the tables' primary). */
  primary: Store;
  policies: ReadonlyMap<string, Policy>;
  flags: FlagSource;
  reconciler: StageReconciler;
  targetBreaker: StoreBreaker;
  pending: PendingKeys;
  /** Whether the table's primary is the target now (the brake's automatic rollback). */
  targetPrimary?: (table: string) => boolean;
}

/**
 * The read side (DESIGN §4): routing by flags, stage, brake, breaker and read-your-writes;
 * shadow reads with breakers of their own; the consistency window fed by shadow results;
 * the safety brake fed by every event.
 */
export function makeReads(d: ReadDeps): Reads {
  const { config, events } = d;
  const quiet = { emit: () => undefined };
  const shadowBreakers = { source: makeStoreBreaker('source', { ...config.apply }, quiet), target: makeStoreBreaker('target', { ...config.apply }, quiet) };
  const brake = new SafetyBrake([...d.policies.values()], events, Date.now, d.targetPrimary ?? (() => false));
  events.on((event) => brake.observe(event));
  const routing = new ReadRouting({ flags: d.flags, stage: (t) => d.reconciler.get(t), targetBreaker: d.targetBreaker, pending: d.pending, braked: (t) => brake.braked(t) });
  const consistency = new ConsistencyWindow(config.read.consistencySamples, config.read.consistencyWindowMs);
  events.on((event) => {
    if (event.type !== 'shadow' || event.result === 'error') return;
    consistency.record(event.table, event.result === 'match');
    events.emit({ type: 'consistency', table: event.table, ...consistency.ratio(event.table) });
  });
  const reads = new ReadService({
    source: d.source,
    target: d.target,
    routing,
    targetBreaker: d.targetBreaker,
    shadowBreakers,
    events,
    repair: async (policy, key) => {
      // Read-repair re-enqueues the source image: only while the source is primary.
      if (d.targetPrimary?.(policy.name)) return;
      await requeueKey(d.primary, policy, key);
    },
    options: { targetTimeoutMs: config.read.targetTimeoutMs, shadowTimeoutMs: config.read.shadowTimeoutMs },
  });
  return { reads, routing, consistency, brake, shadowBreakers };
}
