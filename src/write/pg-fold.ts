import { createHash } from 'node:crypto';
import { OUTBOX_TABLE, STATE_TABLE } from '../db/internal-tables.js';
import { pgQuery } from '../db/pg-direct.js';
import type { Store } from '../db/store.js';
import { TandemError } from '../errors.js';
import type { Policy } from '../policy/policy.js';
import type { KeyValues } from '../policy/row-key.js';
import type { Row } from './image-codec.js';
import { PG_TEXT_IMAGE_PREFIX } from './image-codec.js';
import { bindRow, notFound, storedKey, tableFrozen, updateChanges, type PrimaryChange } from './primary-ops.js';

/** A single-row change the folded statement can run (upserts take the classic path). */
export type FoldableOp =
  | { op: 'insert'; policy: Policy; values: Row; field: string }
  | { op: 'update'; policy: Policy; key: KeyValues; values: Row; field: string; keyField: string }
  | { op: 'delete'; policy: Policy; key: KeyValues; field: string; keyField: string };

export interface FoldedChange {
  change: PrimaryChange;
  epoch: number;
  /** The outbox row's id when the table is dual-writing, else null. */
  outboxId: string | null;
}

interface FoldColumn {
  name: string;
  oid: number;
  /** The type without modifiers (`character varying`, not `character varying(40)`): a cast that never truncates. */
  castType: string;
}

/** int2, int4, int8 and uuid: their text form is the key text formatKey makes of the driver's value. */
const KEY_TEXT_OIDS = new Set([20, 21, 23, 2950]);
const META = ['$tandem_role', '$tandem_epoch', '$tandem_dual', '$tandem_changed', '$tandem_outbox_id'] as const;
const MAX_PREPARED_SHAPES = 64;
/** feature_not_supported: "cached plan must not change result type". */
const STALE_PLAN = '0A000';
/** undefined_column: a column the statement names was dropped since it was built. */
const UNDEFINED_COLUMN = '42703';

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
 * row's key is the columns' text, which is formatKey's text only for integer and uuid keys:
 * tables with other keys fold only while source-only and take the classic path once
 * dual-writing (the statement then changes nothing and says so).
 */
export class PgFold {
  private readonly statements = new Map<string, FoldStatement>();
  /** Bumped when PostgreSQL refuses a prepared plan after a schema change. */
  private generation = 0;
  /** Whether the last write saw the table dual-writing (picks the statement to send). */
  private lastSeenDual = true;

  private constructor(
    private readonly store: Store,
    private readonly policy: Policy,
    private readonly columns: ReadonlyMap<string, FoldColumn>,
    /** Whether the outbox row can be folded in too (see KEY_TEXT_OIDS). */
    readonly writesOutbox: boolean,
    private readonly imagePrefix: string,
    /** The column names as a PostgreSQL array literal, built once (bound, cast to text[]). */
    private readonly columnNames: string,
  ) {}

  /** Reads the source table's column types; undefined when the store is not PostgreSQL. */
  static async prepare(store: Store, policy: Policy): Promise<PgFold | undefined> {
    if (store.dialect !== 'pg') return undefined;
    const result = (await store.knex.raw(
      // format_type(…, NULL) of char(n) is "character" — char(1) — and of bit(n) "bit": casts
      // to them truncate ('f1'::character = 'f'). bpchar and varbit without a length do not.
      `SELECT a.attname AS name, a.atttypid::int AS oid,
              CASE a.atttypid WHEN 'bpchar'::regtype THEN 'bpchar' WHEN 'bit'::regtype THEN 'varbit' ELSE format_type(a.atttypid, NULL) END AS cast_type
         FROM pg_attribute a
        WHERE a.attrelid = to_regclass(?) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`,
      [quoteIdent(policy.sourceTable)],
    )) as { rows: Array<{ name: string; oid: number; cast_type: string }> };
    if (result.rows.length === 0) return undefined;
    const columns = new Map(result.rows.map((r) => [r.name, { name: r.name, oid: Number(r.oid), castType: r.cast_type }]));
    const writesOutbox = policy.primaryKey.every((k) => KEY_TEXT_OIDS.has(columns.get(k)?.oid ?? -1));
    const types = Object.fromEntries(result.rows.map((r) => [r.name, Number(r.oid)]));
    const imagePrefix = `${PG_TEXT_IMAGE_PREFIX}${JSON.stringify(types)},`;
    const names = `{${result.rows.map((r) => `"${r.name.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(',')}}`;
    return new PgFold(store, policy, columns, writesOutbox, imagePrefix, names);
  }

