import type { SafetyBrake } from '../consistency/safety-brake.js';
import type { VerifyReport } from '../consistency/verify.js';
import type { StageReconciler } from '../cutover/stage-reconciler.js';
import type { StoreBreaker } from '../db/breaker.js';
import type { Store, StoreName } from '../db/store.js';
import type { FlagSource } from '../flags/flag-source.js';
import { flagNames, KILL_SWITCH_FLAG } from '../flags/resolve-stage.js';
import type { TableStage } from '../flags/table-stage.js';
import type { Housekeeper } from '../outbox/housekeeper.js';
import type { PrimaryDirectory } from '../cutover/primary-directory.js';
import type { Policy } from '../policy/policy.js';
import type { ConsistencyWindow } from '../read/consistency-window.js';
import type { ReadRouting } from '../read/read-routing.js';
import type { OutboxTableStats } from '../events.js';
import type { OrphanStats } from '../outbox/orphans.js';
import type { WorkerHealth } from '../outbox/worker-health.js';
import { lagOf } from './outbox-gauges.js';

export type VerifySummary = Omit<VerifyReport, 'differingKeys'> & { finishedAt: string };

/** Everything `/admin/status` reads; each part may be missing while the app starts. */
export interface StatusSources {
  version: string;
  startedAt: number;
  source: Store | undefined;
  target: Store | undefined;
  /** The breaker guarding each store as a secondary. */
  breakers: ReadonlyMap<string, StoreBreaker>;
  flags: FlagSource | undefined;
  policies: ReadonlyMap<string, Policy>;
  reconciler: StageReconciler | undefined;
  routing: ReadRouting | undefined;
  consistency: ConsistencyWindow | undefined;
  brake: SafetyBrake | undefined;
  housekeeper: Housekeeper | undefined;
  /** The target's outbox (reverse replication after a cutover). */
  reverseHousekeeper?: Housekeeper | undefined;
  /** Each table's primary, epoch and switch, read from both state rows. */
  directory?: PrimaryDirectory | undefined;
  lastVerify: ReadonlyMap<string, VerifySummary>;
  /** The outbox as counted for this call (or the last count, when the primary did not answer in time). */
  outboxCount?: { stats: readonly OutboxTableStats[]; countedAt: number };
  worker?: WorkerHealth;
  orphans?: OrphanStats[] | null;
  /** Tables whose target schema refused their rows, with the code and since when. */
  schemaNotReady?: ReadonlyMap<string, { error: string; since: string }>;
}

/**
 * Which store holds a table's primary copy, from its state row: the reconciler reads the
 * source's row, whose role is `primary` before cutover, `secondary` after it and `frozen`
 * while the switch runs (the source still holds the writes then).
 */
export function primaryOf(stage: TableStage | undefined): StoreName {
  return stage?.state?.role === 'secondary' ? 'target' : 'source';
}

/** `/admin/status`: stores, flags and, per table, stage, primary, read shares, brake, outbox. */
export function buildStatus(s: StatusSources): unknown {
  const counted = s.outboxCount ?? { stats: s.housekeeper?.stats() ?? [], countedAt: s.housekeeper?.countedAt ?? 0 };
  const stats = new Map(counted.stats.map((t) => [t.table, t]));
  const now = Date.now();
  const reverseStats = new Map((s.reverseHousekeeper?.stats() ?? []).map((t) => [t.table, t]));
  const flags = s.flags;
  const tables = [...s.policies.values()].map((policy) => {
    const stage = s.reconciler?.get(policy.name);
    const names = flagNames(policy.name);
    const outbox = stats.get(policy.name);
    const view = s.directory?.get(policy.name);
    const reverse = reverseStats.get(policy.name);
    return {
      table: policy.name,
      targetTable: policy.targetTable,
      stage: stage?.stage ?? 'source-only',
      // null while a switch holds the table frozen (see `switch`).
      primary: view ? view.primary : primaryOf(stage),
      switching: view ? view.switching !== null : stage?.state?.role === 'frozen',
      switch: view?.switching ? { ...view.switching, elapsedMs: Date.now() - view.switching.startedAt } : null,
      lastSwitchMs: view?.lastSwitchMs ?? 0,
      epoch: view?.epoch ?? stage?.state?.epoch ?? 1,
      // The current secondary may lack rows: the target before a cutover, the source after retire-source.
      stale: view?.primary === 'target' ? view.target.stale : (stage?.state?.stale ?? false),
      staleReason: view?.primary === 'target' ? view.target.staleReason : (stage?.state?.staleReason ?? null),
      reverse: { pending: reverse?.pending ?? 0, dead: reverse?.dead ?? 0, lagSeconds: reverse?.lagSeconds ?? 0 },
      flagConflict: stage?.conflict ?? null,
      flags: {
        dualWrite: flags?.isEnabled(names.dualWrite) ?? false,
        targetPrimary: flags?.isEnabled(names.targetPrimary) ?? false,
        retireSource: flags?.isEnabled(names.retireSource) ?? false,
      },
      readTargetPercent: s.routing?.percent(policy.name, 'readTarget') ?? 0,
      shadowReadPercent: s.routing?.percent(policy.name, 'shadowRead') ?? 0,
      consistency: s.consistency?.ratio(policy.name) ?? { ratio: 1, samples: 0 },
      brake: s.brake?.status(policy.name) ?? null,
      lastVerify: s.lastVerify.get(policy.name) ?? null,
      targetSchema: s.schemaNotReady?.has(policy.name)
        ? { ready: false, problem: 'the target schema is not ready', ...s.schemaNotReady.get(policy.name) }
        : { ready: true },
      outbox: {
        pending: outbox?.pending ?? 0,
        dead: outbox?.dead ?? 0,
        lagSeconds: outbox ? lagOf(outbox, now) : 0,
        countedAt: counted.countedAt ? new Date(counted.countedAt).toISOString() : null,
      },
    };
  });
  // A store is primary when it holds the primary copy of any table (all of them, today).
  const primaries = new Set(tables.map((t) => t.primary ?? 'source'));
  const store = (name: StoreName, st: Store | undefined) => ({
    url: st?.displayUrl,
    dialect: st?.dialect,
    // The primary has no breaker: a failing primary is the client's answer (503), never queued.
    breaker: primaries.has(name) ? null : (s.breakers.get(name)?.state() ?? null),
    role: primaries.has(name) ? 'primary' : 'secondary',
    // Replication sessions (src/db/replication-session.ts): FK checks off, or why not.
    ...(primaries.has(name) ? {} : { foreignKeyChecks: st?.session.foreignKeyChecks ?? 'unknown', foreignKeyNote: st?.session.note ?? null }),
  });
  return {
    version: s.version,
    uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
    stores: { source: store('source', s.source), target: store('target', s.target) },
    flags: {
      origin: flags?.origin,
      synchronized: flags?.synchronized() ?? false,
      lastError: flags?.lastError() ?? null,
      killSwitch: flags?.isEnabled(KILL_SWITCH_FLAG) ?? false,
    },
    worker: s.worker ?? null,
    // Rows of tables that lost their policy: set aside, not applied, not dropped.
    orphans: s.orphans ?? null,
    tables,
  };
}
