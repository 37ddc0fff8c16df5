import { mkdirSync } from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { PG_TYPES } from './pg-types.js';
import { addQueryDeadline } from './query-deadline.js';
import { makeSessionState, startReplicationSession, startSqliteReplicationSession, type SessionState } from './replication-session.js';

export const DIALECTS = ['pg', 'mysql', 'sqlite'] as const;
export type Dialect = (typeof DIALECTS)[number];

export const STORE_NAMES = ['source', 'target'] as const;
export type StoreName = (typeof STORE_NAMES)[number];

/** One database Tandem talks to: its pool, its dialect and a printable (password-free) URL. */
export interface Store {
  readonly name: StoreName;
  readonly dialect: Dialect;
  readonly knex: Knex;
  readonly displayUrl: string;
  /** The target's sessions are replication sessions (replication-session.ts): whether its FK checks are off. */
  readonly session: SessionState;
}

export interface StoreOptions {
  /** knex's own warnings (e.g. a pooled connection that dropped); default: silent. */
  onLog?: (level: 'warn' | 'error' | 'deprecate', message: string) => void;
  statementTimeoutMs: number;
  poolMax: number;
  acquireTimeoutMs: number;
  connectTimeoutMs: number;
}

export function dialectOf(url: string): Dialect {
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') return 'pg';
  if (scheme === 'mysql' || scheme === 'mariadb') return 'mysql';
  if (scheme === 'sqlite') return 'sqlite';
  throw new Error(`unsupported database URL scheme "${scheme}"`);
}

