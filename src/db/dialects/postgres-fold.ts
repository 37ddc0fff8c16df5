import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { TandemError } from '../../errors.js';
import type { ColumnKind } from '../../shared/column-kind.js';
import type { KeyValues, Row } from '../../shared/row.js';
import { OUTBOX_TABLE, STATE_TABLE } from '../internal-tables.js';
import { PG_TEXT_IMAGE_PREFIX } from './pg-types.js';
import { quoteDouble as quoteIdent } from './common.js';
import type { FoldedWriter, FoldOp, FoldOutcome, TableSide } from './dialect.js';

export interface FoldColumn {
  name: string;
  oid: number;
  /** The type without modifiers (`character varying`, not `character varying(40)`): a cast that never truncates. */
  castType: string;
}

const META = ['$tandem_role', '$tandem_epoch', '$tandem_dual', '$tandem_changed', '$tandem_outbox_id', '$tandem_row_key'] as const;
const MAX_PREPARED_SHAPES = 64;
/** feature_not_supported: "cached plan must not change result type". */
const STALE_PLAN = '0A000';
/** undefined_column: a column the statement names was dropped since it was built. */
const UNDEFINED_COLUMN = '42703';

/** Characters encodeURIComponent leaves as they are. */
const UNRESERVED = `'^[A-Za-z0-9_.!~*''()-]*$'`;

/**
 * SQL that spells a text value as `encodeURIComponent` does: unreserved ASCII as is, every
 * other character as the %XX of its UTF-8 bytes (upper-case hex). Keys that need no
 * escaping (the common case) skip the per-character walk.
 */
export function urlEncodeSql(text: string): string {
  return (
    `(CASE WHEN ${text} ~ ${UNRESERVED} THEN ${text} ELSE (SELECT string_agg(CASE WHEN tandem_c.c ~ ${UNRESERVED} THEN tandem_c.c ` +
    `ELSE regexp_replace(upper(encode(convert_to(tandem_c.c, 'UTF8'), 'hex')), '(..)', '%\\1', 'g') END, '' ORDER BY tandem_c.n) ` +
    `FROM regexp_split_to_table(${text}, '') WITH ORDINALITY AS tandem_c(c, n)) END)`
  );
}

/**
 * SQL for one key column's part of `formatKey` (src/policy/row-key.ts): the text node-postgres'
 * value (with Tandem's parsers, src/db/pg-types.ts) turns into under `String()`,
 * `toISOString()` or base64, URL-encoded. Types not listed use their text form; the
 * writer checks every outbox key against formatKey and corrects the rare one that differs
 * (see PgFold.run), so no type is refused the fold.
 */
export function keyPartSql(column: string, oid: number): string {
  switch (oid) {
    case 20: // int8 (node-postgres: decimal text)
    case 21: // int2
    case 23: // int4
    case 26: // oid
    case 1700: // numeric (decimal text)
    case 2950: // uuid (lower-case text)
      return `${column}::text`;
    case 16: // bool → true / false
      return `(CASE WHEN ${column} THEN 'true' ELSE 'false' END)`;
    case 1184: // timestamptz → Date → toISOString (milliseconds, truncated as node-postgres does)
      return urlEncodeSql(`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`);
    case 1114: // timestamp, read as UTC (pg-types.ts)
      return urlEncodeSql(`to_char(${column}, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`);
    case 17: // bytea → Buffer → base64 (PostgreSQL breaks its base64 into lines)
      return `replace(replace(replace(replace(encode(${column}, 'base64'), E'\\n', ''), '+', '%2B'), '/', '%2F'), '=', '%3D')`;
    default:
      return urlEncodeSql(`${column}::text`);
  }
}

interface FoldStatement {
  sql: string;
  /** Prepared-statement name: a hash of the text, so equal texts share a plan per connection. */
  name: string | undefined;
}

/**
 * The PostgreSQL write path folded into one statement (DESIGN §3, §12): the state row read
 * FOR SHARE, the change with RETURNING, and — when the table is dual-writing — the outbox
 * row inserted from the change's output, all in one autocommitted statement, so one round
 * trip instead of BEGIN, state, change, outbox and COMMIT.
 *
 * Order and atomicity are the classic path's: the outbox CTE reads the change's output, so
 * its id is taken while the change holds the key's row lock; the statement is one
 * transaction. The outbox image is written by PostgreSQL as each column's text form (see
 * PG_TEXT_IMAGE_PREFIX) and decodes to exactly what the classic path encodes. The outbox
 * row's key is built in SQL as formatKey builds it (keyPartSql) for every key type.
 */
