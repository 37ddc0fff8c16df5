import type { Context } from 'unleash-client';
import type { StoreName } from '../db/store.js';
import type { TableStage } from '../flags/table-stage.js';
import type { FeatureView, FlagSource } from '../flags/flag-source.js';
import { flagNames, KILL_SWITCH_FLAG } from '../flags/resolve-stage.js';
import type { Policy } from '../policy/policy.js';
import type { StoreBreaker } from '../db/breaker.js';
import type { PendingKeys } from '../outbox/pending-keys.js';

export interface RouteDecision {
  store: StoreName;
  /** The table's primary for this read (the target after a cutover). */
  primary: StoreName;
  shadow: boolean;
  /** Why the primary serves when the target was asked for (status, debugging). */
  reason: string;
}

export interface ReadRoutingDeps {
  flags: FlagSource;
  stage: (table: string) => TableStage | undefined;
  targetBreaker: StoreBreaker;
  pending: PendingKeys;
  /** True while the table's safety brake holds reads on the primary. */
  braked?: (table: string) => boolean;
}

/**
 * Decides per read which store serves it and whether it is shadowed. The target serves only
 * when asked for by `read-target` (sticky per key) and trusted: dual-writing, not stale,
 * breaker closed, not braked, and no pending write of the key known to this process.
 */
export class ReadRouting {
  constructor(private readonly deps: ReadRoutingDeps) {}

  decide(policy: Policy, input: { stickyKey: string | undefined; rowKey: string | undefined }): RouteDecision {
    const { flags } = this.deps;
    const stage = this.deps.stage(policy.name);
    // Reads follow the primary; mid-switch, the frozen old primary still holds every write.
    const primary: StoreName = stage?.primary ? (stage.primary.primary ?? stage.primary.switching?.from ?? 'source') : 'source';
    if (!flags.synchronized()) return { store: primary, primary, shadow: false, reason: 'flags not loaded yet' };
    if (flags.isEnabled(KILL_SWITCH_FLAG)) return { store: primary, primary, shadow: false, reason: 'kill switch' };
    const names = flagNames(policy.name);
    const context: Context =
      input.stickyKey === undefined
        ? {}
        : { userId: input.stickyKey, sessionId: input.stickyKey, properties: { stickyKey: input.stickyKey } };
    if (primary === 'target') {
      // After a cutover the target serves every read; `shadow-read` compares the source (now
      // the secondary). The source is never served: it trails the target by the reverse lag.
      const pendingHere = input.rowKey === undefined ? this.deps.pending.count(policy.name) > 0 : this.deps.pending.has(policy.name, input.rowKey);
      // A retired (stale) source is not compared: it misses writes by design.
      const sourceStale = stage?.primary?.target.stale ?? false;
      return { store: 'target', primary, shadow: !pendingHere && !sourceStale && flags.isEnabled(names.shadowRead, context), reason: 'target is primary' };
    }
    if (!stage || stage.stage !== 'dual-write') return { store: primary, primary, shadow: false, reason: 'table is not dual-writing' };
    const stale = stage.state?.stale ?? false;
    const pending = input.rowKey === undefined ? this.deps.pending.count(policy.name) > 0 : this.deps.pending.has(policy.name, input.rowKey);
    const shadow = !stale && !pending && flags.isEnabled(names.shadowRead, context);
    if (!flags.isEnabled(names.readTarget, context)) return { store: primary, primary, shadow, reason: 'read-target not on for this key' };
    if (stale) return { store: primary, primary, shadow, reason: 'target is stale' };
    if (this.deps.braked?.(policy.name)) return { store: primary, primary, shadow, reason: 'safety brake' };
    if (this.deps.targetBreaker.state() !== 'closed') return { store: primary, primary, shadow, reason: 'target breaker not closed' };
    if (pending) return { store: primary, primary, shadow, reason: 'pending write (read-your-writes)' };
    return { store: 'target', primary, shadow, reason: 'read-target' };
  }

  isPending(table: string, rowKey: string): boolean {
    return this.deps.pending.has(table, rowKey);
  }

  /** The share a flag grants (0–100), read off its strategies, for status and metrics. */
  percent(table: string, flag: 'readTarget' | 'shadowRead'): number {
    if (!this.deps.flags.synchronized()) return 0;
    const name = flagNames(table)[flag];
    const feature = this.deps.flags.features().find((f) => f.name === name);
    return featurePercent(feature);
  }
}

export function featurePercent(feature: FeatureView | undefined): number {
  if (!feature?.enabled) return 0;
  let best = 0;
  for (const strategy of feature.strategies) {
    const p = strategy.parameters ?? {};
    if (strategy.name === 'default') best = 100;
    else if (strategy.name === 'flexibleRollout') best = Math.max(best, Number(p['rollout'] ?? 0));
    else if (strategy.name.startsWith('gradualRollout')) best = Math.max(best, Number(p['percentage'] ?? 0));
  }
  return Math.max(0, Math.min(100, best));
}
