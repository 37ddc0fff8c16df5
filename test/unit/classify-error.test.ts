import { describe, it, expect } from 'vitest';
import {
  classifyDbError,
  DB_ERROR_KINDS,
  isClientDataError,
  isTransient,
  type DbErrorKind,
} from '../../src/db/classify-error.js';

/** An Error carrying a driver-style `code`, as pg, mysql2, better-sqlite3 and node:net throw them. */
function withCode(code: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`driver error ${code}`), { code }, extra);
}

describe('classifyDbError', () => {
  it.each([
    ['23505', 'unique'],
    ['23502', 'not_null'],
    ['23503', 'foreign_key'],
    ['23514', 'check'],
    ['40001', 'transient'],
    ['40P01', 'transient'],
    ['57014', 'timeout'],
    ['57P01', 'transient'],
    ['53300', 'transient'],
    ['22P02', 'data'], // invalid_text_representation, via class 22
    ['22001', 'data'], // string_data_right_truncation, via class 22
    ['08006', 'transient'], // connection_failure, via class 08
    ['08001', 'transient'],
    ['42P01', 'schema'], // undefined_table
    ['42703', 'schema'], // undefined_column
  ] as const)('PostgreSQL %s → %s', (code, kind) => {
    expect(classifyDbError(withCode(code))).toBe(kind);
  });

  it.each([
    ['ER_DUP_ENTRY', 'unique'],
    ['ER_BAD_NULL_ERROR', 'not_null'],
    ['ER_NO_REFERENCED_ROW_2', 'foreign_key'],
    ['ER_CHECK_CONSTRAINT_VIOLATED', 'check'],
    ['ER_DATA_TOO_LONG', 'data'],
    ['ER_LOCK_DEADLOCK', 'transient'],
    ['ER_LOCK_WAIT_TIMEOUT', 'transient'],
    ['PROTOCOL_CONNECTION_LOST', 'transient'],
    ['ER_STATEMENT_TIMEOUT', 'timeout'],
    ['ER_NO_SUCH_TABLE', 'schema'],
    ['ER_BAD_FIELD_ERROR', 'schema'],
  ] as const)('MySQL/MariaDB %s → %s', (code, kind) => {
    // mysql2 also sets a numeric errno and an sqlState; the name is what counts.
    expect(classifyDbError(withCode(code, { errno: 1, sqlState: '23000' }))).toBe(kind);
  });

  it.each([
    ['SQLITE_CONSTRAINT_UNIQUE', 'unique'],
    ['SQLITE_CONSTRAINT_PRIMARYKEY', 'unique'],
    ['SQLITE_CONSTRAINT_NOTNULL', 'not_null'],
    ['SQLITE_CONSTRAINT_FOREIGNKEY', 'foreign_key'],
    ['SQLITE_CONSTRAINT_CHECK', 'check'],
    ['SQLITE_CONSTRAINT_TRIGGER', 'check'], // any other constraint
    ['SQLITE_MISMATCH', 'data'],
    ['SQLITE_BUSY', 'transient'],
    ['SQLITE_LOCKED', 'transient'],
  ] as const)('SQLite %s → %s', (code, kind) => {
    expect(classifyDbError(withCode(code))).toBe(kind);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EAI_AGAIN', 'EOPENBREAKER'])(
    'network code %s → transient',
    (code) => {
      expect(classifyDbError(withCode(code))).toBe('transient');
    },
  );

  it('classifies a KnexTimeoutError by name (it carries no code)', () => {
    class KnexTimeoutError extends Error {
      constructor(message: string) {
        super(message);
        this.name = 'KnexTimeoutError';
      }
    }
    expect(classifyDbError(new KnexTimeoutError('Knex: Timeout acquiring a connection.'))).toBe('transient');
  });

  it('looks through a wrapping error to its cause, at any depth', () => {
    const inner = withCode('23505');
    expect(classifyDbError(new Error('insert failed', { cause: inner }))).toBe('unique');
    const deeper = new Error('outer', { cause: new Error('middle', { cause: withCode('ECONNREFUSED') }) });
    expect(classifyDbError(deeper)).toBe('transient');
  });

  it("prefers the outer error's own code over its cause", () => {
    const error = Object.assign(new Error('wrapped'), { code: '23502', cause: withCode('ECONNRESET') });
    expect(classifyDbError(error)).toBe('not_null');
  });

  it('returns unknown for an error without a known code, name or cause', () => {
    expect(classifyDbError(new Error('something odd'))).toBe('unknown');
    expect(classifyDbError(withCode('XX000'))).toBe('unknown');
    expect(classifyDbError(withCode('ER_SOMETHING_NEW'))).toBe('unknown');
    expect(classifyDbError(Object.assign(new Error('numeric code'), { code: 23505 }))).toBe('unknown');
  });

  it("falls back to the SQLSTATE when mysql2 names a MariaDB errno after MySQL's (4025: MariaDB CHECK)", () => {
    expect(classifyDbError(withCode('ER_INNODB_AUTOEXTEND_SIZE_OUT_OF_RANGE', { errno: 4025, sqlState: '23000' }))).toBe('check');
    expect(classifyDbError(withCode('ER_SOMETHING_NEW', { sqlState: '42S02' }))).toBe('schema');
  });

  it('returns unknown for non-objects', () => {
    expect(classifyDbError(null)).toBe('unknown');
    expect(classifyDbError(undefined)).toBe('unknown');
    expect(classifyDbError('23505')).toBe('unknown');
    expect(classifyDbError(42)).toBe('unknown');
  });

  it('does not loop on an error that is its own cause', () => {
    const error = new Error('self') as Error & { cause?: unknown };
    error.cause = error;
    expect(classifyDbError(error)).toBe('unknown');
  });

  it('terminates on a cause cycle of two errors', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(classifyDbError(a)).toBe('unknown');
  });
});