export class PgFold implements FoldedWriter {
  private readonly statements = new Map<string, FoldStatement>();
  /** Bumped when PostgreSQL refuses a prepared plan after a schema change. */
  private generation = 0;
  /** Whether the last write saw the table dual-writing (picks the statement to send). */
  private lastSeenDual = true;

  private constructor(
    private readonly knex: Knex,
    private readonly side: TableSide,
    private readonly columns: ReadonlyMap<string, FoldColumn>,
    private readonly imagePrefix: string,
    /** The column names as a PostgreSQL array literal, built once (bound, cast to text[]). */
    private readonly columnNames: string,
    private readonly formatKey: (key: KeyValues) => string,
  ) {}

  /** Reads the table's column types; undefined when the table is not there. */
  static async prepare(
    knex: Knex,
    side: TableSide,
    _kinds: ReadonlyMap<string, ColumnKind | null>,
    formatKey: (key: KeyValues) => string,
  ): Promise<PgFold | undefined> {
    const result = (await knex.raw(
      // format_type(…, NULL) of char(n) is "character" — char(1) — and of bit(n) "bit": casts
      // to them truncate ('f1'::character = 'f'). bpchar and varbit without a length do not.
      `SELECT a.attname AS name, a.atttypid::int AS oid,
              CASE a.atttypid WHEN 'bpchar'::regtype THEN 'bpchar' WHEN 'bit'::regtype THEN 'varbit' ELSE format_type(a.atttypid, NULL) END AS cast_type
         FROM pg_attribute a
        WHERE a.attrelid = to_regclass(?) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`,
      [quoteIdent(side.table)],
    )) as { rows: Array<{ name: string; oid: number; cast_type: string }> };
    if (result.rows.length === 0) return undefined;
    return PgFold.fromColumns(
      knex,
      side,
      result.rows.map((r) => ({ name: r.name, oid: Number(r.oid), castType: r.cast_type })),
      formatKey,
    );
  }

