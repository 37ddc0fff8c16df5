import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import type { Dialect } from '../../src/db/store.js';
import { anyTestFailed, openDatabases } from './registry.js';

/** A dialect pair the integration suites run over (DESIGN §11). */
export interface Pair {
  name: string;
  source: Dialect;
  target: Dialect;
}

export const PAIRS: readonly Pair[] = [
  { name: 'sqlite→sqlite', source: 'sqlite', target: 'sqlite' },
  { name: 'postgres→mariadb', source: 'pg', target: 'mysql' },
  { name: 'mariadb→postgres', source: 'mysql', target: 'pg' },
  { name: 'postgres→postgres', source: 'pg', target: 'pg' },
];

const PG_URL = process.env['TANDEM_TEST_PG_URL'];
const MYSQL_URL = process.env['TANDEM_TEST_MYSQL_URL'];
const REQUIRED = new Set((process.env['TANDEM_TEST_REQUIRE'] ?? '').split(',').map((s) => s.trim()).filter(Boolean));

/** Whether a dialect can run here. With TANDEM_TEST_REQUIRE naming it, a missing URL is a failure. */
export function dialectAvailable(dialect: Dialect): boolean {
  if (dialect === 'sqlite') return true;
  const url = dialect === 'pg' ? PG_URL : MYSQL_URL;
  if (url) return true;
  const name = dialect === 'pg' ? 'pg' : 'mysql';
  const variable = dialect === 'pg' ? 'TANDEM_TEST_PG_URL' : 'TANDEM_TEST_MYSQL_URL';
  if (REQUIRED.has(name)) throw new Error(`${variable} is not set but TANDEM_TEST_REQUIRE names ${name}`);
  return false;
}

/** The pairs runnable here; prints a visible notice for each one skipped. */
export function runnablePairs(pairs: readonly Pair[] = PAIRS): Pair[] {
  return pairs.filter((pair) => {
    const ok = dialectAvailable(pair.source) && dialectAvailable(pair.target);
    if (!ok) {
      console.warn(`[tandem tests] SKIPPING pair ${pair.name}: set TANDEM_TEST_PG_URL and TANDEM_TEST_MYSQL_URL to run it`);
    }
    return ok;
  });
}

/** A scratch database owned by one test file. */
export interface TestDatabase {
  dialect: Dialect;
  /** The database name (PostgreSQL, MariaDB) or the file (SQLite): what a failed run prints. */
  name: string;
  url: string;
  host: string;
  port: number;
  /** A knex handle for assertions and fixtures (not Tandem's pool). */
  knex: Knex;
  /** Drops the database (keeps it and prints its name when a test of this file failed). */
  drop(): Promise<void>;
}

let counter = 0;

/** Registers a scratch database as open (the per-file leak check names what was never dropped). */
function track(db: TestDatabase): void {
  openDatabases.set(db.name, { describe: () => `${db.dialect} database ${db.name}`, release: () => db.drop() });
}

/**
 * Closes the handle and drops the database — unless a test of this file failed (see
 * `test/helpers/setup-file.ts`): then the database is kept for inspection and its name printed.
 */
async function release(db: TestDatabase, destroy: () => Promise<void>): Promise<void> {
  if (!openDatabases.delete(db.name)) return;
  await db.knex.destroy();
  if (anyTestFailed()) {
    console.warn(`[tandem tests] a test failed: KEEPING ${db.dialect} database ${db.name} for inspection (${db.url})`);
    return;
  }
  await destroy();
}

/** Where scratch databases are created: the test URLs unless the caller (the benchmark) names others. */
export interface DatabaseServers {
  pg?: string;
  mysql?: string;
  /** First part of the database name (default `tandem_t`). */
  prefix?: string;
}

