import type { Store, StoreName } from '../db/store.js';
import { STATE_TABLE } from '../db/internal-tables.js';
import { fromStateRecord, type StateRecord, type TableState } from '../db/table-state.js';
import { withDeadlineQuery } from '../db/with-deadline.js';
import type { TablePrimary } from '../flags/table-stage.js';

export type { TablePrimary };

/** Which store is primary, read off both state rows (the newer epoch wins if both claim it). */
export function primaryOf(source: TableState, target: TableState): StoreName | null {
  const s = source.role === 'primary';
  const t = target.role === 'primary';
  if (s && t) return target.epoch > source.epoch ? 'target' : 'source';
  if (t) return 'target';
  if (s) return 'source';
  return null;
}

export function describePrimary(source: TableState, target: TableState): TablePrimary {
  const primary = primaryOf(source, target);
  const frozen = source.role === 'frozen' ? { from: 'source' as const, row: source } : target.role === 'frozen' ? { from: 'target' as const, row: target } : undefined;
  return {
    primary,
    epoch: Math.max(source.epoch, target.epoch),
    source,
    target,
    switching:
      frozen && frozen.row.switchTo
        ? { from: frozen.from, to: frozen.row.switchTo, step: frozen.row.switchStep ?? 'frozen', owner: frozen.row.switchOwner, startedAt: frozen.row.switchStartedAt }
        : null,
    lastSwitchMs: Math.max(source.lastSwitchMs, target.lastSwitchMs),
  };
}

/**
 * Each table's primary as this replica last read it. Writers use it to pick the store to
 * open their transaction on; the state row they read FOR SHARE inside that transaction is
 * the authority, and a refusal there (the view was stale) makes them refresh and retry.
 */
export class PrimaryDirectory {
  private readonly tables = new Map<string, TablePrimary>();
  private readonly inflight = new Map<string, Promise<TablePrimary | undefined>>();

  constructor(
    private readonly source: Store,
    private readonly target: Store,
    /** Deadline of one state-row read (an unreachable store must not stall routing), ms. */
    private readonly readDeadlineMs = 2_000,
  ) {}

  private async read(store: Store, table: string): Promise<TableState | undefined> {
    const row = await withDeadlineQuery<StateRecord | undefined>(store, this.readDeadlineMs, (knex) => knex(STATE_TABLE).where({ tbl: table }).first());
    return row ? fromStateRecord(row) : undefined;
  }

  get(table: string): TablePrimary | undefined {
    return this.tables.get(table);
  }

  /** The primary as last read; the source before the first read (the state a fresh install starts in). */
  primary(table: string): StoreName | null {
    const known = this.tables.get(table);
    return known ? known.primary : 'source';
  }

  /** Reads both state rows again (concurrent callers share one read). */
  refresh(table: string): Promise<TablePrimary | undefined> {
    let running = this.inflight.get(table);
    if (!running) {
      running = (async () => {
        const [s, t] = await Promise.allSettled([this.read(this.source, table), this.read(this.target, table)]);
        const previous = this.tables.get(table);
        // One store unreachable: at most one state row says primary at any moment (the new
        // primary is promoted only while the old one is frozen), so the readable row decides
        // when it says primary; otherwise the last view stands.
        const sourceRow = s.status === 'fulfilled' ? s.value : previous ? { ...previous.source, role: 'frozen' as const } : undefined;
        const targetRow = t.status === 'fulfilled' ? t.value : previous ? { ...previous.target, role: 'frozen' as const } : undefined;
        if (s.status === 'rejected' && t.status === 'rejected') throw s.reason;
        if (!sourceRow || !targetRow) {
          if (s.status === 'rejected' || t.status === 'rejected') throw (s.status === 'rejected' ? s.reason : (t as PromiseRejectedResult).reason);
          return undefined;
        }
        let view = describePrimary(sourceRow, targetRow);
        if (view.primary === null && previous && (s.status === 'rejected' || t.status === 'rejected')) view = { ...view, primary: previous.primary };
        this.tables.set(table, view);
        return view;
      })().finally(() => this.inflight.delete(table));
      this.inflight.set(table, running);
    }
    return running;
  }

  /** Records a view read elsewhere (the reconciler reads both rows anyway). */
  set(table: string, view: TablePrimary): void {
    this.tables.set(table, view);
  }
}
