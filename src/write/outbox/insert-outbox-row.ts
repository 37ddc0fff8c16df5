import type { Knex } from 'knex';
import { OUTBOX_TABLE } from '../../db/internal-tables.js';
import type { Dialect } from '../../db/store.js';
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
export async function insertOutboxRow(trx: Knex.Transaction, dialect: Dialect, row: NewOutboxRow): Promise<string> {
  const record = {
    tbl: row.table,
    row_key: row.rowKey,
    op: row.op,
    image: row.image,
    epoch: row.epoch,
    status: 'pending',
    attempts: 0,
    next_attempt_at: row.notBefore,
    created_at: Date.now(),
  };
  if (dialect === 'mysql') {
    const [id] = (await trx(OUTBOX_TABLE).insert(record)) as number[];
    return String(id);
  }
  const [inserted] = (await trx(OUTBOX_TABLE).insert(record).returning('id')) as Array<{ id: number | string }>;
  return String(inserted?.id);
}
