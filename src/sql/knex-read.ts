import type { Knex } from 'knex';
import type { SqlTable } from './classify.js';

type Node = Record<string, unknown>;

/** Source column types whose text form Tandem rebuilds exactly from another engine's value. */
const INT_OIDS = new Set([20, 21, 23]);
const TEXT_OIDS = new Set([25, 1043]);
const BOOL_OID = 16;
const DATE_OID = 1082;
/** float4, float8, numeric: compared with a number constant as numbers on every engine. */
const NUMERIC_OIDS = new Set([700, 701, 1700]);
const OPERATORS = new Set(['=', '<>', '!=', '<', '<=', '>', '>=']);

export interface TranslatedRead {
  /** Output columns: name and the source type OID. */
  fields: Array<{ name: string; oid: number }>;
  /** The type PostgreSQL gives each parameter `$n` (index n - 1) the statement uses; 0 for one it does not use. */
  paramTypes: number[];
  run(knex: Knex): Promise<Array<Array<string | null>>>;
}

/**
 * The parameters of an extended-protocol statement: the type OIDs its Parse declared (0 or
 * missing: unknown, inferred from the column as PostgreSQL does) and a Bind's values in text
 * form (null: SQL NULL). Without `values` the read is only described: each parameter is NULL.
 */
export interface ReadParams {
  types: readonly number[];
  values?: ReadonlyArray<string | null>;
}

/** What a value compared with a column, or in LIMIT/OFFSET, becomes (or why it stays on the primary). */
type Operand = { value: string | number | boolean | null } | { reason: string };

/**
 * The safe subset of a single-table SELECT that a target of another engine answers exactly
 * as the source would (DESIGN §13), rebuilt with knex for the target's dialect: a list of
 * plain columns (or `*`) of integer, text, boolean and date types; WHERE of comparisons with
 * constants, IN lists, IS [NOT] NULL, AND / OR / NOT (text compared byte for byte, as
 * PostgreSQL's default collation does for equality); ORDER BY integer key columns; LIMIT and
 * OFFSET constants. Parameters (`$n`) may stand where constants do: their values are read as
 * the column's type (or LIMIT's bigint) would read them, and go to knex as bindings, never
 * into the SQL text. Anything else answers the reason it stays on the primary.
 */
