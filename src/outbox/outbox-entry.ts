import type { OutboxRecord } from '../db/internal-tables.js';
import type { Row } from '../shared/row.js';
import { tryDecodeImage } from './image-codec.js';

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
  /** Set when the stored image could not be decoded: the row goes dead at once with this reason. */
  undecodable?: string;
}

export function entryFromRecord(r: OutboxRecord): OutboxEntry {
  const entry: OutboxEntry = {
    id: String(r.id),
    table: r.tbl,
    rowKey: r.row_key,
    op: r.op === 'delete' ? 'delete' : 'upsert',
    image: null,
    epoch: Number(r.epoch),
    attempts: Number(r.attempts),
    createdAt: Number(r.created_at),
  };
  // One row that cannot be decoded must not fail the claim of every row with it.
  const decoded = r.image === null ? { image: null } : tryDecodeImage(r.image);
  if ('reason' in decoded) entry.undecodable = decoded.reason;
  else entry.image = decoded.image;
  return entry;
}
