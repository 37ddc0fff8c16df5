import type { OutboxRecord } from '../db/internal-tables.js';
import type { Row } from '../shared/row.js';
import { decodeImage } from './image-codec.js';

export { compareVersion } from '../shared/version.js';

export const OUTBOX_OPS = ['upsert', 'delete'] as const;
export type OutboxOp = (typeof OUTBOX_OPS)[number];

/** One change of one key, as written in the primary's transaction. `(epoch, id)` is its version. */
export interface OutboxEntry {
  id: string;
  table: string;
  rowKey: string;
  op: OutboxOp;
  /** Primary-shaped after-image; null for a delete (tombstone). */
  image: Row | null;
  epoch: number;
  attempts: number;
  createdAt: number;
}

export function entryFromRecord(r: OutboxRecord): OutboxEntry {
  return {
    id: String(r.id),
    table: r.tbl,
    rowKey: r.row_key,
    op: r.op === 'delete' ? 'delete' : 'upsert',
    image: r.image === null ? null : decodeImage(r.image),
    epoch: Number(r.epoch),
    attempts: Number(r.attempts),
    createdAt: Number(r.created_at),
  };
}