export function translateRead(
  select: Node,
  table: SqlTable,
  target: { dialect: string; translatesReads: boolean },
  params: ReadParams = { types: [], values: [] },
): TranslatedRead | { reason: string } {
  if (!target.translatesReads) return { reason: `reads are not translated for ${target.dialect} targets` };
  const oids = new Map(table.columns.map((c) => [c.name, c.oid]));
  const targetName = (column: string): string | { reason: string } => {
    if (!oids.has(column)) return { reason: `unknown column ${column}` };
    const mapped = table.targetColumns.has(column) ? table.targetColumns.get(column) : column;
    if (mapped === null || mapped === undefined) return { reason: `column ${column} is not copied to the target` };
    return mapped;
  };
  const columnOf = (node: unknown): string | undefined => {
    const fields = ((node as Node | undefined)?.['ColumnRef'] as Node | undefined)?.['fields'] as Node[] | undefined;
    const last = fields?.[fields.length - 1]?.['String'] as Node | undefined;
    return typeof last?.['sval'] === 'string' ? last['sval'] : undefined;
  };
  const paramTypes: number[] = [];
  /** A constant or parameter as a value of the type `oid` (what PostgreSQL would compare), or undefined when the node is neither. */
  const operand = (node: Node, oid: number): Operand | undefined => {
    const ref = node['ParamRef'] as Node | undefined;
    if (ref) {
      const n = Number(ref['number']);
      const declared = params.types[n - 1] ?? 0;
      // Unknown: the type of its first use, as PostgreSQL infers it (text for a varchar column).
      const type = declared || paramTypes[n - 1] || (oid === 1043 ? 25 : oid);
      if (family(type) !== family(oid)) return { reason: 'a parameter of another type than its column' };
      paramTypes[n - 1] = type;
      if (!params.values) return { value: null };
      const text = params.values[n - 1];
      if (text === undefined) return { reason: 'a parameter without a value' };
      return text === null ? { value: null } : typed(text, type);
    }
    const c = constant(node);
    if (c === undefined) return undefined;
    // A literal `= NULL` is `IS NULL` under transform_null_equals: left to the primary.
    if (c === null) return { reason: 'a comparison with NULL' };
    if (typeof c === 'string') return typed(c, oid);
    const fits = typeof c === 'number' ? INT_OIDS.has(oid) || NUMERIC_OIDS.has(oid) : oid === BOOL_OID;
    return fits ? { value: c } : { reason: 'a constant of another type than its column' };
  };
  for (const key of ['intoClause', 'valuesLists', 'havingClause', 'groupClause', 'distinctClause', 'windowClause', 'lockingClause', 'withClause']) {
    if (select[key] !== undefined) return { reason: `${key} is outside the translated subset` };
  }

  const outputs: Array<{ name: string; source: string; target: string; oid: number }> = [];
  for (const item of (select['targetList'] as Node[] | undefined) ?? []) {
    const res = item['ResTarget'] as Node;
    const val = res['val'] as Node;
    const fields = ((val['ColumnRef'] as Node | undefined)?.['fields'] as Node[] | undefined) ?? [];
    if (fields.some((f) => f['A_Star'])) {
      for (const c of table.columns) {
        const t = targetName(c.name);
        if (typeof t !== 'string') return t;
        outputs.push({ name: c.name, source: c.name, target: t, oid: c.oid });
      }
      continue;
    }
    const column = columnOf(val);
    if (!column) return { reason: 'an expression in the select list' };
    const t = targetName(column);
    if (typeof t !== 'string') return t;
    outputs.push({ name: (res['name'] as string | undefined) ?? column, source: column, target: t, oid: oids.get(column) ?? 0 });
  }
  for (const o of outputs) {
    if (!INT_OIDS.has(o.oid) && !TEXT_OIDS.has(o.oid) && o.oid !== BOOL_OID && o.oid !== DATE_OID) return { reason: `column ${o.source} has a type whose text form is not rebuilt` };
  }

  type Apply = (q: Knex.QueryBuilder, knex: Knex) => void;
  const condition = (node: Node): Apply | { reason: string } => {
    if (node['BoolExpr']) {
      const b = node['BoolExpr'] as Node;
      const args = ((b['args'] as Node[] | undefined) ?? []).map(condition);
      const bad = args.find((a) => typeof a !== 'function');
      if (bad) return bad;
      const fns = args as Apply[];
      if (b['boolop'] === 'AND_EXPR') return (q, k) => q.where((w) => fns.forEach((f) => w.andWhere((x) => f(x, k))));
      if (b['boolop'] === 'OR_EXPR') return (q, k) => q.where((w) => fns.forEach((f) => w.orWhere((x) => f(x, k))));
      return (q, k) => q.whereNot((w) => (fns[0] as Apply)(w, k));
    }
    if (node['NullTest']) {
      const n = node['NullTest'] as Node;
      const column = columnOf(n['arg']);
      const t = column ? targetName(column) : { reason: 'IS NULL on an expression' };
      if (typeof t !== 'string') return t;
      return n['nulltesttype'] === 'IS_NULL' ? (q) => q.whereNull(t) : (q) => q.whereNotNull(t);
    }
    if (node['A_Expr']) {
      const e = node['A_Expr'] as Node;
      const op = ((e['name'] as Node[] | undefined)?.[0]?.['String'] as Node | undefined)?.['sval'];
      let column = columnOf(e['lexpr']);
      let other = e['rexpr'] as Node;
      let operator = typeof op === 'string' ? op : '';
      if (!column && e['kind'] === 'AEXPR_OP') {
        column = columnOf(e['rexpr']);
        other = e['lexpr'] as Node;
        operator = ({ '<': '>', '>': '<', '<=': '>=', '>=': '<=' } as Record<string, string>)[operator] ?? operator;
      }
      if (!column) return { reason: 'a condition on an expression' };
      const t = targetName(column);
      if (typeof t !== 'string') return t;
      const oid = oids.get(column) ?? 0;
      // NULL as a raw NULL: knex turns `where(column, '=', null)` into IS NULL, PostgreSQL's `= NULL` matches nothing.
      const bind = (k: Knex, c: string | number | boolean | null) => (c === null ? k.raw('NULL') : TEXT_OIDS.has(oid) ? k.raw('BINARY ?', [c]) : c);
      if (e['kind'] === 'AEXPR_OP' && OPERATORS.has(operator)) {
        const c = operand(other, oid);
        if (c === undefined) return { reason: 'a comparison with something other than a constant' };
        if ('reason' in c) return c;
        return (q, k) => q.where(t, operator === '!=' ? '<>' : operator, bind(k, c.value));
      }
      if (e['kind'] === 'AEXPR_IN' && operator === '=' && Array.isArray((other['List'] as Node | undefined)?.['items'])) {
        const items = ((other['List'] as Node)['items'] as Node[]).map((i) => operand(i, oid));
        if (items.some((i) => i === undefined)) return { reason: 'IN with something other than constants' };
        const bad = items.find((i): i is { reason: string } => i !== undefined && 'reason' in i);
        if (bad) return bad;
        const values = (items as Array<{ value: string | number | boolean | null }>).map((i) => i.value);
        return (q, k) => q.whereIn(t, values.map((v) => bind(k, v)));
      }
      return { reason: `operator ${operator || String(e['kind'])} is outside the translated subset` };
    }
    return { reason: 'a condition outside the translated subset' };
  };

  const where = select['whereClause'] ? condition(select['whereClause'] as Node) : undefined;
  if (where && typeof where !== 'function') return where;
  const order: Array<{ column: string; dir: 'asc' | 'desc' }> = [];
  for (const item of (select['sortClause'] as Node[] | undefined) ?? []) {
    const s = item['SortBy'] as Node;
    const column = columnOf(s['node']);
    // NULL ordering and text collations differ between engines: integer key columns only.
    if (!column || !table.primaryKey.includes(column) || !INT_OIDS.has(oids.get(column) ?? 0) || s['sortby_nulls'] !== 'SORTBY_NULLS_DEFAULT') {
      return { reason: 'ORDER BY other than integer key columns' };
    }
    const t = targetName(column);
    if (typeof t !== 'string') return t;
    order.push({ column: t, dir: s['sortby_dir'] === 'SORTBY_DESC' ? 'desc' : 'asc' });
  }
  // LIMIT and OFFSET are bigint; NULL means no limit and no offset, a negative one is PostgreSQL's error.
  const bound = (key: string): number | undefined | { reason: string } => {
    const node = select[key] as Node | undefined;
    if (node === undefined || constant(node) === null) return undefined;
    const o = operand(node, 20);
    if (o && 'reason' in o) return o;
    if (o?.value === null) return undefined;
    return typeof o?.value === 'number' && o.value >= 0 ? o.value : { reason: 'LIMIT or OFFSET other than a number' };
  };
  const limit = bound('limitCount');
  if (typeof limit === 'object') return limit;
  const offset = bound('limitOffset');
  if (typeof offset === 'object') return offset;

  return {
    fields: outputs.map((o) => ({ name: o.name, oid: o.oid })),
    paramTypes: Array.from(paramTypes, (t) => t ?? 0),
    async run(knex) {
      let q = knex(table.targetTable).select(outputs.map((o, i) => ({ [`c${i}`]: o.target })));
      if (where) where(q, knex);
      for (const o of order) q = q.orderBy(o.column, o.dir);
      if (limit !== undefined) q = q.limit(limit);
      if (offset !== undefined) q = q.offset(offset);
      const rows = (await q) as Array<Record<string, unknown>>;
      return rows.map((r) => outputs.map((o, i) => pgText(r[`c${i}`], o.oid)));
    },
  };
}

