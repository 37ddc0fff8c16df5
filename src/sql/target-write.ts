import { captureWrite, type SqlTable, type WritePlan } from './classify.js';
import { walk } from './rename.js';

type Node = Record<string, unknown>;

/** Target forms of write plans (the classifier caches plans by text, so a statement is renamed once). */
const targetForms = new WeakMap<WritePlan, WritePlan | { reason: string }>();

/**
 * A write to a policy table whose primary moved to a PostgreSQL target at cutover, as the
 * target runs it: the policy's table and column renames applied to the parse tree, then
 * captured into the target's outbox exactly as a write on the source is (the reverse
 * replication carries it back to the source). The client sees its own names: a RETURNING
 * list is evaluated over the row with the target's columns renamed back.
 *
 * Only statements whose every name can be mapped are taken: one table (no FROM/USING, no
 * WITH, no other relation in a subquery), every column it names copied to the target, an
 * INSERT without a column list only as VALUES (its columns are the source's, in order).
 * Otherwise the reason, which the refusal quotes.
 */
export function writeForTarget(plan: WritePlan, source: SqlTable, target: SqlTable | undefined): WritePlan | { reason: string } {
  let form = targetForms.get(plan);
  if (!form) {
    form = target ? renameWrite(plan, source, target) : { reason: `the target has no table ${source.targetTable}` };
    targetForms.set(plan, form);
  }
  return form;
}

function renameWrite(plan: WritePlan, source: SqlTable, target: SqlTable): WritePlan | { reason: string } {
  const { type } = plan.change;
  const { returningList, ...rest } = plan.change.body;
  const tree = structuredClone(rest);
  const relation = tree['relation'] as Node;
  if (tree['withClause']) return { reason: 'it has a WITH clause' };
  if (((tree['fromClause'] ?? tree['usingClause']) as unknown[] | undefined)?.length) return { reason: `it reads other tables (${type === 'UpdateStmt' ? 'UPDATE … FROM' : 'DELETE … USING'})` };
  let problem: string | undefined;
  walk(tree, (node) => {
    if (node !== relation && typeof node['relname'] === 'string') problem ??= `it reads another table (${node['relname']})`;
  });
  const conflict = tree['onConflictClause'] as Node | undefined;
  if ((conflict?.['infer'] as Node | undefined)?.['conname']) problem ??= 'ON CONFLICT ON CONSTRAINT names a constraint of the source';
  if (problem) return { reason: problem };

  const mapped = (name: string): string => {
    if (!source.targetColumns.has(name)) return name;
    const to = source.targetColumns.get(name);
    if (to === null || to === undefined) {
      problem ??= `column ${name} is not copied to the target`;
      return name;
    }
    return to;
  };
  const renameTargets = (list: unknown) => {
    for (const item of (list as Node[] | undefined) ?? []) {
      const res = item['ResTarget'] as Node | undefined;
      if (typeof res?.['name'] === 'string') res['name'] = mapped(res['name']);
    }
  };
  // The target's table under the source's name, so qualified references (people.id) resolve.
  const sourceName = relation['relname'] as string;
  relation['relname'] = target.sourceTable;
  delete relation['schemaname'];
  relation['alias'] ??= { aliasname: sourceName };

  if (type === 'InsertStmt' && !tree['cols'] && tree['selectStmt']) {
    // Without a column list the values follow the source's column order, not the target's.
    const values = ((tree['selectStmt'] as Node)['SelectStmt'] as Node | undefined)?.['valuesLists'] as Node[] | undefined;
    if (!values) return { reason: 'an INSERT … SELECT without a column list (name the columns)' };
    const width = Math.max(...values.map((v) => ((v['List'] as Node | undefined)?.['items'] as unknown[] | undefined)?.length ?? 0));
    tree['cols'] = source.columns.slice(0, width).map((c) => ({ ResTarget: { name: c.name } }));
  }
  renameTargets(tree['cols']);
  if (type === 'UpdateStmt') renameTargets(tree['targetList']);
  if (conflict) {
    renameTargets(conflict['targetList']);
    for (const elem of ((conflict['infer'] as Node | undefined)?.['indexElems'] as Node[] | undefined) ?? []) {
      const index = elem['IndexElem'] as Node | undefined;
      if (typeof index?.['name'] === 'string') index['name'] = mapped(index['name']);
    }
  }
  walk(tree, (node) => {
    const fields = ((node['ColumnRef'] as Node | undefined)?.['fields'] as Node[] | undefined) ?? [];
    const last = fields[fields.length - 1]?.['String'] as Node | undefined;
    if (typeof last?.['sval'] === 'string') last['sval'] = mapped(last['sval']);
  });
  if (problem) return { reason: problem };

  // The row the RETURNING list sees: the target's columns under the client's names.
  const back = new Map([...source.targetColumns].filter((e): e is [string, string] => e[1] !== null).map(([from, to]) => [to, from]));
  const outerColumns = target.columns.map((c) => [c.name, back.get(c.name) ?? c.name] as const);
  const body = returningList === undefined ? tree : { ...tree, returningList };
  return captureWrite({ type, body }, target, plan.tables, { outerColumns });
}
