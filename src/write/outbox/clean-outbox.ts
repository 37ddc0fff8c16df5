import { OUTBOX_TABLE } from '../../db/internal-tables.js';
import type { Store } from '../../db/store.js';

/**
 * Deletes up to `limit` rows marked done; returns how many went. Small batches keep locks
 * short. Applied rows are deleted at once now (complete-outbox-rows.ts); rows marked done
 * are the ones earlier versions left behind.
 */
export async function deleteDoneRows(primary: Store, limit: number): Promise<number> {
  const { knex } = primary;
  if (primary.dialect === 'mysql') {
    return knex(OUTBOX_TABLE).where('status', 'done').limit(limit).del();
  }
  return knex(OUTBOX_TABLE)
    .whereIn('id', knex(OUTBOX_TABLE).select('id').where('status', 'done').limit(limit))
    .del();
}
