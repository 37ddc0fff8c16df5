import { createHash } from 'node:crypto';

/** The longest row key the applied ledger keeps as it is (`tandem_applied.row_key` is varchar(512), part of its primary key). */
const LEDGER_KEY_MAX = 512;

/**
 * How a row key is stored in the applied ledger: as it is when it fits, else `#` and its
 * SHA-256. The ledger only tells versions apart per key, through its primary key — which
 * must stay a plain short b-tree/clustered key, since every apply locks and writes it — and
 * `formatKey` never writes `#` (it URL-encodes it as %23), so the two forms cannot meet. The
 * exact key lives in the outbox (text) and the tables.
 */
export function ledgerKey(rowKey: string): string {
  return rowKey.length <= LEDGER_KEY_MAX ? rowKey : `#${createHash('sha256').update(rowKey).digest('hex')}`;
}