/** The URL without its password, for logs and status. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, '//$1:***@');
}

export function makeStore(name: StoreName, url: string, options: StoreOptions): Store {
  const dialect = dialectOf(url);
  const onLog = options.onLog ?? (() => undefined);
  const session = makeSessionState();
  // knex prints its warnings with console.log: route them into Tandem's JSON logs instead,
  // so stdout stays one JSON document per line.
  const knex = knexFactory({
    ...knexConfig(name, dialect, url, options, session),
    log: {
      warn: (message: unknown) => onLog('warn', String(message)),
      error: (message: unknown) => onLog('error', String(message)),
      deprecate: (message: unknown) => onLog('deprecate', String(message)),
      debug: () => undefined,
    },
  });
  return Object.freeze({ name, dialect, knex, displayUrl: redactUrl(url), session });
}

function knexConfig(name: StoreName, dialect: Dialect, url: string, options: StoreOptions, session: SessionState): Knex.Config {
  const applicationName = `tandem-${name}`;
  // The target only ever receives replicated rows (a cutover is refused by this build).
  const replica = name === 'target';
  if (dialect === 'pg') {
    return {
      client: 'pg',
      connection: {
        connectionString: url,
        application_name: applicationName,
        statement_timeout: options.statementTimeoutMs,
        connectionTimeoutMillis: options.connectTimeoutMs,
        keepAlive: true,
        types: PG_TYPES,
      } as Knex.PgConnectionConfig,
      pool: {
        min: 0,
        max: options.poolMax,
        afterCreate: (conn: unknown, done: (err: Error | null, conn: unknown) => void) => {
          if (!replica) return done(null, withDeadline(dialect, conn, options));
          startReplicationSession(dialect, conn, session, () => done(null, withDeadline(dialect, conn, options)));
        },
      },
      acquireConnectionTimeout: options.acquireTimeoutMs,
    };
  }
  if (dialect === 'mysql') {
    const parsed = new URL(url.replace(/^mariadb:/i, 'mysql:'));
    const statementSeconds = Math.max(1, Math.ceil(options.statementTimeoutMs / 1000));
    return {
      client: 'mysql2',
      connection: {
        host: parsed.hostname,
        port: parsed.port ? Number(parsed.port) : 3306,
        user: decodeURIComponent(parsed.username || 'root'),
        password: decodeURIComponent(parsed.password),
        database: decodeURIComponent(parsed.pathname.replace(/^\//, '')),
        // Exact values: BIGINT and DECIMAL as strings, times in UTC.
        supportBigNumbers: true,
        bigNumberStrings: true,
        timezone: 'Z',
        // A DATE is a calendar day: never turn it into a midnight in some zone.
        dateStrings: ['DATE'],
        charset: 'utf8mb4',
        // The versioned apply sends its statements in two round trips (src/write/apply-mysql.ts).
        // Values are still bound parameters, escaped by mysql2 like every knex query.
        multipleStatements: true,
        connectTimeout: options.connectTimeoutMs,
        enableKeepAlive: true,
        connectAttributes: { program_name: applicationName },
      } as unknown as Knex.MySql2ConnectionConfig,
      pool: {
        min: 0,
        max: options.poolMax,
        afterCreate: (conn: MysqlConn, done: (err: Error | null, conn: unknown) => void) => {
          // READ COMMITTED avoids InnoDB gap locks between concurrent writers on nearby keys.
          // max_statement_time is MariaDB's statement timeout (seconds); MySQL uses max_execution_time.
          conn.query(`SET SESSION time_zone = '+00:00'`, (zoneErr) => {
            if (zoneErr) return done(zoneErr, conn);
            conn.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED', (isoErr) => {
              if (isoErr) return done(isoErr, conn);
              conn.query(`SET SESSION max_statement_time = ${statementSeconds}`, (mariaErr) => {
                if (!mariaErr && replica) return startReplicationSession(dialect, conn, session, () => done(null, withDeadline(dialect, conn, options)));
                if (!mariaErr) return done(null, withDeadline(dialect, conn, options));
                conn.query(`SET SESSION max_execution_time = ${options.statementTimeoutMs}`, () => {
                  if (replica) startReplicationSession(dialect, conn, session, () => done(null, withDeadline(dialect, conn, options)));
                  else done(null, withDeadline(dialect, conn, options));
                });
              });
            });
          });
        },
      },
      acquireConnectionTimeout: options.acquireTimeoutMs,
    };
  }
  const file = url.replace(/^sqlite:(\/\/)?/i, '');
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  return {
    client: 'better-sqlite3',
    connection: { filename: file },
    useNullAsDefault: true,
    // SQLite has one writer; one connection per process serialises our transactions.
    pool: {
      min: 1,
      max: 1,
      afterCreate: (conn: SqliteConn, done: (err: Error | null, conn: unknown) => void) => {
        try {
          conn.pragma('journal_mode = WAL');
          conn.pragma(`busy_timeout = ${options.statementTimeoutMs}`);
          conn.pragma('foreign_keys = ON');
          if (replica) startSqliteReplicationSession(conn, session);
          // Exact integers beyond 2^53; postProcessResponse turns small ones back into numbers.
          conn.defaultSafeIntegers(true);
          done(null, conn);
        } catch (error) {
          done(error as Error, conn);
        }
      },
    },
    acquireConnectionTimeout: options.acquireTimeoutMs,
    postProcessResponse: unBigInt,
  };
}

/** The client-side statement deadline: the server's statement timeout plus a second for its answer to arrive. */
function withDeadline(dialect: Dialect, conn: unknown, options: StoreOptions): unknown {
  addQueryDeadline(dialect, conn, options.statementTimeoutMs + 1_000);
  return conn;
}

/** SQLite integers arrive as BigInt: numbers when safe, decimal strings beyond 2^53. */
function unBigInt(value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
  }
  if (Array.isArray(value)) return value.map(unBigInt);
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value) && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = typeof v === 'bigint' ? unBigInt(v) : v;
    return out;
  }
  return value;
}

interface MysqlConn {
  query(sql: string, cb: (err: Error | null) => void): void;
}
interface SqliteConn {
  pragma(sql: string): unknown;
  defaultSafeIntegers(on: boolean): unknown;
}

/**
 * Destroys a pooled connection's socket so a query stuck on a dead network fails now;
 * knex marks the connection disposed and the pool replaces it.
 */
export function destroyConnection(dialect: Dialect, connection: unknown): void {
  const conn = connection as {
    connection?: { stream?: { destroy(): void } };
    destroy?: () => void;
  };
  try {
    if (dialect === 'pg') conn.connection?.stream?.destroy();
    else if (dialect === 'mysql') conn.destroy?.();
  } catch {
    // Already gone: nothing to do.
  }
}
