import type * as LibPgQuery from '@libpg-query/parser';
import { deparseSync } from 'pgsql-deparser';

/**
 * Statement classification from the real PostgreSQL parse tree (libpg-query), and the
 * rewrite of a write to a policy table into one statement that also writes its outbox rows
 * (DESIGN §3, §13). Never looks at SQL text with patterns: only at the tree.
 */

type Node = Record<string, unknown>;

/** What the rewriter needs to know of one policy table on the primary. */
export interface SqlTable {
  /** Policy name (outbox `tbl`). */
  name: string;
  sourceTable: string;
  primaryKey: readonly string[];
  /** Every column of the source table in attnum order, with its type OID. */
  columns: ReadonlyArray<{ name: string; oid: number }>;
  /** Target table and column names (null: excluded), for reads served by the target. */
  targetTable: string;
  targetColumns: ReadonlyMap<string, string | null>;
}

export const STATEMENT_KINDS = ['select', 'insert', 'update', 'delete', 'merge', 'ddl', 'truncate', 'copy', 'tx', 'set', 'show', 'other', 'empty'] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

export const REFUSAL_REASONS = ['ddl', 'truncate', 'copy_from', 'uncapturable_write', 'merge', 'unsupported_key', 'parse_error', 'target_primary', 'source_stale'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** One statement, classified. `table` is the policy name when one is involved. */
export type StatementPlan =
  /** Touches no policy table: sent to the primary unchanged. */
  | { kind: 'forward'; stmtKind: StatementKind; sql: string; setting?: 'set' | 'reset-all'; tx?: TxControl }
  /** Reads policy tables: routed by the read percentage when outside a transaction. */
  | { kind: 'read'; stmtKind: StatementKind; table: string; tables: string[]; sql: string; select: Node; routable: string | undefined }
  | WritePlan
  /** Refused while the table is dual-writing (forwarded unchanged while it is not). */
  | { kind: 'guarded'; stmtKind: StatementKind; table: string; sql: string; reason: RefusalReason; message: string }
  /** Refused always. */
  | { kind: 'refuse'; stmtKind: StatementKind; table: string; reason: RefusalReason; message: string };

/** INSERT/UPDATE/DELETE on a policy table, rewritten to capture its outbox rows; `tables`: every policy table it names. */
export interface WritePlan {
  kind: 'write';
  stmtKind: 'insert' | 'update' | 'delete';
  table: string;
  tables: string[];
  /** What the primary runs: the client's statement with its outbox rows captured. */
  sql: string;
  returning: boolean;
  tag: 'INSERT' | 'UPDATE' | 'DELETE';
  /** The client's statement as parsed (a PostgreSQL target after cutover runs it renamed). */
  change: { type: ChangeType; body: Node };
}

/** BEGIN/START TRANSACTION, COMMIT/END (not AND CHAIN), ROLLBACK/ABORT (not TO SAVEPOINT). */
export type TxControl = 'begin' | 'commit' | 'rollback';

export type ChangeType = 'InsertStmt' | 'UpdateStmt' | 'DeleteStmt';

export interface ClassifiedQuery {
  statements: StatementPlan[];
  fingerprint: string;
}

export class SqlParseError extends Error {
  constructor(
    message: string,
    /** 1-based character position, as PostgreSQL reports it. */
    readonly position: number | undefined,
  ) {
    super(message);
  }
}

let parser: typeof LibPgQuery | undefined;
let loaded: Promise<void> | undefined;
let warmed: Promise<void> | undefined;
/**
 * Loads the parser's WebAssembly module once per process. Imported here, not at the top:
 * importing the package instantiates the module (128 MB of wasm memory reserved, 30 MB of
 * RSS), and a server without a SQL port loads it only on its first `POST /v1/sql`.
 *
 * `warmUp` then parses a few thousand statements: V8 first runs WebAssembly in its baseline
 * tier and optimises the hot functions later, and on a busy machine the first seconds of
 * traffic (every distinct statement is parsed) ran several times slower than the rest
 * (pgbench -M simple: 25 tps in the first 5 s after start, 138 tps in the next 5 s, same
 * load). It takes about a second and 125 MB more RSS (the optimised code and the compiler's
 * memory; bench/RESULTS.md, "Memory"), which the SQL port pays at start.
 */
export function loadParser(options: { warmUp: boolean }): Promise<void> {
  loaded ??= import('@libpg-query/parser').then(async (lib) => {
    await lib.loadModule();
    parser = lib;
  });
  return options.warmUp ? (warmed ??= loaded.then(warmUpParser)) : loaded;
}

function warmUpParser(): void {
  const shapes = [
    (i: number) => `UPDATE t${i % 7} SET a = a + ${i} WHERE id = ${i} RETURNING *`,
    (i: number) => `SELECT a, b, upper(c) AS d FROM t WHERE id IN (${i}, ${i + 1}) AND x IS NOT NULL ORDER BY a LIMIT ${i}`,
    (i: number) => `INSERT INTO t (a, b, c) VALUES (${i}, 'v${i}', now()) ON CONFLICT (a) DO UPDATE SET b = excluded.b`,
    (i: number) => `WITH x AS (SELECT ${i} AS n) DELETE FROM t USING x WHERE t.id = x.n`,
  ];
  for (let i = 0; i < 3_000; i++) {
    const sql = (shapes[i % shapes.length] as (i: number) => string)(i);
    loadedParser().parseSync(sql);
    if (i % 4 === 0) loadedParser().fingerprintSync(sql);
  }
}

function loadedParser(): typeof LibPgQuery {
  if (!parser) throw new Error('the SQL parser is not loaded: await loadParser() first');
  return parser;
}

const KEY_TEXT_OIDS = new Set([20, 21, 23, 2950]);
/** text, varchar, bpchar, name, date, numeric: their text form is the driver's string, URL-encoded by formatKey. */
const KEY_STRING_OIDS = new Set([25, 1043, 1042, 19, 1082, 1700]);

const CACHE_LIMIT = 2_000;

export class SqlClassifier {
  private readonly bySource = new Map<string, SqlTable>();
  private readonly cache = new Map<string, ClassifiedQuery>();
  private readonly onTarget = new Map<string, SqlTable>();

  constructor(tables: Iterable<SqlTable>) {
    for (const t of tables) this.bySource.set(t.sourceTable, t);
  }

  /** Each policy table as a PostgreSQL target knows it (for its writes after cutover). */
  setTargetTables(tables: Iterable<SqlTable>): void {
    for (const t of tables) this.onTarget.set(t.name, t);
  }

  table(name: string): SqlTable | undefined {
    for (const t of this.bySource.values()) if (t.name === name) return t;
    return undefined;
  }

  /** The policy table as the PostgreSQL target knows it (its names, columns and key there). */
  targetTable(name: string): SqlTable | undefined {
    return this.onTarget.get(name);
  }

  /** Parses and classifies a query string (one or more statements). Throws SqlParseError. */
  classify(sql: string): ClassifiedQuery {
    const hit = this.cache.get(sql);
    if (hit) return hit;
    let tree: { stmts?: Array<{ stmt?: Node; stmt_location?: number; stmt_len?: number }> };
    try {
      tree = loadedParser().parseSync(sql) as typeof tree;
    } catch (error) {
      const e = error as { message?: string; sqlDetails?: { cursorPosition?: number } };
      const cursor = e.sqlDetails?.cursorPosition;
      // libpg-query's cursor is a 0-based character offset; PostgreSQL reports it 1-based.
      throw new SqlParseError(e.message ?? 'syntax error', cursor === undefined ? undefined : cursor + 1);
    }
    const bytes = Buffer.from(sql, 'utf8');
    const statements: StatementPlan[] = [];
    for (const raw of tree.stmts ?? []) {
      const start = raw.stmt_location ?? 0;
      const text = bytes.toString('utf8', start, raw.stmt_len ? start + raw.stmt_len : bytes.length).trim();
      statements.push(raw.stmt ? this.plan(raw.stmt, text) : { kind: 'forward', stmtKind: 'empty', sql: text });
    }
    let fingerprint = '';
    try {
      fingerprint = statements.length > 0 ? loadedParser().fingerprintSync(sql) : '';
    } catch {
      fingerprint = '';
    }
    const result = { statements, fingerprint };
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(sql, result);
    return result;
  }

  private policyOf(rangeVar: unknown): SqlTable | undefined {
    const rv = rangeVar as { relname?: string; schemaname?: string } | undefined;
    if (!rv?.relname) return undefined;
    if (rv.schemaname !== undefined && rv.schemaname !== 'public') return undefined;
    return this.bySource.get(rv.relname);
  }

  private plan(stmt: Node, sql: string): StatementPlan {
    const [type] = Object.keys(stmt);
    const body = (stmt[type as string] ?? {}) as Node;
    const stmtKind = kindOf(type ?? '');
    const touched = new Set<string>();
    const writes: Array<{ node: Node; type: string; table: SqlTable }> = [];
    walk(stmt, (key, node) => {
      // A RangeVar is wrapped ({RangeVar: …}) in lists and bare under `relation`.
      if (typeof node['relname'] === 'string') {
        const t = this.policyOf(node);
        if (t) touched.add(t.name);
      }
      if (key === 'InsertStmt' || key === 'UpdateStmt' || key === 'DeleteStmt' || key === 'MergeStmt') {
        const t = this.policyOf(node['relation']);
        if (t) writes.push({ node, type: key, table: t });
      }
    });
    if (type === 'DropStmt') {
      // DROP names its objects as name lists, not RangeVars: [schema,] name.
      for (const object of (body['objects'] as Node[] | undefined) ?? []) {
        const items = ((object['List'] as Node | undefined)?.['items'] as Node[] | undefined) ?? [];
        const names = items.map((i) => (i['String'] as Node | undefined)?.['sval']).filter((n): n is string => typeof n === 'string');
        const relname = names[names.length - 1];
        const t = this.policyOf({ relname, ...(names.length > 1 ? { schemaname: names[names.length - 2] } : {}) });
        if (t) touched.add(t.name);
      }
    }
    const first = [...touched][0] ?? '';
    if (touched.size === 0) {
      // A session-level SET/RESET: the session replays it on each pooled connection it borrows.
      if (type === 'VariableSetStmt' && !body['is_local'] && body['name'] !== 'TRANSACTION') {
        return { kind: 'forward', stmtKind, sql, setting: body['kind'] === 'VAR_RESET_ALL' ? 'reset-all' : 'set' };
      }
      const tx = type === 'TransactionStmt' ? txControl(body) : undefined;
      return tx ? { kind: 'forward', stmtKind, sql, tx } : { kind: 'forward', stmtKind, sql };
    }

    const top = writes.find((w) => w.node === body);
    if (writes.length > 0) {
      const w = writes[0] as (typeof writes)[number];
      if (type === 'MergeStmt') {
        return { kind: 'guarded', stmtKind: 'merge', table: w.table.name, sql, reason: 'merge', message: `MERGE into ${w.table.name} cannot be captured for replication; use INSERT ... ON CONFLICT` };
      }
      if (!top || writes.length > 1) {
        return {
          kind: 'guarded',
          stmtKind,
          table: w.table.name,
          sql,
          reason: 'uncapturable_write',
          message: `a write to ${w.table.name} inside another statement (a WITH clause, EXPLAIN ANALYZE, PREPARE, or several writes in one statement) cannot be captured for replication; send it as its own INSERT/UPDATE/DELETE`,
        };
      }
      const change = { type: type as ChangeType, body };
      const captured = captureWrite(change, top.table, [...touched], { sql });
      if ('reason' in captured) return { kind: 'guarded', stmtKind, table: top.table.name, sql, reason: 'unsupported_key', message: captured.reason };
      return captured;
    }
    switch (type) {
      case 'SelectStmt': {
        const routable = routableReason(body, touched.size);
        return { kind: 'read', stmtKind: 'select', table: first, tables: [...touched], sql, select: body, routable };
      }
      case 'TruncateStmt':
        return { kind: 'guarded', stmtKind: 'truncate', table: first, sql, reason: 'truncate', message: `TRUNCATE of ${first} would escape replication while it is dual-writing; delete the rows with DELETE` };
      case 'CopyStmt':
        if (body['is_from']) {
          return { kind: 'guarded', stmtKind: 'copy', table: first, sql, reason: 'copy_from', message: `COPY FROM into ${first} would escape replication while it is dual-writing; use INSERT` };
        }
        return { kind: 'read', stmtKind: 'select', table: first, tables: [...touched], sql, select: body, routable: 'COPY TO' };
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'LockStmt':
      case 'VacuumStmt':
      case 'ExplainStmt':
      case 'DeclareCursorStmt':
      case 'CreateTableAsStmt':
      case 'ViewStmt':
      case 'PrepareStmt':
        // Reads policy tables (or defines something that will): the primary runs it.
        return { kind: 'read', stmtKind, table: first, tables: [...touched], sql, select: body, routable: type ?? 'statement' };
      default:
        return { kind: 'guarded', stmtKind: 'ddl', table: first, sql, reason: 'ddl', message: `${type ?? 'this statement'} on ${first} is refused while it is dual-writing: schema changes would break replication` };
    }
  }
}

/**
 * INSERT/UPDATE/DELETE on a policy table becomes:
 *
 *   WITH tandem_st AS (state row FOR SHARE),
 *        tandem_ch AS (<the client's statement> RETURNING <alias>.*),
 *        tandem_ob AS (INSERT INTO tandem_outbox ... SELECT ... FROM tandem_ch, tandem_st WHERE dual_write = 1),
 *        tandem_ok AS (role check)
 *   SELECT <the client's RETURNING list> FROM tandem_ch AS <alias> WHERE <tandem_ok evaluated>
 *
 * The outbox rows are inserted after the change (they read its output: the row locks are
 * held, so ids per key follow commit order), in the same statement and transaction. The
 * client's RETURNING list is evaluated by PostgreSQL over the same row image, so names and
 * types are PostgreSQL's own; without RETURNING the statement returns the row count, which
 * the session turns back into the command tag.
 *
 * `table` is the table as the primary running it knows it. `sql` is the client's text, kept
 * as it is when there is no RETURNING list (else the statement is rebuilt from `change`).
 * `outerColumns` (a renamed table: [primary's column, client's name]) makes the RETURNING
 * list see the client's names. Undefined with the reason when a key column's type has no
 * key text built in SQL.
 */
export function captureWrite(
  change: { type: ChangeType; body: Node },
  table: SqlTable,
  tables: string[],
  options: { sql?: string; outerColumns?: ReadonlyArray<readonly [string, string]> },
): WritePlan | { reason: string } {
  const { type, body } = change;
  const stmtKind = type === 'InsertStmt' ? 'insert' : type === 'UpdateStmt' ? 'update' : 'delete';
  const oids = new Map(table.columns.map((c) => [c.name, c.oid]));
  const keyParts: string[] = [];
  for (const k of table.primaryKey) {
    const oid = oids.get(k) ?? -1;
    const ref = textOf(`tandem_ch.${quoteIdent(k)}`, oid);
    if (KEY_TEXT_OIDS.has(oid)) keyParts.push(ref);
    else if (KEY_STRING_OIDS.has(oid)) keyParts.push(urlEncodeSql(ref));
    else return { reason: `writes to ${table.name} through SQL are not captured: its key column ${k} has a type whose key text Tandem does not build in SQL; use the HTTP API` };
  }
  const relation = body['relation'] as Node;
  const alias = ((relation['alias'] as Node | undefined)?.['aliasname'] as string | undefined) ?? (relation['relname'] as string);
  const returningList = (body['returningList'] as unknown[] | undefined) ?? [];
  // Without a RETURNING list (the common case) the client's own text is kept and the
  // RETURNING clause appended after a line break (a trailing -- comment ends there); with
  // one, the statement is rebuilt from its tree with the list replaced.
  const changeSql =
    returningList.length === 0 && options.sql !== undefined
      ? `${options.sql}\nRETURNING ${quoteIdent(alias)}.*`
      : deparseSync({ [type]: { ...body, returningList: [resTargetStar(alias)] } } as never);
  const seen = options.outerColumns ? 'tandem_cs' : 'tandem_ch';
  let outer: string;
  if (returningList.length > 0) {
    outer = deparseSync({
      SelectStmt: {
        targetList: returningList,
        fromClause: [{ RangeVar: { relname: seen, inh: true, relpersistence: 'p', alias: { aliasname: alias } } }],
        limitOption: 'LIMIT_OPTION_DEFAULT',
        op: 'SETOP_NONE',
      },
    } as never);
  } else {
    outer = 'SELECT count(*) FROM tandem_ch';
  }
  const renamed = options.outerColumns
    ? `, tandem_cs AS (SELECT ${options.outerColumns.map(([own, client]) => `${quoteIdent(own)} AS ${quoteIdent(client)}`).join(', ')} FROM tandem_ch)`
    : '';
  const types = Object.fromEntries(table.columns.map((c) => [c.name, c.oid]));
  const prefix = `{"$pgtypes":${JSON.stringify(types)},`;
  const names = `{${table.columns.map((c) => `"${c.name.replace(/["\\]/g, (ch) => `\\${ch}`)}"`).join(',')}}`;
  const everyColumn = table.columns.map((c) => textOf(`tandem_ch.${quoteIdent(c.name)}`, c.oid)).join(', ');
  const image =
    stmtKind === 'delete' ? 'NULL' : `${literal(prefix)} || substr(json_object(${literal(names)}::text[], ARRAY[${everyColumn}]::text[])::text, 2)`;
  const now = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;
  const name = literal(table.name);
  const rewritten =
    `WITH tandem_st AS (SELECT role, epoch, dual_write FROM tandem_state WHERE tbl = ${name} FOR SHARE)` +
    `, tandem_ch AS (${changeSql})` +
    `, tandem_ob AS (INSERT INTO tandem_outbox (tbl, row_key, op, image, epoch, status, attempts, next_attempt_at, created_at)` +
    ` SELECT ${name}, ${keyParts.join(` || ',' || `)}, '${stmtKind === 'delete' ? 'delete' : 'upsert'}', ${image}, tandem_st.epoch, 'pending', 0, ${now}, ${now}` +
    ` FROM tandem_ch, tandem_st WHERE tandem_st.dual_write = 1 RETURNING id)` +
    renamed +
    // Not a primary here (a cutover froze or moved the table): fail the whole statement, so
    // the change is undone. The cast of a non-constant text makes the error at run time.
    `, tandem_ok AS (SELECT CASE WHEN (SELECT role FROM tandem_st) = 'primary' THEN (SELECT count(*) FROM tandem_ob)` +
    ` ELSE (coalesce((SELECT role FROM tandem_st), 'no state') || ': tandem table ' || ${name} || ' is not writable here (switching its primary)')::bigint END AS ok)` +
    ` ${outer} WHERE (SELECT ok FROM tandem_ok) IS NOT NULL`;
  return {
    kind: 'write',
    stmtKind,
    table: table.name,
    tables,
    sql: rewritten,
    returning: returningList.length > 0,
    tag: stmtKind === 'insert' ? 'INSERT' : stmtKind === 'update' ? 'UPDATE' : 'DELETE',
    change,
  };
}

