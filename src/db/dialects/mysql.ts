import type { Knex } from 'knex';
import type { Row } from '../../shared/row.js';
import { APPLIED_TABLE, OUTBOX_TABLE, type OutboxRecord } from '../internal-tables.js';
import { bindWith, fixedIntegerRange, keyOf, queryOnConnection, splitByPresence, whereKeys } from './common.js';
import type { BindRules, DialectAdapter, TableSide } from './dialect.js';
import { MariaFold } from './mariadb-fold.js';
import { applyMysqlSlices, ledgerCreate, ledgerUpsert } from './mysql-apply.js';
import { mysqlFixKeyCollations, mysqlUnboundKeyColumns, mysqlForeignKeyEdges, mysqlMoveIdentityAbove } from './mysql-schema.js';
import { ledgerKey } from '../ledger-key.js';

const RULES: BindRules = { datesAsText: false, booleansAsIntegers: false, jsonTextAsIs: false, isoDatetimesAsDates: true };

/**
 * MySQL and MariaDB. Differences from the others: no `UPDATE … RETURNING` (a multi-statement
 * UPDATE; SELECT … FOR UPDATE instead: one round trip), `INSERT`/`DELETE … RETURNING` only on
 * MariaDB 10.5+ (found out per connection pool, from `VERSION()`), `ON DUPLICATE KEY UPDATE`
 * instead of `ON CONFLICT` (it fires on any unique key, so full-row writes split into
 * updates and inserts), and a versioned apply sent as multi-statement queries
 * (mysql-apply.ts).
 *
 * @see https://mariadb.com/kb/en/insertreturning/
 * @see https://mariadb.com/kb/en/delete/#returning
 */