export async function createTestDatabase(dialect: Dialect, label: string, servers: DatabaseServers = {}): Promise<TestDatabase> {
  counter += 1;
  const name = `${servers.prefix ?? 'tandem_t'}_${label.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 20)}_${process.pid}_${counter}_${Date.now() % 100000}`;
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-test-'));
    const file = path.join(dir, `${name}.db`);
    const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: file }, useNullAsDefault: true, pool: { min: 1, max: 1, afterCreate: (c: { pragma(s: string): void }, done: (e: Error | null, c: unknown) => void) => { c.pragma('busy_timeout = 10000'); done(null, c); } } });
    const db: TestDatabase = {
      dialect,
      name: file,
      url: `sqlite:${file}`,
      host: '',
      port: 0,
      knex,
      drop: () => release(db, async () => rmSync(dir, { recursive: true, force: true })),
    };
    track(db);
    return db;
  }
  const server = dialect === 'pg' ? (servers.pg ?? PG_URL) : (servers.mysql ?? MYSQL_URL);
  if (!server) throw new Error(`no ${dialect === 'pg' ? 'PostgreSQL' : 'MariaDB/MySQL'} server URL for a scratch database`);
  const base = new URL(server);
  const admin = knexFactory(
    dialect === 'pg'
      ? { client: 'pg', connection: base.toString(), pool: { min: 0, max: 1 } }
      : { client: 'mysql2', connection: mysqlConnection(base), pool: { min: 0, max: 1 } },
  );
  try {
    await admin.raw(dialect === 'pg' ? `CREATE DATABASE "${name}"` : `CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`);
  } finally {
    await admin.destroy();
  }
  const url = new URL(base.toString());
  url.pathname = `/${name}`;
  const knex = knexFactory(
    dialect === 'pg'
      ? { client: 'pg', connection: url.toString(), pool: { min: 0, max: 4 } }
      : { client: 'mysql2', connection: { ...mysqlConnection(url), supportBigNumbers: true, bigNumberStrings: true, timezone: 'Z' }, pool: { min: 0, max: 4 } },
  );
  const db: TestDatabase = {
    dialect,
    name,
    url: url.toString(),
    host: url.hostname,
    port: Number(url.port || (dialect === 'pg' ? 5432 : 3306)),
    knex,
    drop: () => release(db, async () => {
      const cleanup = knexFactory(
        dialect === 'pg'
          ? { client: 'pg', connection: base.toString(), pool: { min: 0, max: 1 } }
          : { client: 'mysql2', connection: mysqlConnection(base), pool: { min: 0, max: 1 } },
      );
      try {
        await cleanup.raw(dialect === 'pg' ? `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)` : `DROP DATABASE IF EXISTS \`${name}\``);
      } finally {
        await cleanup.destroy();
      }
    }),
  };
  track(db);
  return db;
}

function mysqlConnection(url: URL): Knex.MySql2ConnectionConfig {
  return {
    host: url.hostname,
    port: Number(url.port || 3306),
    user: decodeURIComponent(url.username || 'root'),
    password: decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.replace(/^\//, '')) || undefined,
  } as Knex.MySql2ConnectionConfig;
}

/** A knex handle on a PostgreSQL or MariaDB/MySQL URL (numbers as strings, UTC), for admin work. */
export function knexForUrl(url: string, poolMax = 2): Knex {
  const parsed = new URL(url);
  if (/^postgres(ql)?:$/i.test(parsed.protocol)) return knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: poolMax } });
  if (/^(mysql|mariadb):$/i.test(parsed.protocol)) {
    return knexFactory({
      client: 'mysql2',
      connection: { ...mysqlConnection(parsed), timezone: 'Z', supportBigNumbers: true, bigNumberStrings: true },
      pool: { min: 0, max: poolMax },
    });
  }
  throw new Error(`unsupported database URL ${url}`);
}

/** The same database reached through another host:port (a fault proxy). */
export function viaProxy(db: TestDatabase, port: number, host = '127.0.0.1'): string {
  const url = new URL(db.url);
  url.hostname = host;
  url.port = String(port);
  return url.toString();
}