  /** The fold of a table whose columns (in table order) are known; undefined when a key column is not among them. */
  static fromColumns(knex: Knex, side: TableSide, list: readonly FoldColumn[], formatKey: (key: KeyValues) => string): PgFold | undefined {
    const columns = new Map(list.map((c) => [c.name, c]));
    if (!side.key.every((k) => columns.has(k))) return undefined;
    const types = Object.fromEntries(list.map((c) => [c.name, c.oid]));
    const imagePrefix = `${PG_TEXT_IMAGE_PREFIX}${JSON.stringify(types)},`;
    const names = `{${list.map((c) => `"${c.name.replace(/["\\]/g, (ch) => `\\${ch}`)}"`).join(',')}}`;
    return new PgFold(knex, side, columns, imagePrefix, names, formatKey);
  }

  noteStage(dualWrite: boolean): void {
    this.lastSeenDual = dualWrite;
  }

  handles(op: FoldOp): boolean {
    if (op.op === 'delete') return true;
    const names = Object.keys(op.values);
    return (op.op === 'update' || names.length > 0) && names.every((n) => this.columns.has(n));
  }

  /**
   * Runs the change. The statement with the outbox row only while the table was last seen
   * dual-writing: source-only writes send and run less. A stage change in between is caught
   * by the statement's own gate (nothing written) and the write runs again with the other.
   */
  async run(op: FoldOp, now: number, notBefore: number): Promise<FoldOutcome> {
    const first = await this.runOnce(op, now, notBefore, this.lastSeenDual);
    if (first !== 'stage-changed') return first;
    const again = await this.runOnce(op, now, notBefore, true);
    return again === 'stage-changed' ? { kind: 'fallback' } : again;
  }

  private async runOnce(op: FoldOp, now: number, notBefore: number, withOutbox: boolean): Promise<FoldOutcome | 'stage-changed'> {
    const params: unknown[] = [this.side.name];
    if (withOutbox) {
      if (op.op !== 'delete') params.push(this.imagePrefix, this.columnNames);
      params.push(notBefore, now);
    }
    let columns: string[] = [];
    if (op.op !== 'delete') {
      columns = Object.keys(op.values);
      for (const c of columns) params.push(op.values[c]);
    }
    if (op.op !== 'insert') params.push(...op.key);

    let rows: Row[];
    try {
      rows = await this.query(this.statement(op.op, columns, withOutbox), params);
    } catch (error) {
      // Nothing ran; the classic path reads the table as it is now.
      if ((error as { code?: unknown }).code === UNDEFINED_COLUMN) return { kind: 'fallback' };
      throw error;
    }
    const row = rows[0];
    if (!row) throw new TandemError('internal', 500, `no state row for table ${this.side.name}`);
    if (row['$tandem_role'] !== 'primary') return { kind: 'frozen' };
    const dual = Number(row['$tandem_dual']) === 1;
    this.lastSeenDual = dual;
    // Gated off (dual-writing, and this statement has no outbox row): nothing was written.
    if (dual && !withOutbox) return 'stage-changed';
    if (Number(row['$tandem_changed']) === 0) return { kind: 'missing' };
    const epoch = Number(row['$tandem_epoch']);
    const outboxId = row['$tandem_outbox_id'];
    const sqlKey = row['$tandem_row_key'];
    for (const name of META) delete row[name];
    const key = this.side.key.map((c) => row[c]);
    let outbox: { id: string; rowKey: string } | null = null;
    if (dual) {
      const rowKey = this.formatKey(key);
      outbox = { id: String(outboxId), rowKey };
      // A type whose text form differs from the driver's value (a float, a padded char, a
      // year past 9999): the row must carry formatKey's key before any applier sees it.
      // The worker leaves it alone within its inline grace; this costs one more round trip.
      if (sqlKey !== rowKey) await this.query({ sql: `UPDATE ${OUTBOX_TABLE} SET row_key = $1 WHERE id = $2`, name: undefined }, [rowKey, outbox.id]);
    }
    return { kind: 'written', row: op.op === 'delete' ? undefined : row, key, epoch, outbox };
  }

  /**
   * Runs a prepared statement (parsed and planned once per connection: that was most of
   * PostgreSQL's work per write). A schema change of the table makes PostgreSQL refuse the
   * prepared plan ("cached plan must not change result type") and nothing ran: the
   * statements get new names, so every connection prepares them afresh, and the write runs
   * again once.
   */
  private async query(statement: FoldStatement, params: readonly unknown[]): Promise<Row[]> {
    const generation = this.generation;
    if (statement.name === undefined) return pgQuery<Row>(this.knex, statement.sql, params);
    try {
      return await pgQuery<Row>(this.knex, statement.sql, params, `${statement.name}_${generation}`);
    } catch (error) {
      if ((error as { code?: unknown }).code !== STALE_PLAN) throw error;
      if (this.generation === generation) this.generation += 1;
      return pgQuery<Row>(this.knex, statement.sql, params, `${statement.name}_${this.generation}`);
    }
  }

  /** The statement of one op and column list, built once and kept. */
  private statement(op: FoldOp['op'], columns: readonly string[], withOutbox: boolean): FoldStatement {
    const cacheKey = `${op}:${withOutbox ? 'outbox' : 'plain'}:${columns.join(',')}`;
    let statement = this.statements.get(cacheKey);
    if (statement !== undefined) return statement;
    const sql = this.build(op, columns, withOutbox);
    // Past the cap, a rare column combination runs unprepared: each connection and the
    // server keep every prepared statement, so their number must stay bounded.
    if (this.statements.size >= MAX_PREPARED_SHAPES) return { sql, name: undefined };
    statement = { sql, name: `tandem_fold_${createHash('sha1').update(sql).digest('hex').slice(0, 24)}` };
    this.statements.set(cacheKey, statement);
    return statement;
  }

  /** The SQL text of one op (exported for the statement-builder tests through `sqlFor`). */
  sqlFor(op: FoldOp['op'], columns: readonly string[], withOutbox: boolean): string {
    return this.build(op, columns, withOutbox);
  }

  private build(op: FoldOp['op'], columns: readonly string[], withOutbox: boolean): string {
    // Placeholders in the order runOnce() pushes its parameters: table, [outbox], values, key.
    let n = 1;
    const next = () => `$${++n}`;
    const image = withOutbox && op !== 'delete' ? { prefix: next(), names: next() } : undefined;
    const outbox = withOutbox ? { notBefore: next(), createdAt: next() } : undefined;
    const table = quoteIdent(this.side.table);
    const gate = outbox ? `tandem_st.role = 'primary'` : `tandem_st.role = 'primary' AND tandem_st.dual_write = 0`;
    const keyMatch = () => this.side.key.map((k) => `${table}.${quoteIdent(k)} = ${next()}`).join(' AND ');
    let change: string;
    if (op === 'insert') {
      const values = columns.map((c) => `${next()}::${this.columns.get(c)?.castType ?? 'text'}`);
      change = `INSERT INTO ${table} (${columns.map(quoteIdent).join(', ')}) SELECT ${values.join(', ')} FROM tandem_st WHERE ${gate} RETURNING *`;
    } else if (op === 'update') {
      const sets = columns.map((c) => `${quoteIdent(c)} = ${next()}`);
      change = `UPDATE ${table} SET ${sets.join(', ')} FROM tandem_st WHERE ${gate} AND ${keyMatch()} RETURNING ${table}.*`;
    } else {
      const returning = this.side.key.map((k) => `${table}.${quoteIdent(k)}`).join(', ');
      change = `DELETE FROM ${table} USING tandem_st WHERE ${gate} AND ${keyMatch()} RETURNING ${returning}`;
    }
    const parts = [
      `WITH tandem_st AS (SELECT role, epoch, dual_write FROM ${STATE_TABLE} WHERE tbl = $1 FOR SHARE)`,
      `, tandem_ch AS (${change})`,
    ];
    if (outbox) {
      const rowKey = this.side.key
        .map((k) => keyPartSql(`tandem_ch.${quoteIdent(k)}`, this.columns.get(k)?.oid ?? 25))
        .join(` || ',' || `);
      const everyColumn = [...this.columns.values()].map((c) => `tandem_ch.${quoteIdent(c.name)}::text`).join(', ');
      // `{"$pgtypes":{…},` + json_object's `{"col" : "text", …}` without its opening brace.
      const imageSql = image ? `${image.prefix}::text || substr(json_object(${image.names}::text[], ARRAY[${everyColumn}]::text[])::text, 2)` : 'NULL';
      parts.push(
        `, tandem_ob AS (INSERT INTO ${OUTBOX_TABLE} (tbl, row_key, op, image, epoch, status, attempts, next_attempt_at, created_at)` +
          ` SELECT $1::text, ${rowKey}, '${op === 'delete' ? 'delete' : 'upsert'}', ${imageSql}, tandem_st.epoch, 'pending', 0,` +
          ` ${outbox.notBefore}::bigint, ${outbox.createdAt}::bigint FROM tandem_ch, tandem_st WHERE tandem_st.dual_write = 1 RETURNING id, row_key)`,
      );
    }
    parts.push(
      ` SELECT tandem_st.role AS "$tandem_role", tandem_st.epoch AS "$tandem_epoch", tandem_st.dual_write AS "$tandem_dual",` +
        ` (SELECT count(*) FROM tandem_ch)::int AS "$tandem_changed",` +
        ` ${outbox ? '(SELECT id FROM tandem_ob)' : 'NULL'} AS "$tandem_outbox_id",` +
        ` ${outbox ? '(SELECT row_key FROM tandem_ob)' : 'NULL'} AS "$tandem_row_key", tandem_ch.*` +
        ` FROM tandem_st LEFT JOIN tandem_ch ON true`,
    );
    return parts.join('');
  }
}

interface PgPoolClient {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<void> | void;
}

interface PgConnection {
  query(config: { name?: string; text: string; values: readonly unknown[] }): Promise<{ rows: unknown[] }>;
}

/**
 * One parameterised statement on a pooled PostgreSQL connection, without knex's query
 * builder: for the hot write path, where building the query per request showed in the
 * profile. The connection comes from, and goes back to, the store's knex pool (its
 * settings, statement timeout and type parsers); a connection that broke is disposed of by
 * knex on its next checkout. With a `name` the statement is prepared once per connection
 * (PgFold.query renames its statements after a schema change of the table).
 */
async function pgQuery<R>(knex: Knex, text: string, values: readonly unknown[], name?: string): Promise<R[]> {
  const pool = knex.client as PgPoolClient;
  const connection = (await pool.acquireConnection()) as PgConnection;
  try {
    const result = await connection.query(name === undefined ? { text, values } : { name, text, values });
    return result.rows as R[];
  } finally {
    await pool.releaseConnection(connection);
  }
}
