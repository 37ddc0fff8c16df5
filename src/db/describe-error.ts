import { classifyDbError } from './classify-error.js';

/**
 * Driver codes whose message names only schema objects (tables, columns, constraints),
 * never a row's values: their text may be kept. Every other message may quote a value
 * (MySQL's "Duplicate entry 'a@b.c' for key …", "Incorrect integer value: 'x' …") and knex
 * prefixes each with the whole statement, bound values included.
 */
const SAFE_MESSAGE_CODES = new Set([
  'ER_NO_SUCH_TABLE',
  'ER_BAD_FIELD_ERROR',
  'ER_BAD_TABLE_ERROR',
  'ER_BAD_DB_ERROR',
  'ER_BAD_NULL_ERROR',
  'ER_NO_DEFAULT_FOR_FIELD',
  'ER_DATA_TOO_LONG',
  'ER_CHECK_CONSTRAINT_VIOLATED',
  'ER_CONSTRAINT_FAILED',
  'ER_LOCK_DEADLOCK',
  'ER_LOCK_WAIT_TIMEOUT',
  'ETANDEMDEADLINE',
  'EOPENBREAKER',
]);

interface DriverError {
  code?: unknown;
  name?: unknown;
  message?: unknown;
  sqlMessage?: unknown;
  table?: unknown;
  column?: unknown;
  constraint?: unknown;
  routine?: unknown;
}

/**
 * An error as Tandem records it (outbox `last_error`, logs, listings): the database's code,
 * its kind, and the schema objects it names — never a row's values. PostgreSQL's message
 * texts carry no values (they live in `detail`, which is dropped) but knex's prefix does, so
 * the text is rebuilt from the fields. Errors of Tandem's own making keep their message.
 */
export function describeDbError(error: unknown): string {
  const e = (error ?? {}) as DriverError;
  const code = typeof e.code === 'string' || typeof e.code === 'number' ? String(e.code) : undefined;
  const kind = classifyDbError(error);
  if (code === undefined) {
    // No driver code: Tandem's own errors (deadline, breaker, policy) say nothing about rows;
    // anything else is reduced to its class name.
    const name = typeof e.name === 'string' ? e.name : 'Error';
    const own = name === 'DeadlineError' || name === 'TandemError' || name === 'KnexTimeoutError' || name === 'OutboxRowError';
    return own && typeof e.message === 'string' ? `${name}: ${e.message.slice(0, 300)}` : `${name} (${kind}; message withheld: it may hold row values)`;
  }
  const errno = (error as { errno?: unknown }).errno;
  const parts = [typeof errno === 'number' && !/^[0-9]+$/.test(code) ? `${code} (${kind}, errno ${errno})` : `${code} (${kind})`];
  if (typeof e.table === 'string') parts.push(`table ${e.table}`);
  if (typeof e.column === 'string') parts.push(`column ${e.column}`);
  if (typeof e.constraint === 'string') parts.push(`constraint ${e.constraint}`);
  // errno 4025: MariaDB's CHECK failure (mysql2 names it after MySQL's 4025); names objects only.
  if (SAFE_MESSAGE_CODES.has(code) || errno === 4025) {
    const text = typeof e.sqlMessage === 'string' ? e.sqlMessage : typeof e.message === 'string' ? e.message.split(' - ').pop() : undefined;
    if (text) parts.push(text.slice(0, 300));
  } else if (/^[0-9A-Z]{5}$/.test(code) && !code.startsWith('22') && typeof e.message === 'string') {
    // PostgreSQL: outside class 22 (data exceptions, which quote the value) the primary
    // message names objects only; knex prepends "<sql> - ".
    parts.push(e.message.slice(e.message.lastIndexOf(' - ') + (e.message.includes(' - ') ? 3 : 0)).slice(0, 300));
  }
  return parts.join(': ');
}
