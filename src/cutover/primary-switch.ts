import type { Knex } from 'knex';
import { OUTBOX_TABLE } from '../db/internal-tables.js';
import { withDeadlineQuery, withDeadlineTransaction } from '../db/with-deadline.js';
import type { Store, StoreName } from '../db/store.js';
import { readStateForUpdate, writeState, type TableState } from '../db/table-state.js';
import type { EventSink } from '../events.js';
import type { Policy } from '../policy/policy.js';
import { moveIdentity } from './move-identity.js';

/**
 * The steps of a switch, in order, as recorded in the old primary's state row
 * (`switch_step`). A step is recorded after its work is done; the work of every step is
 * idempotent, so a replica resuming a switch repeats at most the step that was running.
 *
 * - `frozen`: the old primary's row says `frozen` (taken FOR UPDATE, so the freeze waited
 *   for in-flight writers holding it FOR SHARE; later writers see it and wait or get 503).
 * - `drained`: the table's rows in the old primary's outbox are all applied.
 * - `identity`: the new primary's identity counter is past the old primary's highest key.
 * - `promoted`: the new primary's row says `primary` with epoch + 1 (the commit point).
 * - released (no step): the old primary's row says `secondary` with the new epoch.
 */
export const SWITCH_STEPS = ['frozen', 'drained', 'identity', 'promoted'] as const;
export type SwitchStep = (typeof SWITCH_STEPS)[number];

export interface PrimarySwitchOptions {
  /** Lease of the running replica; another replica takes over once it runs out, ms. */
  leaseMs: number;
  /** Longest drain before the switch is abandoned (the old primary takes writes again), ms. */
  drainTimeoutMs: number;
  /** Test hook: pause after recording this step (a test SIGKILLs the process there). */
  pauseAtStep?: SwitchStep | undefined;
  pauseMs?: number;
}

export interface PrimarySwitchDeps {
  source: Store;
  target: Store;
  events: EventSink;
  /** This replica's id, recorded as the switch's owner. */
  replicaId: string;
  /** Hurries the outbox of `from` along: done-marks written, due rows claimed now. */
  hurryDrain: (from: StoreName) => Promise<void>;
  options: PrimarySwitchOptions;
}

export type SwitchOutcome =
  | { result: 'done'; from: StoreName; to: StoreName; epoch: number; ms: number }
  | { result: 'noop' }
  | { result: 'busy'; owner: string | null }
  | { result: 'refused'; reason: string }
  | { result: 'abandoned'; reason: string };

/** Thrown inside a step when the lease was lost to another replica. */
class LeaseLost extends Error {}

/**
 * The fenced switch of one table's primary (DESIGN §5). One replica wins a compare-and-set
 * on the old primary's state row and holds a lease renewed at every step; the steps are
 * recorded in the state rows, so a replica killed at any point is resumed by whichever
 * replica (itself restarted, or another) finds the lease run out.
 */
export class PrimarySwitch {
  constructor(private readonly deps: PrimarySwitchDeps) {}

  /** State-row work on one store, cut off after the lease: a black-holed store fails the step instead of hanging it. */
  private tx<T>(store: Store, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return withDeadlineTransaction(store, this.deps.options.leaseMs, work);
  }

  private store(name: StoreName): Store {
    return name === 'source' ? this.deps.source : this.deps.target;
  }

  /**
   * Makes `to` the table's primary: starts a switch, resumes one whose owner's lease ran
   * out, or does nothing when `to` is primary already. A switch found running towards the
   * other store is finished first (the caller asks again for the way back).
   */
  async run(policy: Policy, to: StoreName, checks: { refuse?: () => string | undefined } = {}): Promise<SwitchOutcome> {
    const now = Date.now();
    const from: StoreName = to === 'target' ? 'source' : 'target';
    // Claim: the compare-and-set on whichever row records a switch, or on the old primary.
    const claim = await this.claim(policy, from, to, now, checks.refuse);
    if (claim.result !== 'claimed') return claim.outcome;
    try {
      return await this.steps(policy, claim.from, claim.to, claim.state);
    } catch (error) {
      if (error instanceof LeaseLost) return { result: 'busy', owner: null };
      throw error;
    }
  }

