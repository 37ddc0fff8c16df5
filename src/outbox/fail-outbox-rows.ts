import { OUTBOX_TABLE } from '../db/internal-tables.js';
import type { Store } from '../db/store.js';

export interface FailedRow {
  id: string;
  /** Attempts after this failure. */
  attempts: number;
  /** When the row is due again (ms since epoch). */
  nextAttemptAt: number;
  /** True when the row must stop being retried and wait for an operator. */
  dead: boolean;
  error: string;
}

/** Records failed attempts: backoff for retryable rows, `dead` for rows past their attempts. */
export async function failOutboxRows(primary: Store, rows: readonly FailedRow[]): Promise<void> {
  if (rows.length === 0) return;
  await primary.knex.transaction(async (trx) => {
    for (const row of rows) {
      await trx(OUTBOX_TABLE)
        .where({ id: row.id, status: 'pending' })
        .update({
          attempts: row.attempts,
          next_attempt_at: row.nextAttemptAt,
          status: row.dead ? 'dead' : 'pending',
          last_error: row.error.slice(0, 2000),
        });
    }
  });
}
