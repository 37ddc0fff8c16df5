import { OUTBOX_TABLE, type OutboxRecord } from '../db/internal-tables.js';
import type { Store, StoreName } from '../db/store.js';
import type { Policy } from '../policy/policy.js';
import { shownKey } from '../policy/row-key.js';


export interface DeadRow {
  /** The store whose outbox holds it: the source's before a cutover, the target's after (reverse replication). */
  store: StoreName;
  id: string;
  table: string;
  rowKey: string;
  op: string;
  attempts: number;
  lastError: string | null;
  createdAt: string;
}

/** Dead rows, oldest first; keys shown as their policy allows (`policies`: the bound policies by name). */
export async function listDeadRows(primary: Store, policies: ReadonlyMap<string, Policy>, options: { table?: string; limit: number }): Promise<DeadRow[]> {
  let query = primary.knex(OUTBOX_TABLE).select('*').where('status', 'dead').orderBy('id').limit(options.limit);
  if (options.table) query = query.andWhere('tbl', options.table);
  const rows = (await query) as OutboxRecord[];
  return rows.map((r) => ({
    store: primary.name,
    id: String(r.id),
    table: r.tbl,
    rowKey: shownKey(policies.get(r.tbl), r.row_key),
    op: r.op,
    attempts: Number(r.attempts),
    lastError: r.last_error,
    createdAt: new Date(Number(r.created_at)).toISOString(),
  }));
}