describe('isClientDataError / isTransient', () => {
  const expected: Record<DbErrorKind, { client: boolean; transient: boolean }> = {
    unique: { client: true, transient: false },
    not_null: { client: true, transient: false },
    foreign_key: { client: true, transient: false },
    check: { client: true, transient: false },
    data: { client: true, transient: false },
    schema: { client: false, transient: false },
    timeout: { client: false, transient: true },
    transient: { client: false, transient: true },
    unknown: { client: false, transient: false },
  };

  it.each(DB_ERROR_KINDS)('%s', (kind) => {
    expect(isClientDataError(kind)).toBe(expected[kind].client);
    expect(isTransient(kind)).toBe(expected[kind].transient);
  });

  it('no kind is both the client’s fault and transient', () => {
    for (const kind of DB_ERROR_KINDS) expect(isClientDataError(kind) && isTransient(kind)).toBe(false);
  });

  it('a unique violation is never retried; a dropped connection always is', () => {
    expect(isTransient(classifyDbError(withCode('ER_DUP_ENTRY')))).toBe(false);
    expect(isClientDataError(classifyDbError(withCode('ER_DUP_ENTRY')))).toBe(true);
    expect(isTransient(classifyDbError(withCode('PROTOCOL_CONNECTION_LOST')))).toBe(true);
    expect(isClientDataError(classifyDbError(withCode('PROTOCOL_CONNECTION_LOST')))).toBe(false);
  });
});

describe('isConnectionLoss', () => {
  it('is true for network codes and driver protocol errors, false for database refusals', async () => {
    const { isConnectionLoss } = await import('../../src/db/classify-error.js');
    expect(isConnectionLoss({ code: 'ECONNRESET' })).toBe(true);
    expect(isConnectionLoss({ code: 'PROTOCOL_CONNECTION_LOST' })).toBe(true);
    expect(isConnectionLoss({ code: '40P01' })).toBe(false);
    expect(isConnectionLoss({ code: 'ER_LOCK_DEADLOCK' })).toBe(false);
    expect(isConnectionLoss({ code: 'SQLITE_BUSY' })).toBe(false);
    expect(isConnectionLoss(new Error('no code'))).toBe(false);
  });
});
