import { OUTBOX_TABLE } from '../db/internal-tables.js';
import type { Store } from '../db/store.js';

/**
 * Outbox rows of a table that has no policy any more (the policy file was removed while rows
 * were queued). They cannot be applied — Tandem no longer knows the table's mapping — and
 * must not hold back the rows claimed with them, nor be dropped: they are set aside with
 * status `orphan` (never claimed), shown in status, and become pending again when a policy
 * for their table is back.
 */
export const ORPHAN_STATUS = 'orphan';

export interface OrphanStats {
  table: string;
  count: number;
  /** When the oldest of them was written (ISO). */
  oldest: string;
}

/** Sets the given pending rows aside; returns how many. */
export async function setAsideOrphans(primary: Store, ids: readonly string[]): Promise<number> {
  let n = 0;
  for (let i = 0; i < ids.length; i += 1000) {
    n += await primary.knex(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 1000)).andWhere('status', 'pending').update({
      status: ORPHAN_STATUS,
      last_error: 'no policy for this table: set aside until a policy for it is back',
    });
  }
  return n;
}

/** Orphan rows per table: count and oldest. */
export async function orphanStats(primary: Store): Promise<OrphanStats[]> {
  const rows = (await primary.knex(OUTBOX_TABLE)
    .select('tbl')
    .count({ n: '*' })
    .min({ oldest: 'created_at' })
    .where('status', ORPHAN_STATUS)
    .groupBy('tbl')
    .orderBy('tbl')) as Array<{ tbl: string; n: number | string; oldest: number | string }>;
  return rows.map((r) => ({ table: r.tbl, count: Number(r.n), oldest: new Date(Number(r.oldest)).toISOString() }));
}

/** Rows set aside for tables that have a policy again become pending (at startup). Returns how many. */
export async function restoreOrphans(primary: Store, tables: readonly string[]): Promise<number> {
  if (tables.length === 0) return 0;
  return primary.knex(OUTBOX_TABLE).where('status', ORPHAN_STATUS).whereIn('tbl', [...tables]).update({ status: 'pending', next_attempt_at: Date.now(), last_error: null });
}
