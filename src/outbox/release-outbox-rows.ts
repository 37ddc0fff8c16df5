import { OUTBOX_TABLE } from '../db/internal-tables.js';
import type { Store } from '../db/store.js';

/** Makes claimed rows due again at once without counting an attempt (the breaker refused them). */
export async function releaseOutboxRows(primary: Store, ids: readonly string[], at: number): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) {
    await primary.knex(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 1000)).andWhere('status', 'pending').update({ next_attempt_at: at });
  }
}