/** Why a SELECT cannot be served by another engine (undefined: the simple single-table subset). */
function routableReason(select: Node, tables: number): string | undefined {
  if (tables !== 1) return 'several tables';
  if (select['withClause'] || select['op'] !== 'SETOP_NONE') return 'WITH or set operation';
  if (select['lockingClause']) return 'locking clause';
  if (select['groupClause'] || select['havingClause'] || select['distinctClause'] || select['windowClause']) return 'grouping or DISTINCT';
  const from = (select['fromClause'] as Node[] | undefined) ?? [];
  if (from.length !== 1 || !from[0]?.['RangeVar']) return 'not a single table';
  return undefined;
}

function txControl(body: Node): TxControl | undefined {
  switch (body['kind']) {
    case 'TRANS_STMT_BEGIN':
    case 'TRANS_STMT_START':
      return 'begin';
    case 'TRANS_STMT_COMMIT':
      return body['chain'] ? undefined : 'commit';
    case 'TRANS_STMT_ROLLBACK':
      return body['chain'] ? undefined : 'rollback';
    default:
      return undefined;
  }
}

function kindOf(type: string): StatementKind {
  switch (type) {
    case 'SelectStmt':
      return 'select';
    case 'InsertStmt':
      return 'insert';
    case 'UpdateStmt':
      return 'update';
    case 'DeleteStmt':
      return 'delete';
    case 'MergeStmt':
      return 'merge';
    case 'TransactionStmt':
      return 'tx';
    case 'VariableSetStmt':
      return 'set';
    case 'VariableShowStmt':
      return 'show';
    case 'TruncateStmt':
      return 'truncate';
    case 'CopyStmt':
      return 'copy';
    default:
      return /^(Create|Alter|Drop|Rename|Index|Comment|Grant|Rule|Trigger)/.test(type) || type.endsWith('Stmt') && /Create|Alter|Drop/.test(type) ? 'ddl' : 'other';
  }
}

