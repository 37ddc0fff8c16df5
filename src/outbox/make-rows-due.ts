import { OUTBOX_TABLE } from '../db/internal-tables.js';
import type { Store } from '../db/store.js';

/** After the secondary recovers: every pending row backing off is due now. */
export async function makePendingRowsDue(primary: Store): Promise<number> {
  const now = Date.now();
  return primary.knex(OUTBOX_TABLE).where('status', 'pending').andWhere('next_attempt_at', '>', now).update({ next_attempt_at: now });
}
