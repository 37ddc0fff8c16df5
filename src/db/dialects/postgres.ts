import type { Knex } from 'knex';
import type { Row } from '../../shared/row.js';
import { OUTBOX_TABLE, type OutboxRecord } from '../internal-tables.js';
import { PG_TYPES } from './pg-types.js';
import {
  applyInTransaction,
  bindWith,
  claimAbsentOnConflict,
  fixedIntegerRange,
  lockLedgerReturning,
  queryOnConnection,
  quoteDouble,
  recordLedgerOnConflict,
  upsertOnConflict,
} from './common.js';
import type { BindRules, DialectAdapter } from './dialect.js';
import { PgFold } from './postgres-fold.js';
import { pgUnboundKeyColumns } from './postgres-schema.js';

const RULES: BindRules = { datesAsText: false, booleansAsIntegers: false, jsonTextAsIs: true, isoDatetimesAsDates: false };

/**
 * PostgreSQL: `RETURNING` on every change, `FOR SHARE`/`FOR UPDATE`, `SKIP LOCKED`, and the
 * whole single-row write folded into one prepared statement (postgres-fold.ts).
 */
export const postgresAdapter: DialectAdapter = {
  name: 'pg',
  inProcess: false,
  speaksPostgresWire: true,
  translatesReads: false,
  keysetRowValues: true,
  keyListAsValues: true,
  imageColumnType: 'text',

  // Superuser, or PostgreSQL 15+ with GRANT SET ON PARAMETER session_replication_role; it also
  // skips ordinary triggers on the target, as logical replication does.
  replicationSessionSql: 'SET session_replication_role = replica',
  startReplicationSession(connection, done) {
    queryOnConnection(connection, postgresAdapter.replicationSessionSql, done);
  },
  foreignKeyChecksNote: (cause) =>
    `foreign-key checks stay on: this role may not set session_replication_role (${cause}); make it superuser or GRANT SET ON PARAMETER session_replication_role (PostgreSQL 15+), or expect child rows queued until their parents arrive`,

  async foreignKeyEdges(knex, tables) {
    const result = (await knex.raw(
      `SELECT cl.relname AS child, pl.relname AS parent FROM pg_constraint c
         JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_class pl ON pl.oid = c.confrelid
        WHERE c.contype = 'f' AND pg_table_is_visible(cl.oid) AND pg_table_is_visible(pl.oid)`,
    )) as { rows: Array<{ child: string; parent: string }> };
    return result.rows.filter((e) => tables.includes(e.child));
  },
  // Deterministic collations compare equal only byte-equal strings: nothing to fix.
  fixKeyCollations: () => Promise.resolve([]),
  unboundKeyColumns: pgUnboundKeyColumns,
  async moveIdentityAbove(knex, table, key, floor) {
    const found = (await knex.raw('SELECT pg_get_serial_sequence(?, ?) AS seq', [quoteDouble(table), key])) as { rows: Array<{ seq: string | null }> };
    const seq = found.rows[0]?.seq;
    if (!seq) return null;
    // setval(seq, v, true): the next nextval() returns v + 1. GREATEST keeps it from going back.
    const result = (await knex.raw(
      `SELECT setval(?::regclass, GREATEST(?::bigint, COALESCE(pg_sequence_last_value(?::regclass), 0), 1), true) AS v`,
      [seq, floor.toString(), seq],
    )) as { rows: Array<{ v: string | number }> };
    return BigInt(String(result.rows[0]?.v ?? floor));
  },
  isIdExhausted: () => false,
  idLimitReached: () => Promise.resolve(undefined),

  knexConfig(url, applicationName, options) {
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
      pool: { min: 0, max: options.poolMax },
      acquireConnectionTimeout: options.acquireTimeoutMs,
    };
  },
  destroyConnection(connection) {
    try {
      (connection as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    } catch {
      // Already gone: nothing to do.
    }
  },

  quoteIdent: quoteDouble,
  bind: (value, kind) => bindWith(RULES, value, kind),
  integerRange: fixedIntegerRange,
  async primaryKeyOf(knex, table) {
    const result = (await knex.raw(
      `SELECT a.attname AS name
         FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = to_regclass(?) AND i.indisprimary
        ORDER BY array_position(i.indkey::int2[], a.attnum)`,
      [quoteDouble(table)],
    )) as { rows: Array<{ name: string }> };
    return result.rows.map((r) => r.name);
  },

  forShare: (query) => query.forShare() as typeof query,
  forUpdate: (query) => query.forUpdate() as typeof query,
  takeWriteLock: () => Promise.resolve(),

  async insertReturning(trx, side, values) {
    const [row] = (await trx(side.table).insert(values).returning('*')) as Row[];
    return row;
  },
  async updateReturning(trx, side, where, set) {
    const [row] = (await trx(side.table).where(where).update(set).returning('*')) as Row[];
    return row;
  },
  async deleteReturning(trx, side, where) {
    const [gone] = (await trx(side.table).where(where).del().returning([...side.key])) as Row[];
    return gone;
  },
  async lockRow(trx, side, where) {
    return (await trx(side.table).select('*').where(where).first().forUpdate()) as Row | undefined;
  },
  prepareFold: (knex, side, formatKey) => PgFold.prepare(knex, side, formatKey),

  async insertOutbox(trx, record) {
    const [inserted] = (await trx(OUTBOX_TABLE).insert({ ...record, status: 'pending', attempts: 0 }).returning('id')) as Array<{ id: number | string }>;
    return String(inserted?.id);
  },
  async claimOutbox(knex, now, leaseUntil, limit) {
    // One statement: select, lock and lease in a single round trip.
    const result = (await knex.raw(
      `UPDATE ${OUTBOX_TABLE} SET next_attempt_at = ?
        WHERE id IN (SELECT id FROM ${OUTBOX_TABLE}
                      WHERE status = 'pending' AND next_attempt_at <= ?
                      ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
        RETURNING *`,
      [leaseUntil, now, limit],
    )) as { rows: OutboxRecord[] };
    return result.rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
  },

  // In ON CONFLICT DO UPDATE a bare column name is ambiguous: name the table's row.
  lockLedger: (trx, tbl, rowKeys) => lockLedgerReturning(trx, 'tandem_applied.epoch', tbl, rowKeys),
  recordLedger: recordLedgerOnConflict,
  claimAbsent: claimAbsentOnConflict,
  upsertRows: upsertOnConflict,
  applyVersioned(_knex, deadline, slices) {
    return deadline.transaction((trx) => applyInTransaction(postgresAdapter, trx, slices));
  },
};

