import type { TableInfo } from '../db/introspect.js';
import { makeAdapter } from '../db/dialects/index.js';
import { columnKind } from './column-kind.js';
import type { LoadedPolicyFile } from './load-policies.js';
import type { BoundColumn, Policy } from './policy.js';

/**
 * Checks one policy file against the real source and target tables and resolves it.
 * Returns the problems instead of throwing so start-up can report every policy at once.
 */
export function bindPolicy(
  loaded: LoadedPolicyFile,
  source: TableInfo | undefined,
  target: TableInfo | undefined,
): { policy?: Policy; problems: string[] } {
  const { file } = loaded;
  const where = `policy ${file.table} (${loaded.path})`;
  const problems: string[] = [];
  const targetTable = file.target.table ?? file.table;
  if (!source) problems.push(`${where}: source table ${file.table} does not exist`);
  if (!target) problems.push(`${where}: target table ${targetTable} does not exist`);
  if (!source || !target) return { problems };

  const sourceCols = new Map(source.columns.map((c) => [c.name, c]));
  const targetCols = new Map(target.columns.map((c) => [c.name, c]));

  if (source.primaryKey.length === 0) {
    problems.push(`${where}: source table ${file.table} has no primary key; Tandem needs one to version rows`);
  }
  const primaryKey = file.primaryKey ?? source.primaryKey;
  for (const col of primaryKey) {
    if (!sourceCols.has(col)) problems.push(`${where}: primaryKey column ${col} does not exist in ${file.table}`);
  }
  if (file.primaryKey && source.primaryKey.length > 0 && file.primaryKey.join(',') !== source.primaryKey.join(',')) {
    problems.push(
      `${where}: primaryKey [${file.primaryKey.join(', ')}] differs from the table's primary key [${source.primaryKey.join(', ')}]`,
    );
  }
  for (const col of Object.keys(file.target.columns)) {
    if (!sourceCols.has(col)) problems.push(`${where}: target.columns names source column ${col}, which does not exist in ${file.table}`);
  }
  for (const col of file.target.exclude) {
    if (!sourceCols.has(col)) problems.push(`${where}: target.exclude names column ${col}, which does not exist in ${file.table}`);
    if (primaryKey.includes(col)) problems.push(`${where}: target.exclude cannot exclude primary-key column ${col}`);
  }
  for (const col of [...file.redact, ...file.compare.ignore, ...file.compare.caseInsensitive]) {
    if (!sourceCols.has(col)) problems.push(`${where}: column ${col} named in redact/compare does not exist in ${file.table}`);
  }

  const excluded = new Set(file.target.exclude);
  const columns = new Map<string, BoundColumn>();
  const usedTargets = new Map<string, string>();
  for (const col of source.columns) {
    const targetName = excluded.has(col.name) ? null : (file.target.columns[col.name] ?? col.name);
    const targetCol = targetName === null ? undefined : targetCols.get(targetName);
    if (targetName !== null && !targetCol) {
      problems.push(
        `${where}: source column ${col.name} maps to ${targetTable}.${targetName}, which does not exist; ` +
          'rename it in target.columns or list it in target.exclude',
      );
    }
    if (targetName !== null) {
      const other = usedTargets.get(targetName);
      if (other) problems.push(`${where}: source columns ${other} and ${col.name} both map to ${targetTable}.${targetName}`);
      usedTargets.set(targetName, col.name);
    }
    columns.set(col.name, {
      name: col.name,
      kind: columnKind(col.type),
      type: col.type,
      nullable: col.nullable,
      maxLength: col.maxLength,
      range: columnKind(col.type) === 'integer' ? makeAdapter(source.dialect).integerRange(col.type) : undefined,
      targetName,
      targetKind: targetCol ? columnKind(targetCol.type) : null,
      targetType: targetCol ? targetCol.type : null,
    });
  }
  const targetPrimaryKey = primaryKey.map((c) => file.target.columns[c] ?? c);
  if (target.primaryKey.length === 0) {
    problems.push(`${where}: target table ${targetTable} has no primary key`);
  } else if (target.primaryKey.join(',') !== targetPrimaryKey.join(',')) {
    problems.push(
      `${where}: the mapped key [${targetPrimaryKey.join(', ')}] is not the primary key of ${targetTable} [${target.primaryKey.join(', ')}]`,
    );
  }
  if (problems.length > 0) return { problems };
  return {
    problems,
    policy: Object.freeze({
      name: file.table,
      sourceTable: file.table,
      targetTable,
      primaryKey: Object.freeze([...primaryKey]),
      targetPrimaryKey: Object.freeze(targetPrimaryKey),
      columns,
      redact: new Set(file.redact),
      file,
      sourcePath: loaded.path,
    }),
  };
}