  private async claim(
    policy: Policy,
    from: StoreName,
    to: StoreName,
    now: number,
    refuse: (() => string | undefined) | undefined,
  ): Promise<{ result: 'claimed'; from: StoreName; to: StoreName; state: TableState } | { result: 'not'; outcome: SwitchOutcome }> {
    const { replicaId, options } = this.deps;
    // A switch recorded on either row (this direction or the other) is resumed first.
    for (const name of [from, to] as const) {
      const store = this.store(name);
      const resumed = await this.tx(store, async (trx) => {
        const state = await readStateForUpdate(trx, store.adapter, policy.name);
        if (!state || state.role !== 'frozen' || !state.switchTo) return undefined;
        if (state.switchOwner !== replicaId && state.switchLeaseUntil > now) return { busy: state.switchOwner };
        await writeState(trx, policy.name, { switchOwner: replicaId, switchLeaseUntil: now + options.leaseMs });
        return { state: { ...state, switchOwner: replicaId, switchLeaseUntil: now + options.leaseMs } };
      });
      if (!resumed) continue;
      if ('busy' in resumed) return { result: 'not', outcome: { result: 'busy', owner: resumed.busy ?? null } };
      const resumeTo = resumed.state.switchTo as StoreName;
      this.emitStep(policy.name, name, resumeTo, resumed.state.switchStep ?? 'frozen', 'resumed');
      return { result: 'claimed', from: name, to: resumeTo, state: resumed.state };
    }
    const fromStore = this.store(from);
    const why = refuse?.();
    const started = await this.tx(fromStore, async (trx): Promise<{ refused: string } | { state: TableState } | undefined> => {
      const state = await readStateForUpdate(trx, fromStore.adapter, policy.name);
      if (!state || state.role !== 'primary') return undefined;
      if (why) return { refused: why };
      if (!state.dualWrite) return { refused: `the ${from} is not replicating to the ${to} (dual-write is off)` };
      const dead = await trx(OUTBOX_TABLE).where({ tbl: policy.name, status: 'dead' }).count({ n: '*' }).first();
      if (Number((dead as { n?: unknown } | undefined)?.n ?? 0) > 0) {
        return { refused: `the ${from}'s outbox holds dead rows for ${policy.name}: replay them first (tandem outbox)` };
      }
      const patch = { role: 'frozen' as const, switchTo: to, switchStep: 'frozen', switchOwner: replicaId, switchLeaseUntil: now + options.leaseMs, switchStartedAt: now };
      await writeState(trx, policy.name, patch);
      return { state: { ...state, ...patch } };
    });
    if (!started) return { result: 'not', outcome: { result: 'noop' } };
    if ('refused' in started) return { result: 'not', outcome: { result: 'refused', reason: started.refused } };
    this.emitStep(policy.name, from, to, 'frozen', 'started');
    await this.pauseAt('frozen');
    return { result: 'claimed', from, to, state: started.state };
  }

  private async steps(policy: Policy, from: StoreName, to: StoreName, state: TableState): Promise<SwitchOutcome> {
    const startedAt = state.switchStartedAt || Date.now();
    const newEpoch = state.epoch + 1;
    let step = state.switchStep ?? 'frozen';
    if (step === 'frozen') {
      await this.renew(policy, from);
      const drained = await this.drain(policy, from);
      if (drained !== true) {
        await this.abandon(policy, from, drained);
        return { result: 'abandoned', reason: drained };
      }
      step = await this.record(policy, from, to, 'drained');
    }
    if (step === 'drained') {
      await this.renew(policy, from);
      if (policy.primaryKey.length === 1) {
        const fromPolicy = { table: from === 'source' ? policy.sourceTable : policy.targetTable, key: (from === 'source' ? policy.primaryKey : policy.targetPrimaryKey)[0] as string };
        const toPolicy = { table: to === 'source' ? policy.sourceTable : policy.targetTable, key: (to === 'source' ? policy.primaryKey : policy.targetPrimaryKey)[0] as string };
        const column = policy.columns.get(policy.primaryKey[0] as string);
        if (column?.kind === 'integer') {
          const moved = await moveIdentity(this.store(from), fromPolicy.table, fromPolicy.key, this.store(to), toPolicy.table, toPolicy.key);
          this.deps.events.emit({ type: 'cutover.identity', table: policy.name, store: to, oldMax: moved.oldMax, movedTo: moved.movedTo });
        }
      }
      step = await this.record(policy, from, to, 'identity');
    }
    if (step === 'identity') {
      await this.renew(policy, from);
      const toStore = this.store(to);
      await this.tx(toStore, async (trx) => {
        const current = await readStateForUpdate(trx, toStore.adapter, policy.name);
        if (!current) throw new Error(`no state row for ${policy.name} in the ${to}`);
        if (current.role === 'primary' && current.epoch >= newEpoch) return;
        // The new primary replicates back at once: its outbox feeds the old primary.
        await writeState(trx, policy.name, {
          role: 'primary',
          epoch: newEpoch,
          dualWrite: true,
          everDualWrite: true,
          switchTo: null,
          switchStep: null,
          switchOwner: null,
          switchLeaseUntil: 0,
          lastSwitchMs: Date.now() - startedAt,
        });
      });
      step = await this.record(policy, from, to, 'promoted');
    }
    // Release: the old primary becomes the secondary of the new epoch.
    const fromStore = this.store(from);
    const ms = Date.now() - startedAt;
    await this.tx(fromStore, async (trx) => {
      const current = await readStateForUpdate(trx, fromStore.adapter, policy.name);
      if (!current || current.role !== 'frozen' || current.switchOwner !== this.deps.replicaId) throw new LeaseLost('released by another replica');
      await writeState(trx, policy.name, {
        role: 'secondary',
        epoch: newEpoch,
        switchTo: null,
        switchStep: null,
        switchOwner: null,
        switchLeaseUntil: 0,
        lastSwitchMs: ms,
      });
    });
    this.emitStep(policy.name, from, to, 'released', 'done', ms);
    return { result: 'done', from, to, epoch: newEpoch, ms };
  }

