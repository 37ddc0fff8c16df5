import type { Knex } from 'knex';
import type { Store } from '../db/store.js';
import type { OutboxOp } from './outbox-entry.js';

export interface NewOutboxRow {
  table: string;
  rowKey: string;
  op: OutboxOp;
  image: string | null;
  epoch: number;
  /** The worker leaves the row alone until then (the request applies it inline first). */
  notBefore: number;
}

/**
 * Inserts the outbox row of one changed key. Must run in the writer's transaction AFTER the
 * change statement: the change holds the row lock, so ids of the same key are handed out
 * in commit order and the id is a valid version.
 */
export function insertOutboxRow(trx: Knex.Transaction, primary: Store, row: NewOutboxRow): Promise<string> {
  return primary.adapter.insertOutbox(trx, {
    tbl: row.table,
    row_key: row.rowKey,
    op: row.op,
    image: row.image,
    epoch: row.epoch,
    next_attempt_at: row.notBefore,
    created_at: Date.now(),
  });
}
