import type { Store } from '../db/store.js';
import { readAllStates, readStateForUpdate, writeState, type TableState } from '../db/table-state.js';
import { coerceError } from '../errors.js';
import type { EventSink, Stage } from '../events.js';
import type { FlagSource } from '../flags/flag-source.js';
import { flagNames, resolveStage } from '../flags/resolve-stage.js';
import type { TableStage } from '../flags/table-stage.js';
import type { Policy } from '../policy/policy.js';


/**
 * Turns flags (desired state) into each table's recorded state in `tandem_state` on the
 * primary. A change takes the state row exclusively, so it waits for in-flight writes
 * (which hold it shared) and every write after it sees the new stage. Idempotent: any
 * number of replicas may reconcile at once.
 */
export class StageReconciler {
  private readonly stages = new Map<string, TableStage>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly source: Store,
    private readonly target: Store,
    private readonly policies: readonly Policy[],
    private readonly flags: FlagSource,
    private readonly events: EventSink,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.timer) return;
    this.flags.onChange(() => void this.reconcileSoon());
    this.timer = setInterval(() => void this.reconcileSoon(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  get(table: string): TableStage | undefined {
    return this.stages.get(table);
  }

  /** Runs a reconcile now, or once more after the one in flight. */
  reconcileSoon(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.reconcileAll();
      } while (this.again);
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  async reconcileAll(): Promise<void> {
    // Without any flags (Unleash unreachable at a cold start) the recorded stage stands:
    // switching dual-write off would mark every target stale for nothing.
    if (!this.flags.synchronized()) {
      await this.loadRecorded();
      return;
    }
    let states: Map<string, TableState>;
    try {
      states = new Map((await readAllStates(this.source.knex)).map((s) => [s.table, s]));
    } catch (error) {
      this.events.emit({ type: 'background.error', component: 'stage.reconcile', error: coerceError(error) });
      return;
    }
    for (const policy of this.policies) {
      try {
        await this.reconcileTable(policy, states.get(policy.name));
      } catch (error) {
        this.events.emit({ type: 'background.error', component: 'stage.reconcile', error: coerceError(error) });
      }
    }
  }

  private async loadRecorded(): Promise<void> {
    try {
      for (const state of await readAllStates(this.source.knex)) {
        if (!this.policies.some((p) => p.name === state.table)) continue;
        const before = this.stages.get(state.table);
        const stage: Stage = state.dualWrite ? 'dual-write' : 'source-only';
        this.stages.set(state.table, { table: state.table, stage, state, conflict: before?.conflict });
        if (!before) this.events.emit({ type: 'stage', table: state.table, stage, stale: state.stale, reason: 'recorded stage (flags not loaded yet)' });
      }
    } catch (error) {
      this.events.emit({ type: 'background.error', component: 'stage.reconcile', error: coerceError(error) });
    }
  }

  private async reconcileTable(policy: Policy, state: TableState | undefined): Promise<void> {
    const names = flagNames(policy.name);
    const previous: Stage = state?.dualWrite ? 'dual-write' : 'source-only';
    const decision = resolveStage(
      {
        dualWrite: this.flags.isEnabled(names.dualWrite),
        targetPrimary: this.flags.isEnabled(names.targetPrimary),
        retireSource: this.flags.isEnabled(names.retireSource),
      },
      previous,
    );
    const before = this.stages.get(policy.name);
    if (decision.conflict && decision.conflict !== before?.conflict) {
      this.events.emit({ type: 'flag.conflict', table: policy.name, reason: decision.conflict });
    }
    let current = state;
    let reason: string | undefined;
    const wantDual = decision.stage === 'dual-write';
    if (state && state.dualWrite !== wantDual) ({ state: current, reason } = await this.switchDualWrite(policy, wantDual));
    this.stages.set(policy.name, { table: policy.name, stage: decision.stage, state: current, conflict: decision.conflict });
    if (!before || reason || before.stage !== decision.stage || before.state?.stale !== current?.stale) {
      this.events.emit({
        type: 'stage',
        table: policy.name,
        stage: decision.stage,
        stale: current?.stale ?? false,
        reason: reason ?? (before ? 'state changed' : 'started') + (current?.staleReason ? `; ${current.staleReason}` : ''),
      });
    }
  }

  private async switchDualWrite(policy: Policy, on: boolean): Promise<{ state: TableState | undefined; reason: string | undefined }> {
    // Read the target before taking the lock: it may be slow or down, and writers wait on the lock.
    let targetEmpty: boolean | undefined;
    if (on) {
      try {
        targetEmpty = (await this.target.knex(policy.targetTable).first(policy.targetPrimaryKey[0] as string)) === undefined;
      } catch {
        targetEmpty = undefined;
      }
    }
    const result = await this.source.knex.transaction(async (trx) => {
      const state = await readStateForUpdate(trx, this.source.adapter, policy.name);
      if (!state || state.dualWrite === on) return { state, reason: undefined };
      let reason: string;
      let stale: boolean;
      if (on) {
        const sourceEmpty = (await trx(policy.sourceTable).first(policy.primaryKey[0] as string)) === undefined;
        if (state.everDualWrite) {
          stale = true;
          reason = state.staleReason ?? 'dual-write was off for a while: the target missed writes';
        } else if (!sourceEmpty) {
          stale = true;
          reason = 'dual-write began while the source table already held rows: backfill and verify';
        } else if (targetEmpty === undefined) {
          stale = true;
          reason = 'the target could not be checked when dual-write began: verify it';
        } else if (!targetEmpty) {
          stale = true;
          reason = 'dual-write began while the target table held rows the source does not have';
        } else {
          stale = state.stale;
          reason = state.staleReason ?? 'dual-write began with both tables empty';
        }
        await writeState(trx, policy.name, { dualWrite: true, everDualWrite: true, stale, staleReason: stale ? reason : null });
      } else {
        stale = true;
        reason = `dual-write switched off at ${new Date().toISOString()}: the target misses every write since`;
        await writeState(trx, policy.name, { dualWrite: false, stale, staleReason: reason });
      }
      return { state: { ...state, dualWrite: on, everDualWrite: state.everDualWrite || on, stale, staleReason: stale ? reason : null }, reason };
    });
    return result;
  }
}
