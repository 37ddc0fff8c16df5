import type { BoundColumn, Policy } from '../policy/policy.js';

const reversed = new WeakMap<Policy, Policy>();

/**
 * The policy seen from the target: its "source" side is the target table with the target's
 * column names, its "target" side the source table. While the target is primary, the write
 * path runs its statements through this view, and the reverse apply writes the inverse
 * mapping into the source with the same code that writes the forward mapping into the target.
 *
 * Excluded source columns have no column here: the reverse apply never names them, so an
 * update leaves the source's value as it was and an insert gets the column's default.
 * Built once per policy.
 */
export function reversePolicy(policy: Policy): Policy {
  const cached = reversed.get(policy);
  if (cached) return cached;
  const columns = new Map<string, BoundColumn>();
  for (const column of policy.columns.values()) {
    if (column.targetName === null || column.targetKind === null) continue;
    columns.set(column.targetName, {
      name: column.targetName,
      kind: column.targetKind,
      type: column.type,
      nullable: column.nullable,
      maxLength: column.maxLength,
      range: column.range,
      targetName: column.name,
      targetKind: column.kind,
    });
  }
  const view: Policy = Object.freeze({
    name: policy.name,
    sourceTable: policy.targetTable,
    targetTable: policy.sourceTable,
    primaryKey: policy.targetPrimaryKey,
    targetPrimaryKey: policy.primaryKey,
    columns,
    redact: new Set([...policy.redact].map((c) => policy.columns.get(c)?.targetName ?? c)),
    file: policy.file,
    sourcePath: policy.sourcePath,
  });
  reversed.set(policy, view);
  return view;
}
