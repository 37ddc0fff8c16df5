import type { Store } from '../db/store.js';
import { readStateForUpdate } from '../db/table-state.js';
import { encodeImage } from '../outbox/image-codec.js';
import { insertOutboxRow } from '../outbox/insert-outbox-row.js';
import type { Policy } from '../policy/policy.js';
import { formatKey } from '../policy/row-key.js';
import { tableRoute } from '../policy/table-route.js';
import type { KeyValues, Row } from '../shared/row.js';

/**
 * Re-enqueues the primary's current image of one key (read-repair, verify --repair). The
 * row is locked while its outbox row is written, so this version is the newest and the
 * normal apply path fixes the secondary. A missing row enqueues a tombstone.
 * Returns false when the table is not dual-writing (nothing would deliver it).
 */
export async function requeueKey(primary: Store, policy: Policy, key: KeyValues): Promise<boolean> {
  const route = tableRoute(policy, primary.name);
  return primary.knex.transaction(async (trx) => {
    // SQLite: the write lock first — a deferred transaction that reads and then writes fails at
    // once ("database is locked") when a running Tandem committed in between.
    await primary.adapter.takeWriteLock(trx);
    // The state row exclusively: writers hold it shared, so no insert of this key can be in
    // flight while we look. (A FOR UPDATE on an absent row locks nothing in PostgreSQL: a
    // concurrent insert could commit after our tombstone with an older version.)
    const state = await readStateForUpdate(trx, primary.adapter, policy.name);
    if (!state?.dualWrite || state.role !== 'primary') return false;
    const where: Row = {};
    route.primary.key.forEach((c, i) => (where[c] = key[i]));
    const row = await primary.adapter.lockRow(trx, route.primary, where);
    await insertOutboxRow(trx, primary, {
      table: policy.name,
      // The key as stored when the row exists (the caller's spelling may differ, e.g. by case).
      rowKey: formatKey(row ? route.primary.key.map((c) => row[c]) : key),
      op: row ? 'upsert' : 'delete',
      image: row ? encodeImage(row) : null,
      epoch: state.epoch,
      notBefore: Date.now(),
    });
    return true;
  });
}