  /** What the classic path saw in the state row: picks the statement for the next write. */
  noteStage(dualWrite: boolean): void {
    this.lastSeenDual = dualWrite;
  }

  /** Whether this store is the one the fold was prepared for and the op names only known columns. */
  handles(store: Store, op: FoldableOp): boolean {
    if (store !== this.store) return false;
    if (op.op === 'delete') return true;
    const names = Object.keys(op.values);
    return (op.op === 'update' || names.length > 0) && names.every((n) => this.columns.has(n));
  }

  /**
   * Runs the change. Undefined when nothing was written and the caller takes the classic
   * path: the table is dual-writing and its outbox row cannot be folded, or a column the
   * statement names was dropped since start.
   */
  async run(op: FoldableOp, now: number, notBefore: number): Promise<FoldedChange | undefined> {
    // A table whose outbox row cannot be folded goes straight to the classic path while it
    // was last seen dual-writing (the classic path reports the stage back: noteStage).
    if (!this.writesOutbox && this.lastSeenDual) return undefined;
    // The statement with the outbox row only while the table was last seen dual-writing:
    // source-only writes send and run less. A stage change in between is caught by the
    // statement's own gate (nothing written) and the write runs again with the other one.
    const withOutbox = this.writesOutbox && this.lastSeenDual;
    const folded = await this.runOnce(op, now, notBefore, withOutbox);
    if (folded !== 'stage-changed') return folded;
    if (!this.writesOutbox) return undefined;
    const again = await this.runOnce(op, now, notBefore, true);
    return again === 'stage-changed' ? undefined : again;
  }

  private async runOnce(op: FoldableOp, now: number, notBefore: number, withOutbox: boolean): Promise<FoldedChange | undefined | 'stage-changed'> {
    const params: unknown[] = [this.policy.name];
    if (withOutbox) {
      if (op.op !== 'delete') params.push(this.imagePrefix, this.columnNames);
      params.push(notBefore, now);
    }
    let columns: string[] = [];
    if (op.op === 'insert') {
      const bound = bindRow(this.policy, op.values, 'pg');
      columns = Object.keys(bound);
      for (const c of columns) params.push(bound[c]);
    } else if (op.op === 'update') {
      const bound = bindRow(this.policy, updateChanges(this.policy, op.key, op.values, op.field), 'pg');
      columns = Object.keys(bound);
      for (const c of columns) params.push(bound[c]);
    }
    if (op.op !== 'insert') params.push(...op.key);

    let rows: Row[];
    try {
      rows = await this.query(this.statement(op.op, columns, withOutbox), params);
    } catch (error) {
      // Nothing ran; the classic path reads the table as it is now.
      if ((error as { code?: unknown }).code === UNDEFINED_COLUMN) return undefined;
      throw error;
    }
    const row = rows[0];
    if (!row) throw new TandemError('internal', 500, `no state row for table ${this.policy.name}`);
    if (row['$tandem_role'] !== 'primary') throw tableFrozen(this.policy.name);
    const dual = Number(row['$tandem_dual']) === 1;
    this.lastSeenDual = dual;
    // Gated off (dual-writing, and this statement has no outbox row): nothing was written.
    if (dual && !withOutbox) return 'stage-changed';
    if (Number(row['$tandem_changed']) === 0) {
      if (op.op === 'insert') throw new TandemError('internal', 500, 'insert returned no row');
      throw notFound(this.policy, op.keyField);
    }
    const epoch = Number(row['$tandem_epoch']);
    const outboxId = dual ? String(row['$tandem_outbox_id']) : null;
    for (const name of META) delete row[name];
    const key = storedKey(this.policy, row);
    const change: PrimaryChange =
      op.op === 'delete' ? { status: 204, key, row: undefined } : { status: op.op === 'insert' ? 201 : 200, key, row };
    return { change, epoch, outboxId };
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
    if (statement.name === undefined) return pgQuery<Row>(this.store, statement.sql, params);
    try {
      return await pgQuery<Row>(this.store, statement.sql, params, `${statement.name}_${generation}`);
    } catch (error) {
      if ((error as { code?: unknown }).code !== STALE_PLAN) throw error;
      if (this.generation === generation) this.generation += 1;
      return pgQuery<Row>(this.store, statement.sql, params, `${statement.name}_${this.generation}`);
    }
  }

