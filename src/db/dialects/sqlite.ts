import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Row } from '../../shared/row.js';
import { OUTBOX_TABLE, type OutboxRecord } from '../internal-tables.js';
import {
  applyInTransaction,
  bindWith,
  bits,
  claimAbsentOnConflict,
  keyOf,
  lockLedgerReturning,
  quoteDouble,
  recordLedgerOnConflict,
  upsertOnConflict,
} from './common.js';
import type { BindRules, DialectAdapter } from './dialect.js';

const SQLITE_MAX_ROWID = '9223372036854775807';

const RULES: BindRules = { datesAsText: true, booleansAsIntegers: true, jsonTextAsIs: false, isoDatetimesAsDates: false };

/**
 * SQLite (better-sqlite3): one writer per database and one connection per process, so
 * there are no row locks to take (`FOR UPDATE`/`FOR SHARE` do not exist) and no claims to
 * skip; `RETURNING` exists for INSERT and UPDATE (3.35+).
 */
export const sqliteAdapter: DialectAdapter = {
  name: 'sqlite',
  inProcess: true,
  speaksPostgresWire: false,
  translatesReads: false,
  keysetRowValues: true,
  keyListAsValues: false,
  imageColumnType: 'text',

  replicationSessionSql: 'PRAGMA foreign_keys = OFF',
  // better-sqlite3's connection is synchronous.
  startReplicationSession(connection, done) {
    try {
      (connection as SqliteConn).pragma('foreign_keys = OFF');
    } catch (error) {
      return done(error as Error);
    }
    done(null);
  },
  foreignKeyChecksNote: (cause) => `foreign-key checks stay on: ${cause}`,

  async foreignKeyEdges(knex, tables) {
    const edges: Array<{ child: string; parent: string }> = [];
    for (const child of tables) {
      // A PRAGMA takes no bound parameters; the name comes from a policy and is quoted as an identifier.
      const rows = (await knex.raw(`PRAGMA foreign_key_list("${child.replace(/"/g, '""')}")`)) as Array<{ table: string }>;
      for (const r of rows) edges.push({ child, parent: r.table });
    }
    return edges;
  },
  // BINARY by default: nothing to fix.
  fixKeyCollations: () => Promise.resolve([]),
  // SQLite enforces no varchar length and its index entries have no size limit.
  unboundKeyColumns: () => Promise.resolve([]),
  // Only AUTOINCREMENT tables keep a counter; plain INTEGER PRIMARY KEY takes MAX(rowid) + 1.
  async moveIdentityAbove(knex, table, _key, floor) {
    const hasSequence = (await knex('sqlite_master').where({ type: 'table', name: 'sqlite_sequence' }).first()) !== undefined;
    if (!hasSequence) return null;
    const ddl = (await knex('sqlite_master').select('sql').where({ type: 'table', name: table }).first()) as { sql?: string } | undefined;
    if (!ddl?.sql || !/autoincrement/i.test(ddl.sql)) return null;
    return knex.transaction(async (trx) => {
      const current = (await trx('sqlite_sequence').select('seq').where({ name: table }).first()) as { seq: number | string } | undefined;
      if (current === undefined) {
        await trx('sqlite_sequence').insert({ name: table, seq: floor.toString() });
        return floor;
      }
      const value = BigInt(String(current.seq));
      if (value >= floor) return value;
      await trx('sqlite_sequence').where({ name: table }).update({ seq: floor.toString() });
      return floor;
    });
  },
  // SQLITE_FULL ("database or disk is full") when an AUTOINCREMENT table already holds rowid 2^63−1.
  isIdExhausted: (error) => (error as { code?: unknown } | null)?.code === 'SQLITE_FULL',
  async idLimitReached(knex, table) {
    const [row] = (await knex(table).max({ m: 'rowid' })) as Array<{ m: unknown }>;
    return String(row?.m) === SQLITE_MAX_ROWID ? SQLITE_MAX_ROWID : undefined;
  },

  knexConfig(url, _applicationName, options) {
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
  },
  destroyConnection() {
    // In process: nothing to cut.
  },

  quoteIdent: quoteDouble,
  bind: (value, kind) => bindWith(RULES, value, kind),
  // INTEGER is 64-bit whatever the declared type calls it.
  integerRange: (type) => (/int/i.test(type) ? bits(64) : undefined),
  async primaryKeyOf(knex, table) {
    const rows = (await knex.raw('SELECT name, pk FROM pragma_table_info(?)', [table])) as Array<{ name: string; pk: number }>;
    return rows.filter((r) => Number(r.pk) > 0).sort((a, b) => Number(a.pk) - Number(b.pk)).map((r) => r.name);
  },

  forShare: (query) => query,
  forUpdate: (query) => query,
  // Matches no row and changes nothing; as the first statement it takes the write lock.
  async takeWriteLock(trx) {
    await trx.raw('UPDATE tandem_state SET tbl = tbl WHERE 0');
  },

  async insertReturning(trx, side, values) {
    const [row] = (await trx(side.table).insert(values).returning('*')) as Row[];
    return row;
  },
  async updateReturning(trx, side, where, set) {
    const [row] = (await trx(side.table).where(where).update(set).returning('*')) as Row[];
    return row;
  },
  async deleteReturning(trx, side, where) {
    // knex's SQLite client has no RETURNING on deletes: read the stored key, then delete.
    const before = await this.lockRow(trx, side, where);
    if (!before) return undefined;
    await trx(side.table).where(where).del();
    return keyOf(side, before);
  },
  async lockRow(trx, side, where) {
    return (await trx(side.table).select('*').where(where).first()) as Row | undefined;
  },
  prepareFold: () => Promise.resolve(undefined),

  async insertOutbox(trx, record) {
    const [inserted] = (await trx(OUTBOX_TABLE).insert({ ...record, status: 'pending', attempts: 0 }).returning('id')) as Array<{ id: number | string }>;
    return String(inserted?.id);
  },
  claimOutbox(knex, now, leaseUntil, limit) {
    return knex.transaction(async (trx) => {
      const records = (await trx(OUTBOX_TABLE)
        .select('*')
        .where('status', 'pending')
        .andWhere('next_attempt_at', '<=', now)
        .orderBy('id')
        .limit(limit)) as OutboxRecord[];
      const ids = records.map((r) => r.id);
      for (let i = 0; i < ids.length; i += 500) {
        await trx(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 500)).update({ next_attempt_at: leaseUntil });
      }
      return records;
    });
  },

  lockLedger: (trx, tbl, rowKeys) => lockLedgerReturning(trx, 'epoch', tbl, rowKeys),
  recordLedger: recordLedgerOnConflict,
  claimAbsent: claimAbsentOnConflict,
  upsertRows: upsertOnConflict,
  applyVersioned(_knex, deadline, slices) {
    return deadline.transaction((trx) => applyInTransaction(sqliteAdapter, trx, slices));
  },
};

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

interface SqliteConn {
  pragma(sql: string): unknown;
  defaultSafeIntegers(on: boolean): unknown;
}