  /** Waits until the old primary's outbox holds no pending row of the table. True, or why not. */
  private async drain(policy: Policy, from: StoreName): Promise<true | string> {
    const store = this.store(from);
    const deadline = Date.now() + this.deps.options.drainTimeoutMs;
    for (;;) {
      const rows = await withDeadlineQuery<Array<{ status: string; n: number | string }>>(store, this.deps.options.leaseMs, (knex) =>
        knex(OUTBOX_TABLE).select('status').count({ n: '*' }).where({ tbl: policy.name }).whereIn('status', ['pending', 'dead']).groupBy('status'),
      );
      const count = (status: string) => Number(rows.find((r) => r.status === status)?.n ?? 0);
      if (count('dead') > 0) return `outbox rows of ${policy.name} became dead during the drain: replay them, then flip again`;
      if (count('pending') === 0) return true;
      if (Date.now() > deadline) return `the ${from}'s outbox did not drain within ${this.deps.options.drainTimeoutMs} ms (${count('pending')} rows left)`;
      await this.renew(policy, from);
      await this.deps.hurryDrain(from);
      await sleep(20);
    }
  }

  /** Gives up before the commit point: the old primary takes writes again, nothing else changed. */
  private async abandon(policy: Policy, from: StoreName, reason: string): Promise<void> {
    const store = this.store(from);
    await this.tx(store, async (trx) => {
      const current = await readStateForUpdate(trx, store.adapter, policy.name);
      if (!current || current.role !== 'frozen' || current.switchOwner !== this.deps.replicaId) return;
      await writeState(trx, policy.name, { role: 'primary', switchTo: null, switchStep: null, switchOwner: null, switchLeaseUntil: 0 });
    });
    this.deps.events.emit({ type: 'cutover.abandoned', table: policy.name, from, reason });
  }

  /** Records a finished step with a compare-and-set on the owner, renewing the lease. */
  private async record(policy: Policy, from: StoreName, to: StoreName, step: SwitchStep): Promise<SwitchStep> {
    await this.renew(policy, from, step);
    this.emitStep(policy.name, from, to, step, 'step');
    await this.pauseAt(step);
    return step;
  }

  private async renew(policy: Policy, from: StoreName, step?: SwitchStep): Promise<void> {
    const store = this.store(from);
    const { replicaId, options } = this.deps;
    const held = await this.tx(store, async (trx) => {
      const current = await readStateForUpdate(trx, store.adapter, policy.name);
      if (!current || current.role !== 'frozen' || current.switchOwner !== replicaId) return false;
      await writeState(trx, policy.name, { switchLeaseUntil: Date.now() + options.leaseMs, ...(step ? { switchStep: step } : {}) });
      return true;
    });
    if (!held) throw new LeaseLost(`lost the switch of ${policy.name} to another replica`);
  }

  private emitStep(table: string, from: StoreName, to: StoreName, step: string, phase: 'started' | 'step' | 'resumed' | 'done', ms?: number): void {
    this.deps.events.emit({ type: 'cutover.step', table, from, to, step, phase, replica: this.deps.replicaId, ...(ms !== undefined ? { ms } : {}) });
  }

  private async pauseAt(step: SwitchStep): Promise<void> {
    if (this.deps.options.pauseAtStep === step) await sleep(this.deps.options.pauseMs ?? 30_000);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