/** A constant of the parse tree as a JS value; undefined when the node is not one. */
function constant(node: Node): string | number | boolean | null | undefined {
  const c = node['A_Const'] as Node | undefined;
  if (!c) return undefined;
  if (c['isnull']) return null;
  if (c['ival'] !== undefined) return Number((c['ival'] as Node)['ival'] ?? 0);
  if (c['sval'] !== undefined) return String((c['sval'] as Node)['sval'] ?? '');
  if (c['boolval'] !== undefined) return Boolean((c['boolval'] as Node)['boolval']);
  return undefined;
}

/** The types PostgreSQL compares with each other without a cast (integers; text and varchar). */
function family(oid: number): string {
  if (INT_OIDS.has(oid)) return 'int';
  if (TEXT_OIDS.has(oid)) return 'text';
  return String(oid);
}

const INT_RANGES: Record<number, number> = { 21: 2 ** 15, 23: 2 ** 31, 20: 2 ** 53 };
const BOOL_TEXT: Record<string, boolean> = { t: true, true: true, y: true, yes: true, on: true, 1: true, f: false, false: false, n: false, no: false, off: false, 0: false };

/**
 * A value in text form read as the type `oid` reads it (a parameter, or a quoted constant
 * whose type PostgreSQL takes from the column). A text PostgreSQL would refuse, or read in a
 * way not rebuilt here, stays on the primary, which answers it exactly (or with its error).
 * @see https://www.postgresql.org/docs/current/datatype-boolean.html
 */
function typed(text: string, oid: number): Operand {
  const bad = { reason: 'a value that is not of its column type' };
  if (INT_OIDS.has(oid)) {
    const n = /^\s*[+-]?\d+\s*$/.test(text) ? Number(text) : NaN;
    const range = INT_RANGES[oid] ?? 0;
    return Number.isSafeInteger(n) && n >= -range && n < range ? { value: n } : bad;
  }
  if (oid === BOOL_OID) {
    const b = BOOL_TEXT[text.trim().toLowerCase()];
    return b === undefined ? bad : { value: b };
  }
  if (TEXT_OIDS.has(oid)) return text.includes('\0') ? bad : { value: text };
  if (oid === DATE_OID) {
    const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
    const valid = day && new Date(Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3]))).toISOString().startsWith(text);
    return valid ? { value: text } : bad;
  }
  // Timestamps (zones, precision), numerics and the rest are read by rules not rebuilt here.
  return { reason: 'a value compared with a column of a type not translated' };
}

/** A target value in PostgreSQL's text form for the source column's type. */
function pgText(value: unknown, oid: number): string | null {
  if (value === null || value === undefined) return null;
  if (oid === BOOL_OID) return Number(value) !== 0 && value !== false ? 't' : 'f';
  if (oid === DATE_OID && value instanceof Date) return value.toISOString().slice(0, 10);
  return String(value);
}
