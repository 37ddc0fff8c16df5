import { deparseSync } from 'pgsql-deparser';
import type { SqlTable } from './classify.js';

type Node = Record<string, unknown>;

/**
 * A single-table SELECT of a policy table rewritten for a PostgreSQL target: the table and
 * column renames of the policy applied to the parse tree, output columns keeping their
 * source names (`SELECT name AS full_name`), `*` expanded to the source's columns. Undefined
 * (with the reason) when the target cannot answer it: an excluded column is named, or the
 * statement is outside the subset.
 */
export function renameForTarget(select: Node, table: SqlTable): { sql: string } | { reason: string } {
  const tree = structuredClone(select);
  const from = (tree['fromClause'] as Node[] | undefined) ?? [];
  const rangeVar = from[0]?.['RangeVar'] as Node | undefined;
  if (!rangeVar) return { reason: 'not a single table' };
  const qualifier = ((rangeVar['alias'] as Node | undefined)?.['aliasname'] as string | undefined) ?? table.sourceTable;
  rangeVar['relname'] = table.targetTable;
  delete rangeVar['schemaname'];
  // Keep the source name as the alias, so qualified references (people.id) still resolve.
  if (!rangeVar['alias']) rangeVar['alias'] = { aliasname: qualifier };
  let problem: string | undefined;
  const mapColumn = (name: string): string | undefined => {
    if (!table.targetColumns.has(name)) return name;
    const mapped = table.targetColumns.get(name);
    if (mapped === null || mapped === undefined) {
      problem = `column ${name} is not copied to the target`;
      return undefined;
    }
    return mapped;
  };
  const targetList = (tree['targetList'] as Node[] | undefined) ?? [];
  const expanded: Node[] = [];
  for (const item of targetList) {
    const res = item['ResTarget'] as Node | undefined;
    const ref = (res?.['val'] as Node | undefined)?.['ColumnRef'] as Node | undefined;
    const fields = (ref?.['fields'] as Node[] | undefined) ?? [];
    if (ref && fields.some((f) => f['A_Star'])) {
      for (const c of table.columns) {
        // `*` must give every source column: one the target does not have sends the read to the primary.
        if (table.targetColumns.get(c.name) === null) return { reason: `* includes column ${c.name}, which is not copied to the target` };
        expanded.push({ ResTarget: { name: c.name, val: { ColumnRef: { fields: [{ String: { sval: qualifier } }, { String: { sval: c.name } }] } } } });
      }
      continue;
    }
    if (res && ref && res['name'] === undefined) {
      const last = fields[fields.length - 1]?.['String'] as Node | undefined;
      if (typeof last?.['sval'] === 'string') res['name'] = last['sval'];
    }
    expanded.push(item);
  }
  tree['targetList'] = expanded;
  walk(tree, (node) => {
    const ref = node['ColumnRef'] as Node | undefined;
    if (!ref) return;
    const fields = (ref['fields'] as Node[] | undefined) ?? [];
    const last = fields[fields.length - 1]?.['String'] as Node | undefined;
    if (typeof last?.['sval'] !== 'string') return;
    const mapped = mapColumn(last['sval']);
    if (mapped !== undefined) last['sval'] = mapped;
  });
  if (problem) return { reason: problem };
  return { sql: deparseSync({ SelectStmt: tree } as never) };
}

/** Visits every object node of a parse tree, parents first. */
export function walk(node: unknown, visit: (node: Node) => void): void {
  if (Array.isArray(node)) {
    for (const item of node) walk(item, visit);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  visit(node as Node);
  for (const value of Object.values(node as Node)) walk(value, visit);
}