  /** The statement of one op and column list, built once and kept. */
  private statement(op: FoldableOp['op'], columns: readonly string[], withOutbox: boolean): FoldStatement {
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

  private build(op: FoldableOp['op'], columns: readonly string[], withOutbox: boolean): string {
    // Placeholders in the order run() pushes its parameters: table, [outbox], values, key.
    let n = 1;
    const next = () => `$${++n}`;
    const image = withOutbox && op !== 'delete' ? { prefix: next(), names: next() } : undefined;
    const outbox = withOutbox ? { notBefore: next(), createdAt: next() } : undefined;
    const table = quoteIdent(this.policy.sourceTable);
    const gate = outbox ? `tandem_st.role = 'primary'` : `tandem_st.role = 'primary' AND tandem_st.dual_write = 0`;
    const keyMatch = () => this.policy.primaryKey.map((k) => `${table}.${quoteIdent(k)} = ${next()}`).join(' AND ');
    let change: string;
    if (op === 'insert') {
      const values = columns.map((c) => `${next()}::${this.columns.get(c)?.castType ?? 'text'}`);
      change = `INSERT INTO ${table} (${columns.map(quoteIdent).join(', ')}) SELECT ${values.join(', ')} FROM tandem_st WHERE ${gate} RETURNING *`;
    } else if (op === 'update') {
      const sets = columns.map((c) => `${quoteIdent(c)} = ${next()}`);
      change = `UPDATE ${table} SET ${sets.join(', ')} FROM tandem_st WHERE ${gate} AND ${keyMatch()} RETURNING ${table}.*`;
    } else {
      const returning = this.policy.primaryKey.map((k) => `${table}.${quoteIdent(k)}`).join(', ');
      change = `DELETE FROM ${table} USING tandem_st WHERE ${gate} AND ${keyMatch()} RETURNING ${returning}`;
    }
    const parts = [
      `WITH tandem_st AS (SELECT role, epoch, dual_write FROM ${STATE_TABLE} WHERE tbl = $1 FOR SHARE)`,
      `, tandem_ch AS (${change})`,
    ];
    if (outbox) {
      const rowKey = this.policy.primaryKey.map((k) => `tandem_ch.${quoteIdent(k)}::text`).join(` || ',' || `);
      const everyColumn = [...this.columns.values()].map((c) => `tandem_ch.${quoteIdent(c.name)}::text`).join(', ');
      // `{"$pgtypes":{…},` + json_object's `{"col" : "text", …}` without its opening brace.
      const imageSql = image ? `${image.prefix}::text || substr(json_object(${image.names}::text[], ARRAY[${everyColumn}]::text[])::text, 2)` : 'NULL';
      parts.push(
        `, tandem_ob AS (INSERT INTO ${OUTBOX_TABLE} (tbl, row_key, op, image, epoch, status, attempts, next_attempt_at, created_at)` +
          ` SELECT $1::text, ${rowKey}, '${op === 'delete' ? 'delete' : 'upsert'}', ${imageSql}, tandem_st.epoch, 'pending', 0,` +
          ` ${outbox.notBefore}::bigint, ${outbox.createdAt}::bigint FROM tandem_ch, tandem_st WHERE tandem_st.dual_write = 1 RETURNING id)`,
      );
    }
    parts.push(
      ` SELECT tandem_st.role AS "$tandem_role", tandem_st.epoch AS "$tandem_epoch", tandem_st.dual_write AS "$tandem_dual",` +
        ` (SELECT count(*) FROM tandem_ch)::int AS "$tandem_changed",` +
        ` ${outbox ? '(SELECT id FROM tandem_ob)' : 'NULL'} AS "$tandem_outbox_id", tandem_ch.*` +
        ` FROM tandem_st LEFT JOIN tandem_ch ON true`,
    );
    return parts.join('');
  }
}

/** Prepares the fold of every policy whose source is PostgreSQL (empty map otherwise). */
export async function prepareFolds(source: Store, policies: Iterable<Policy>): Promise<Map<string, PgFold>> {
  const folds = new Map<string, PgFold>();
  for (const policy of policies) {
    const fold = await PgFold.prepare(source, policy);
    if (fold) folds.set(policy.name, fold);
  }
  return folds;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
