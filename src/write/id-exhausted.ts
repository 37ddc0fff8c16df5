import type { Store } from '../db/store.js';
import { TandemError } from '../errors.js';
import type { WriteOp } from './write-service.js';

/**
 * SQLite answers SQLITE_FULL ("database or disk is full") when an AUTOINCREMENT table already
 * holds rowid 2^63−1: no generated id is left, though the disk is fine. Tells that condition
 * apart (the table's largest rowid; the adapter's `isIdExhausted` and `idLimitReached`) and answers it as the client's 409 with the reason, not a
 * 503 that invites retries which can never succeed. Undefined when it is something else.
 *
 * @see https://www.sqlite.org/autoinc.html
 */
export async function explainSqliteFull(primary: Store, ops: readonly WriteOp[], error: unknown): Promise<TandemError | undefined> {
  if (!primary.adapter.isIdExhausted(error)) return undefined;
  for (const op of ops) {
    if (op.op !== 'insert' && op.op !== 'upsert') continue;
    try {
      const largest = await primary.adapter.idLimitReached(primary.knex, op.policy.sourceTable);
      if (largest !== undefined) {
        return new TandemError(
          'conflict',
          409,
          `${op.field}: ${op.policy.name} has no generated id left: it already holds id ${largest}, SQLite's largest; give the id explicitly`,
          { field: op.field, cause: error },
        );
      }
    } catch {
      // The table cannot be read either: not this condition.
    }
  }
  return undefined;
}
