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
  if (primary.dialect === 'pg') {
    // One statement: select, lock and lease in a single round trip.
    const result = (await primary.knex.raw(
      `UPDATE ${OUTBOX_TABLE} SET next_attempt_at = ?
        WHERE id IN (SELECT id FROM ${OUTBOX_TABLE}
                      WHERE status = 'pending' AND next_attempt_at <= ?
                      ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
        RETURNING *`,
      [now + leaseMs, now, limit],
    )) as { rows: OutboxRecord[] };
    return result.rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1)).map(entryFromRecord);
  }
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
