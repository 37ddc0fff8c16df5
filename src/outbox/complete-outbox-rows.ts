import { OUTBOX_TABLE } from '../db/internal-tables.js';
import type { Store } from '../db/store.js';

/**
 * Deletes applied rows (still pending: a row a concurrent path turned dead stays). Deleted
 * at once, not marked done for a later clean-up: one write per row fewer on the primary,
 * which the live requests' commits queue behind (bench: dual-write p50 at 200 req/s
 * 3.49 → 3.27 ms, p99 over six 20 s rounds 14.1 → 10.4 ms, medians).
 */
export async function completeOutboxRows(primary: Store, ids: readonly string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) {
    await primary.knex(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 1000)).andWhere('status', 'pending').del();
  }
}
