import type { Store } from '../db/store.js';
import { entryFromRecord, type OutboxEntry } from './outbox-entry.js';

/**
 * Claims up to `limit` due pending rows, oldest first, by pushing their `next_attempt_at`
 * out by `leaseMs`: a claimer that dies returns its rows when the lease runs out.
 * `FOR UPDATE SKIP LOCKED` (where the engine has it) lets several Tandem processes claim
 * side by side without waiting on each other.
 */
export async function claimOutboxRows(primary: Store, limit: number, leaseMs: number): Promise<OutboxEntry[]> {
  const now = Date.now();
  const records = await primary.adapter.claimOutbox(primary.knex, now, now + leaseMs, limit);
  return records.map(entryFromRecord);
}
