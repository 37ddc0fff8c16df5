import type { Store, StoreName } from '../db/store.js';
import { readAllStates, readStateForUpdate, writeState, type TableState } from '../db/table-state.js';
import { coerceError } from '../errors.js';
import type { EventSink, Stage } from '../events.js';
import type { FlagSource } from '../flags/flag-source.js';
import { flagNames, resolveStage } from '../flags/resolve-stage.js';
import type { TableStage } from '../flags/table-stage.js';
import type { Policy } from '../policy/policy.js';
import { describePrimary, type PrimaryDirectory, type TablePrimary } from './primary-directory.js';
import type { PrimarySwitch } from './primary-switch.js';

/** Moves primaries when `target-primary` flips (absent: this replica never switches). */
export interface CutoverControl {
  directory: PrimaryDirectory;
  switcher: PrimarySwitch;
  /** Why a switch to the target must not start now (brake held, say), or undefined. */
  refuseForward?: (table: string) => string | undefined;
  /** True while an automatic rollback holds the primary on the source, whatever the flags say. */
  holdSource?: (table: string) => boolean;
}

/** The stage the state rows describe. */
export function stageOf(view: TablePrimary | undefined, previous: Stage | undefined): Stage {
  if (!view) return previous ?? 'source-only';
  const primary = view.primary ?? view.switching?.from ?? null;
  if (primary === 'target') return view.target.dualWrite ? 'target-primary' : 'target-only';
  if (primary === null) return previous ?? 'dual-write';
  return view.source.dualWrite ? 'dual-write' : 'source-only';
}

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
    private readonly cutover?: CutoverControl,
  ) {}

  /** Switch refusals already reported per table (each reason logged once). */
  private readonly refused = new Map<string, string>();

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
        const wanted = this.cutover ? await this.reconcilePrimary(policy) : undefined;
        if (wanted) await this.reconcileRetire(policy, wanted.stage);
        const view = this.cutover?.directory.get(policy.name);
        // While the target is primary (or a switch holds the table) dual-write stays as it is:
        // target-primary requires it, and the reverse direction depends on it.
        if (view && view.primary !== 'source') {
          this.setStage(policy, view.source, view, undefined, wanted?.conflict);
          continue;
        }
        await this.reconcileTable(policy, view?.source ?? states.get(policy.name), view);
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
        const view = this.cutover ? await this.cutover.directory.refresh(state.table).catch(() => this.cutover?.directory.get(state.table)) : undefined;
        const stage: Stage = view ? stageOf(view, before?.stage) : state.dualWrite ? 'dual-write' : 'source-only';
        this.stages.set(state.table, { table: state.table, stage, state, primary: view, conflict: before?.conflict });
        if (!before) this.events.emit({ type: 'stage', table: state.table, stage, stale: state.stale, reason: 'recorded stage (flags not loaded yet)' });
      }
    } catch (error) {
      this.events.emit({ type: 'background.error', component: 'stage.reconcile', error: coerceError(error) });
    }
  }

  /** The flags' wish for the table's primary, and the switch that makes it so. */
  private async reconcilePrimary(policy: Policy): Promise<{ stage: Stage; conflict: string | undefined } | undefined> {
    const control = this.cutover as CutoverControl;
    let view = await control.directory.refresh(policy.name);
    if (!view) return undefined;
    const before = this.stages.get(policy.name);
    const names = flagNames(policy.name);
    const decision = resolveStage(
      {
        dualWrite: this.flags.isEnabled(names.dualWrite),
        targetPrimary: this.flags.isEnabled(names.targetPrimary),
        retireSource: this.flags.isEnabled(names.retireSource),
      },
      stageOf(view, before?.stage),
    );
    if (decision.conflict && decision.conflict !== before?.conflict) {
      this.events.emit({ type: 'flag.conflict', table: policy.name, reason: decision.conflict });
    }
    const result = { stage: decision.stage, conflict: decision.conflict };
    let want: StoreName = decision.stage === 'target-primary' || decision.stage === 'target-only' ? 'target' : 'source';
    if (want === 'target' && control.holdSource?.(policy.name)) {
      want = 'source';
      const reason = 'the safety brake rolled the primary back to the source; release the brake to switch forward again';
      if (this.refused.get(policy.name) !== reason) {
        this.refused.set(policy.name, reason);
        this.events.emit({ type: 'flag.conflict', table: policy.name, reason });
      }
    }
    if (view.primary === want && !view.switching) {
      if (!control.holdSource?.(policy.name)) this.refused.delete(policy.name);
      return result;
    }
    const refuse = () => {
      if (want === 'source') {
        const target = (view as TablePrimary).target;
        // The target's row marks its secondary (the source) stale after retire-source.
        if (target.stale) return `the source is stale (${target.staleReason ?? 'it missed writes'}): run tandem backfill --reverse ${policy.name} and a clean verify first`;
        return undefined;
      }
      const forward = control.refuseForward?.(policy.name);
      if (forward) return forward;
      const source = (view as TablePrimary).source;
      if (source.stale) return `the target is stale (${source.staleReason ?? 'it may lack rows'}): backfill and verify before the cutover`;
      return undefined;
    };
    const outcome = await control.switcher.run(policy, want, { refuse });
    if (outcome.result === 'refused' || outcome.result === 'abandoned') {
      const reason = `${want === 'target' ? 'target-primary' : 'rollback to the source'} ${outcome.result}: ${outcome.reason}`;
      if (this.refused.get(policy.name) !== reason) {
        this.refused.set(policy.name, reason);
        this.events.emit({ type: 'cutover.refused', table: policy.name, to: want, reason: outcome.reason });
        this.events.emit({ type: 'flag.conflict', table: policy.name, reason: `switch to the ${want} not done: ${outcome.reason}` });
      }
    } else if (!control.holdSource?.(policy.name)) this.refused.delete(policy.name);
    view = (await control.directory.refresh(policy.name)) ?? view;
    if (outcome.result === 'done') {
      const stage = stageOf(view, before?.stage);
      this.setStage(policy, view.source, view, `primary switched to the ${outcome.to} (epoch ${outcome.epoch}, ${outcome.ms} ms)`, decision.conflict);
      this.events.emit({ type: 'cutover.switched', table: policy.name, to: outcome.to, epoch: outcome.epoch, ms: outcome.ms, stage });
    }
    return result;
  }

  /**
   * retire-source: while the target is primary, its state row's dual_write is the reverse
   * replication. Off (target-only) marks the source stale — it stops receiving changes;
   * on again leaves the mark until a reverse resync and a clean verify clear it.
   */
  private async reconcileRetire(policy: Policy, wanted: Stage): Promise<void> {
    const control = this.cutover as CutoverControl;
    const view = control.directory.get(policy.name);
    if (!view || view.primary !== 'target' || view.switching) return;
    const reverse = wanted !== 'target-only';
    if (view.target.dualWrite === reverse) return;
    await this.target.knex.transaction(async (trx) => {
      // Exclusively: in-flight writers (holding the row shared) finish first, later ones see the change.
      const state = await readStateForUpdate(trx, this.target.adapter, policy.name);
      if (!state || state.role !== 'primary' || state.dualWrite === reverse) return;
      if (reverse) await writeState(trx, policy.name, { dualWrite: true });
      else await writeState(trx, policy.name, { dualWrite: false, stale: true, staleReason: `source retired at ${new Date().toISOString()}: it misses every write since` });
    });
    const fresh = await control.directory.refresh(policy.name);
    this.setStage(policy, fresh?.source, fresh, reverse ? 'reverse replication on again; the source stays stale until a reverse resync and a clean verify' : 'source retired: reverse replication stopped, the source is stale', undefined);
  }

  private setStage(policy: Policy, state: TableState | undefined, view: TablePrimary | undefined, reason: string | undefined, conflict: string | undefined): void {
    const before = this.stages.get(policy.name);
    const stage = stageOf(view, before?.stage);
    const refusal = this.refused.get(policy.name);
    this.stages.set(policy.name, { table: policy.name, stage, state, primary: view, conflict: refusal ?? conflict });
    if (!before || reason || before.stage !== stage) {
      // stale: the current secondary may lack rows (the target before a cutover, the source after retire-source).
      const stale = view?.primary === 'target' ? view.target.stale : (state?.stale ?? false);
      this.events.emit({ type: 'stage', table: policy.name, stage, stale, reason: reason ?? (before ? 'state changed' : 'started') });
    }
  }

  private async reconcileTable(policy: Policy, state: TableState | undefined, view?: TablePrimary): Promise<void> {
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
    // A refused switch forward keeps dual-write (target-primary asks for it).
    const wantDual = decision.stage === 'dual-write' || decision.stage === 'target-primary' || decision.stage === 'target-only';
    if (state && state.dualWrite !== wantDual) ({ state: current, reason } = await this.switchDualWrite(policy, wantDual));
    const shown: Stage = decision.stage === 'target-primary' || decision.stage === 'target-only' ? (current?.dualWrite ? 'dual-write' : 'source-only') : decision.stage;
    const primary = view && current ? { ...view, ...describePrimary(current, view.target) } : view;
    const conflict = this.refused.get(policy.name) ?? decision.conflict;
    this.stages.set(policy.name, { table: policy.name, stage: shown, state: current, primary, conflict });
    if (primary) this.cutover?.directory.set(policy.name, primary);
    if (!before || reason || before.stage !== shown || before.state?.stale !== current?.stale) {
      this.events.emit({
        type: 'stage',
        table: policy.name,
        stage: shown,
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
