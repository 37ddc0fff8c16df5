import { tryDecodeImage, type Row } from '../image-codec.js';

export const OUTBOX_OPS = ['upsert', 'delete'] as const;
export type OutboxOp = (typeof OUTBOX_OPS)[number];

export const OUTBOX_STATUSES = ['pending', 'done', 'dead'] as const;
export type OutboxStatus = (typeof OUTBOX_STATUSES)[number];

/** One change of one key, as written in the primary's transaction. `(epoch, id)` is its version. */
export interface OutboxEntry {
  id: string;
  table: string;
  rowKey: string;
  op: OutboxOp;
  /** Source-shaped after-image; null for a delete (tombstone). */
  image: Row | null;
  epoch: number;
  attempts: number;
  createdAt: number;
  /** Set when the stored image could not be decoded: the row goes dead at once with this reason. */
  undecodable?: string;
}

export interface OutboxRecord {
  id: number | string;
  tbl: string;
  row_key: string;
  op: string;
  image: string | null;
  epoch: number | string;
  status: string;
  attempts: number | string;
  next_attempt_at: number | string;
  last_error: string | null;
  created_at: number | string;
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

/** Compares versions `(epoch, seq)`; seq compared as a big integer. */
export function compareVersion(a: { epoch: number; seq: string }, b: { epoch: number; seq: string }): number {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  const x = BigInt(a.seq);
  const y = BigInt(b.seq);
  return x === y ? 0 : x < y ? -1 : 1;
}
