import { OUTBOX_TABLE } from '../../db/internal-tables.js';
import type { Store } from '../../db/store.js';

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

/** Makes claimed rows due again at once without counting an attempt (the breaker refused them). */
export async function releaseOutboxRows(primary: Store, ids: readonly string[], at: number): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) {
    await primary.knex(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 1000)).andWhere('status', 'pending').update({ next_attempt_at: at });
  }
}

/** After the secondary recovers: every pending row backing off is due now. */
export async function makePendingRowsDue(primary: Store): Promise<number> {
  const now = Date.now();
  return primary.knex(OUTBOX_TABLE).where('status', 'pending').andWhere('next_attempt_at', '>', now).update({ next_attempt_at: now });
}