function walk(node: unknown, visit: (key: string, node: Node) => void): void {
  if (Array.isArray(node)) {
    for (const item of node) walk(item, visit);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node as Node)) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) visit(key, value as Node);
    walk(value, visit);
  }
}

function resTargetStar(alias: string): Node {
  return { ResTarget: { val: { ColumnRef: { fields: [{ String: { sval: alias } }, { A_Star: {} }] } } } };
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * A column's text form as its type's output function writes it (what node-postgres reads).
 * A cast of char(n) to text strips its trailing blanks; concat() keeps them.
 * @see https://www.postgresql.org/docs/current/datatype-character.html
 */
function textOf(ref: string, oid: number): string {
  return oid === 1042 ? `CASE WHEN ${ref} IS NULL THEN NULL ELSE concat(${ref}) END` : `${ref}::text`;
}

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** encodeURIComponent in SQL: every character outside its unreserved set as %XX of its UTF-8 bytes. */
function urlEncodeSql(expr: string): string {
  return (
    `(SELECT coalesce(string_agg(CASE WHEN tandem_c ~ '^[A-Za-z0-9_.!~*''()-]$' THEN tandem_c` +
    ` ELSE upper(regexp_replace(encode(convert_to(tandem_c, 'UTF8'), 'hex'), '(..)', '%\\1', 'g')) END, '' ORDER BY tandem_o), '')` +
    ` FROM regexp_split_to_table(${expr}, '') WITH ORDINALITY AS tandem_s(tandem_c, tandem_o))`
  );
}
