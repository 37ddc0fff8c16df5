import { OUTBOX_TABLE } from '../db/internal-tables.js';
import type { Store } from '../db/store.js';

/** Which of these outbox ids are still pending (the rest were applied, by any process). */
export async function stillPending(primary: Store, ids: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < ids.length; i += 1000) {
    const rows = (await primary.knex(OUTBOX_TABLE).select('id').whereIn('id', ids.slice(i, i + 1000)).andWhere('status', 'pending')) as Array<{ id: number | string }>;
    for (const r of rows) out.add(String(r.id));
  }
  return out;
}
