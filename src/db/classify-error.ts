/**
 * One table of database and network error codes drives retries, breakers and HTTP status.
 * Classify by code, never by message text.
 *
 * @see https://www.postgresql.org/docs/current/errcodes-appendix.html
 * @see https://mariadb.com/kb/en/mariadb-error-code-reference/
 * @see https://www.sqlite.org/rescode.html
 */
export const DB_ERROR_KINDS = [
  'unique',
  'not_null',
  'foreign_key',
  'check',
  'data',
  'schema',
  'timeout',
  'transient',
  'unknown',
] as const;
export type DbErrorKind = (typeof DB_ERROR_KINDS)[number];

const PG_CODES: Record<string, DbErrorKind> = {
  '23505': 'unique',
  '23502': 'not_null',
  '23503': 'foreign_key',
  '23514': 'check',
  '23P01': 'check',
  '40001': 'transient', // serialization_failure
  '40P01': 'transient', // deadlock_detected
  '55P03': 'transient', // lock_not_available
  '57014': 'timeout', // query_canceled (statement_timeout)
  '57P01': 'transient', // admin_shutdown
  '57P02': 'transient', // crash_shutdown
  '57P03': 'transient', // cannot_connect_now
  '53300': 'transient', // too_many_connections
  '53100': 'transient', // disk_full
  '42P01': 'schema', // undefined_table
  '42703': 'schema', // undefined_column
  '42704': 'schema', // undefined_object
  '42883': 'schema', // undefined_function
  '3F000': 'schema', // invalid_schema_name
  '42501': 'schema', // insufficient_privilege: the target is not set up for Tandem's role
};

const MYSQL_CODES: Record<string, DbErrorKind> = {
  ER_DUP_ENTRY: 'unique',
  ER_BAD_NULL_ERROR: 'not_null',
  ER_NO_DEFAULT_FOR_FIELD: 'not_null',
  ER_NO_REFERENCED_ROW: 'foreign_key',
  ER_NO_REFERENCED_ROW_2: 'foreign_key',
  ER_ROW_IS_REFERENCED: 'foreign_key',
  ER_ROW_IS_REFERENCED_2: 'foreign_key',
  ER_CONSTRAINT_FAILED: 'check',
  ER_CHECK_CONSTRAINT_VIOLATED: 'check',
  ER_DATA_TOO_LONG: 'data',
  ER_TRUNCATED_WRONG_VALUE: 'data',
  ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: 'data',
  ER_WARN_DATA_OUT_OF_RANGE: 'data',
  ER_DATA_OUT_OF_RANGE: 'data',
  ER_INVALID_JSON_TEXT: 'data',
  ER_WRONG_VALUE_FOR_TYPE: 'data',
  WARN_DATA_TRUNCATED: 'data',
  ER_LOCK_DEADLOCK: 'transient',
  ER_LOCK_WAIT_TIMEOUT: 'transient',
  ER_CON_COUNT_ERROR: 'transient',
  ER_SERVER_SHUTDOWN: 'transient',
  PROTOCOL_CONNECTION_LOST: 'transient',
  PROTOCOL_SEQUENCE_TIMEOUT: 'transient',
  ER_NO_SUCH_TABLE: 'schema',
  ER_BAD_FIELD_ERROR: 'schema',
  ER_BAD_TABLE_ERROR: 'schema',
  ER_BAD_DB_ERROR: 'schema',
  ER_TABLEACCESS_DENIED_ERROR: 'schema',
  ER_COLUMNACCESS_DENIED_ERROR: 'schema',
  ER_STATEMENT_TIMEOUT: 'timeout',
  ER_QUERY_TIMEOUT: 'timeout',
};

const SQLITE_CODES: Record<string, DbErrorKind> = {
  SQLITE_CONSTRAINT_UNIQUE: 'unique',
  SQLITE_CONSTRAINT_PRIMARYKEY: 'unique',
  SQLITE_CONSTRAINT_NOTNULL: 'not_null',
  SQLITE_CONSTRAINT_FOREIGNKEY: 'foreign_key',
  SQLITE_CONSTRAINT_CHECK: 'check',
  SQLITE_MISMATCH: 'data',
  SQLITE_TOOBIG: 'data',
  // SQLite's generic error: on statements Tandem generates from policies, a missing table
  // or column (SQLite has no finer code for them).
  SQLITE_ERROR: 'schema',
  SQLITE_BUSY: 'transient',
  SQLITE_BUSY_SNAPSHOT: 'transient',
  SQLITE_LOCKED: 'transient',
};

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
  'ETANDEMDEADLINE',
  'EOPENBREAKER',
]);

