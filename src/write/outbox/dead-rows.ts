import { OUTBOX_TABLE } from '../../db/internal-tables.js';
import type { Store } from '../../db/store.js';
import type { OutboxRecord } from './outbox-entry.js';

export interface DeadRow {
  id: string;
  table: string;
  rowKey: string;
  op: string;
  attempts: number;
  lastError: string | null;
  createdAt: string;
}

export async function listDeadRows(primary: Store, options: { table?: string; limit: number }): Promise<DeadRow[]> {
  let query = primary.knex(OUTBOX_TABLE).select('*').where('status', 'dead').orderBy('id').limit(options.limit);
  if (options.table) query = query.andWhere('tbl', options.table);
  const rows = (await query) as OutboxRecord[];
  return rows.map((r) => ({
    id: String(r.id),
    table: r.tbl,
    rowKey: r.row_key,
    op: r.op,
    attempts: Number(r.attempts),
    lastError: r.last_error,
    createdAt: new Date(Number(r.created_at)).toISOString(),
  }));
}

/** Makes dead rows pending again with a fresh attempt count; returns how many. */
export async function replayDeadRows(primary: Store, options: { table?: string; ids?: readonly string[] }): Promise<number> {
  let query = primary.knex(OUTBOX_TABLE).where('status', 'dead');
  if (options.table) query = query.andWhere('tbl', options.table);
  if (options.ids) query = query.whereIn('id', [...options.ids]);
  return query.update({ status: 'pending', attempts: 0, next_attempt_at: Date.now(), last_error: null });
}
