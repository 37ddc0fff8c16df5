import { OUTBOX_TABLE } from '../db/internal-tables.js';
import type { Store } from '../db/store.js';

/** Makes dead rows pending again with a fresh attempt count; returns how many. */
export async function replayDeadRows(primary: Store, options: { table?: string; ids?: readonly string[] }): Promise<number> {
  let query = primary.knex(OUTBOX_TABLE).where('status', 'dead');
  if (options.table) query = query.andWhere('tbl', options.table);
  if (options.ids) query = query.whereIn('id', [...options.ids]);
  return query.update({ status: 'pending', attempts: 0, next_attempt_at: Date.now(), last_error: null });
}

/** How many of these ids are dead rows in this store's outbox (to tell which outbox an id means). */
export async function countDeadIds(store: Store, ids: readonly string[]): Promise<number> {
  const [row] = (await store.knex(OUTBOX_TABLE).where('status', 'dead').whereIn('id', [...ids]).count({ n: '*' })) as Array<{ n: number | string }>;
  return Number(row?.n ?? 0);
}