/** Error names without codes that are nonetheless about the connection, not the data. */
const TRANSIENT_NAMES = new Set(['KnexTimeoutError', 'DeadlineError']);

export function classifyDbError(error: unknown, seen: Set<unknown> = new Set()): DbErrorKind {
  if (seen.has(error)) return 'unknown';
  seen.add(error);
  const e = error as { code?: unknown; errno?: unknown; name?: unknown; cause?: unknown } | null;
  if (!e || typeof e !== 'object') return 'unknown';
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (code) {
    if (NETWORK_CODES.has(code)) return 'transient';
    const known = PG_CODES[code] ?? MYSQL_CODES[code] ?? SQLITE_CODES[code];
    if (known) return known;
    if (/^22[0-9A-Z]{3}$/.test(code)) return 'data'; // PostgreSQL class 22: data_exception
    if (/^08[0-9A-Z]{3}$/.test(code)) return 'transient'; // class 08: connection_exception
    if (/^42[0-9A-Z]{3}$/.test(code)) return 'schema'; // class 42: syntax_error_or_access_rule_violation
    if (code.startsWith('SQLITE_CONSTRAINT')) return 'check';
  }
  // MySQL and MariaDB number some errors differently (MariaDB's 4025 CHECK failure is
  // MySQL's 4025 InnoDB autoextend error, and mysql2 names it after MySQL): their SQLSTATE
  // agrees, so an unknown name falls back to it.
  const sqlState = (e as { sqlState?: unknown }).sqlState;
  if (typeof sqlState === 'string') {
    if (sqlState.startsWith('23')) return 'check'; // integrity constraint violation
    if (sqlState === '42S02' || sqlState === '42S22' || sqlState === '42000') return 'schema'; // no such table / column, access
    if (sqlState.startsWith('22')) return 'data';
  }
  if (typeof e.name === 'string' && TRANSIENT_NAMES.has(e.name)) return 'transient';
  if (e.cause && e.cause !== error) {
    const inner = classifyDbError(e.cause, seen);
    if (inner !== 'unknown') return inner;
  }
  return 'unknown';
}

/** The client's own fault (bad data, constraint): never retried on another store, never trips a breaker. */
export function isClientDataError(kind: DbErrorKind): boolean {
  return kind === 'unique' || kind === 'not_null' || kind === 'foreign_key' || kind === 'check' || kind === 'data';
}

/**
 * Connection-level trouble: retried until the store answers, never made dead. Unknown
 * errors are not silently transient: they are retried too (connection loss in some drivers
 * carries no code) but each try counts, so a row failing for an unknown reason ends dead
 * and visible after `outbox.maxAttempts`.
 */
export function isTransient(kind: DbErrorKind): boolean {
  return kind === 'transient' || kind === 'timeout';
}

/**
 * The secondary refuses this row for good (a CHECK, a NOT NULL, a value that does not fit):
 * retrying cannot help, so the row goes dead at once with the reason. Unique and foreign-key
 * violations are not: they can heal when other rows arrive (a swapped unique value, a child
 * applied before its parent).
 */
export function isPermanentRowError(kind: DbErrorKind): boolean {
  return kind === 'check' || kind === 'not_null' || kind === 'data';
}

/**
 * The target's schema does not match the policy yet (missing table or column, no privilege):
 * about a table, not a row and not the store's health. Retried with the longest backoff until
 * an operator fixes the schema, never made dead, never a breaker failure.
 */
export function isSchemaError(kind: DbErrorKind): boolean {
  return kind === 'schema';
}

/**
 * The connection itself failed (as opposed to the database refusing a statement). After such
 * an error a transaction's outcome is unknown — the COMMIT may have landed — so the write
 * path must not run it again.
 */
export function isConnectionLoss(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('PROTOCOL_'));
}
