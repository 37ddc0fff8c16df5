import { OUTBOX_TABLE } from '../../db/internal-tables.js';
import type { Store } from '../../db/store.js';
import { entryFromRecord, type OutboxEntry, type OutboxRecord } from './outbox-entry.js';

/**
 * Claims up to `limit` due pending rows, oldest first, by pushing their `next_attempt_at`
 * out by `leaseMs`: a claimer that dies returns its rows when the lease runs out.
 * `FOR UPDATE SKIP LOCKED` lets several Tandem processes claim side by side without
 * waiting on each other; SQLite has one writer and needs no skipping.
 */
export async function claimOutboxRows(primary: Store, limit: number, leaseMs: number): Promise<OutboxEntry[]> {
  const now = Date.now();
  return primary.knex.transaction(async (trx) => {
    let select = trx(OUTBOX_TABLE)
      .select('*')
      .where('status', 'pending')
      .andWhere('next_attempt_at', '<=', now)
      .orderBy('id')
      .limit(limit);
    if (primary.dialect !== 'sqlite') select = select.forUpdate().skipLocked();
    const records = (await select) as OutboxRecord[];
    if (records.length === 0) return [];
    const ids = records.map((r) => r.id);
    for (let i = 0; i < ids.length; i += 1000) {
      await trx(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 1000)).update({ next_attempt_at: now + leaseMs });
    }
    return records.map(entryFromRecord);
  });
}