export function makeMysqlAdapter(): DialectAdapter {
  /** Whether this pool's server takes INSERT/DELETE … RETURNING (MariaDB 10.5+); set as each connection opens. */
  let returning = false;

  const lockRow = async (trx: Knex.Transaction, side: TableSide, where: Row): Promise<Row | undefined> =>
    (await trx(side.table).select('*').where(where).first().forUpdate()) as Row | undefined;

  const adapter: DialectAdapter = {
    name: 'mysql',
    inProcess: false,
    speaksPostgresWire: false,
    translatesReads: true,
    keysetRowValues: false,
    keyListAsValues: false,
    imageColumnType: 'mediumtext',

    replicationSessionSql: 'SET SESSION FOREIGN_KEY_CHECKS = 0',
    startReplicationSession(connection, done) {
      queryOnConnection(connection, adapter.replicationSessionSql, done);
    },
    foreignKeyChecksNote: (cause) => `foreign-key checks stay on: ${cause}`,

    foreignKeyEdges: mysqlForeignKeyEdges,
    fixKeyCollations: mysqlFixKeyCollations,
    unboundKeyColumns: mysqlUnboundKeyColumns,
    moveIdentityAbove: mysqlMoveIdentityAbove,
    isIdExhausted: () => false,
    idLimitReached: () => Promise.resolve(undefined),

    knexConfig(url, applicationName, options) {
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
          // The versioned apply and the update with its re-read are multi-statement queries
          // (mysql-apply.ts). Values are still bound parameters, escaped by mysql2 like every knex query.
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
                conn.query('SELECT VERSION() AS v', (versionErr, rows) => {
                  if (versionErr) return done(versionErr, conn);
                  returning = supportsReturning(String((rows as Array<{ v: unknown }> | undefined)?.[0]?.v ?? ''));
                  conn.query(`SET SESSION max_statement_time = ${statementSeconds}`, (mariaErr) => {
                    if (!mariaErr) return done(null, conn);
                    conn.query(`SET SESSION max_execution_time = ${options.statementTimeoutMs}`, () => done(null, conn));
                  });
                });
              });
            });
          },
        },
        acquireConnectionTimeout: options.acquireTimeoutMs,
      };
    },
    destroyConnection(connection) {
      try {
        (connection as { destroy?: () => void }).destroy?.();
      } catch {
        // Already gone: nothing to do.
      }
    },

    quoteIdent: (name) => `\`${name.replace(/`/g, '``')}\``,
    bind: (value, kind) => bindWith(RULES, value, kind),
    integerRange: fixedIntegerRange,
    async primaryKeyOf(knex, table) {
      const [rows] = (await knex.raw(
        `SELECT COLUMN_NAME AS name FROM information_schema.KEY_COLUMN_USAGE
          WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY'
          ORDER BY ORDINAL_POSITION`,
        [table],
      )) as [Array<{ name: string }>];
      return rows.map((r) => r.name);
    },

    forShare: (query) => query.forShare() as typeof query,
    forUpdate: (query) => query.forUpdate() as typeof query,
    takeWriteLock: () => Promise.resolve(),

    async insertReturning(trx, side, values) {
      const insert = trx(side.table).insert(values);
      if (returning) {
        const { sql, bindings } = insert.toSQL().toNative();
        const [rows] = (await trx.raw(`${sql} RETURNING *`, bindings as Knex.RawBinding[])) as unknown as [Row[]];
        return rows[0];
      }
      // MySQL: the key from the values, or the generated id; then the row under lock.
      const result = (await insert) as number[];
      let where: Row;
      if (side.key.every((c) => values[c] !== undefined && values[c] !== null)) where = keyOf(side, values);
      else if (side.key.length === 1 && result[0]) where = { [side.key[0] as string]: result[0] };
      else return undefined;
      return lockRow(trx, side, where);
    },
    async updateReturning(trx, side, where, set) {
      // No UPDATE … RETURNING on either engine: lock the row, update it and re-read it, in
      // one multi-statement round trip (was three). The lock comes first, as the classic
      // path took it, so a writer holding the row is waited for by a locking read.
      const lock = trx(side.table).select('*').where(where).limit(1).forUpdate().toSQL().toNative();
      const update = trx(side.table).where(where).update(set).toSQL().toNative();
      const [results] = (await trx.raw(`${lock.sql};\n${update.sql};\n${lock.sql}`, [...lock.bindings, ...update.bindings, ...lock.bindings] as Knex.RawBinding[])) as unknown as [
        [Row[], unknown, Row[]],
      ];
      return results[2][0];
    },
    async deleteReturning(trx, side, where) {
      if (returning) {
        const { sql, bindings } = trx(side.table).where(where).del().toSQL().toNative();
        const columns = side.key.map((c) => adapter.quoteIdent(c)).join(', ');
        const [rows] = (await trx.raw(`${sql} RETURNING ${columns}`, bindings as Knex.RawBinding[])) as unknown as [Row[]];
        return rows[0];
      }
      const before = await lockRow(trx, side, where);
      if (!before) return undefined;
      await trx(side.table).where(where).del();
      return keyOf(side, before);
    },
    lockRow,
    async prepareFold(knex, side, formatKey, encodeImage) {
      // MariaDB 10.5+ (RETURNING, anonymous compound statements); MySQL keeps the classic path.
      const [rows] = (await knex.raw('SELECT VERSION() AS v')) as [Array<{ v: unknown }>];
      if (!supportsReturning(String(rows[0]?.v ?? ''))) return undefined;
      return new MariaFold(knex, side, formatKey, encodeImage, (connection) => adapter.destroyConnection(connection));
    },

    async insertOutbox(trx, record) {
      const [id] = (await trx(OUTBOX_TABLE).insert({ ...record, status: 'pending', attempts: 0 })) as number[];
      return String(id);
    },
    claimOutbox(knex, now, leaseUntil, limit) {
      return knex.transaction(async (trx) => {
        const records = (await trx(OUTBOX_TABLE)
          .select('*')
          .where('status', 'pending')
          .andWhere('next_attempt_at', '<=', now)
          .orderBy('id')
          .limit(limit)
          .forUpdate()
          .skipLocked()) as OutboxRecord[];
        const ids = records.map((r) => r.id);
        for (let i = 0; i < ids.length; i += 1000) {
          await trx(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 1000)).update({ next_attempt_at: leaseUntil });
        }
        return records;
      });
    },

    async lockLedger(trx, tbl, rowKeys) {
      const create = ledgerCreate(tbl, rowKeys.map((rowKey) => ({ rowKey })), Date.now());
      await trx.raw(create.sql, create.bindings as Knex.RawBinding[]);
      const rows = (await trx(APPLIED_TABLE).select('row_key', 'epoch', 'seq').where('tbl', tbl).whereIn('row_key', rowKeys.map(ledgerKey)).forUpdate()) as Array<{
        row_key: string;
        epoch: number | string;
        seq: number | string;
      }>;
      return new Map(rows.map((r) => [r.row_key, { epoch: Number(r.epoch), seq: String(r.seq) }]));
    },
    async recordLedger(trx, rows) {
      if (rows.length === 0) return;
      const upsert = ledgerUpsert(rows);
      await trx.raw(upsert.sql, upsert.bindings as Knex.RawBinding[]);
    },
    async claimAbsent(trx, rows) {
      if (rows.length === 0) return;
      await trx.raw(
        `INSERT IGNORE INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES ${rows.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
        rows.flatMap((l) => [l.tbl, l.row_key, l.epoch, l.seq, l.applied_at]),
      );
    },
    async upsertRows(trx, side, rows) {
      // Lock the keys that exist, update those, insert the rest (ON DUPLICATE KEY UPDATE
      // would fire on any unique key and could overwrite another row).
      const existing = (await whereKeys(trx(side.table).select([...side.key]), side.key, rows).forUpdate()) as Row[];
      const { fresh, updates } = splitByPresence(side.key, rows, existing);
      for (const { where, set } of updates) await trx(side.table).where(where).update(set);
      if (fresh.length > 0) await trx(side.table).insert(fresh);
    },
    applyVersioned(knex, deadline, slices) {
      return applyMysqlSlices(knex, deadline, (connection) => adapter.destroyConnection(connection), slices);
    },
  };
  return adapter;
}

/** INSERT … RETURNING arrived in MariaDB 10.5; MySQL has none. */
export function supportsReturning(version: string): boolean {
  const match = /^(\d+)\.(\d+)/.exec(version);
  if (!match || !/mariadb/i.test(version)) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return major > 10 || (major === 10 && minor >= 5);
}

interface MysqlConn {
  query(sql: string, cb: (err: Error | null, rows?: unknown) => void): void;
}
