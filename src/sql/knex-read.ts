import type { Knex } from 'knex';
import type { SqlTable } from './classify.js';

type Node = Record<string, unknown>;

/** Source column types whose text form Tandem rebuilds exactly from another engine's value. */
const INT_OIDS = new Set([20, 21, 23]);
const TEXT_OIDS = new Set([25, 1043]);
const BOOL_OID = 16;
const DATE_OID = 1082;
const OPERATORS = new Set(['=', '<>', '!=', '<', '<=', '>', '>=']);

export interface TranslatedRead {
  /** Output columns: name and the source type OID. */
  fields: Array<{ name: string; oid: number }>;
  run(knex: Knex): Promise<Array<Array<string | null>>>;
}

/**
 * The safe subset of a single-table SELECT that a target of another engine answers exactly
 * as the source would (DESIGN §13), rebuilt with knex for the target's dialect: a list of
 * plain columns (or `*`) of integer, text, boolean and date types; WHERE of comparisons with
 * constants, IN lists, IS [NOT] NULL, AND / OR / NOT (text compared byte for byte, as
 * PostgreSQL's default collation does for equality); ORDER BY integer key columns; LIMIT and
 * OFFSET constants. Anything else answers the reason it stays on the primary.
 */
export function translateRead(select: Node, table: SqlTable, target: { dialect: string; translatesReads: boolean }): TranslatedRead | { reason: string } {
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
      const bind = (k: Knex, c: unknown) => (TEXT_OIDS.has(oid) ? k.raw('BINARY ?', [c]) : c);
      if (e['kind'] === 'AEXPR_OP' && OPERATORS.has(operator)) {
        const c = constant(other);
        if (c === undefined) return { reason: 'a comparison with something other than a constant' };
        if (c === null) return { reason: 'a comparison with NULL' };
        return (q, k) => q.where(t, operator === '!=' ? '<>' : operator, bind(k, c) as Knex.Value);
      }
      if (e['kind'] === 'AEXPR_IN' && operator === '=' && Array.isArray((other['List'] as Node | undefined)?.['items'])) {
        const items = ((other['List'] as Node)['items'] as Node[]).map(constant);
        if (items.some((i) => i === undefined || i === null)) return { reason: 'IN with something other than constants' };
        return (q, k) => q.whereIn(t, items.map((i) => bind(k, i)) as Knex.Value[]);
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
  const limit = select['limitCount'] === undefined ? undefined : constant(select['limitCount'] as Node);
  const offset = select['limitOffset'] === undefined ? undefined : constant(select['limitOffset'] as Node);
  if ((limit !== undefined && typeof limit !== 'number') || (offset !== undefined && typeof offset !== 'number')) return { reason: 'LIMIT or OFFSET other than a number' };

  return {
    fields: outputs.map((o) => ({ name: o.name, oid: o.oid })),
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

/** A target value in PostgreSQL's text form for the source column's type. */
function pgText(value: unknown, oid: number): string | null {
  if (value === null || value === undefined) return null;
  if (oid === BOOL_OID) return Number(value) !== 0 && value !== false ? 't' : 'f';
  if (oid === DATE_OID && value instanceof Date) return value.toISOString().slice(0, 10);
  return String(value);
}
