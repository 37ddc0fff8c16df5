import { OUTBOX_TABLE } from '../../db/internal-tables.js';
import type { Store } from '../../db/store.js';

/** Marks applied rows done; the housekeeper deletes done rows in batches. */
export async function completeOutboxRows(primary: Store, ids: readonly string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) {
    await primary.knex(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 1000)).andWhere('status', 'pending').update({ status: 'done' });
  }
}
