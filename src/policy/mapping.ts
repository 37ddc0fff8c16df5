import type { Policy } from './policy.js';

type Row = Record<string, unknown>;

/** A source-shaped row → the target's column names (excluded columns dropped). */
export function mapForward(policy: Policy, row: Row): Row {
  const out: Row = {};
  for (const [name, value] of Object.entries(row)) {
    const column = policy.columns.get(name);
    if (!column || column.targetName === null) continue;
    out[column.targetName] = value;
  }
  return out;
}

/** Per policy: target column name → source column name (built once; verify maps every row). */
const sourceNames = new WeakMap<Policy, Map<string, string>>();

/** A target-shaped row → source column names (columns the target lacks stay absent). */
export function mapBackward(policy: Policy, row: Row): Row {
  let byTarget = sourceNames.get(policy);
  if (!byTarget) {
    byTarget = new Map<string, string>();
    for (const column of policy.columns.values()) if (column.targetName !== null) byTarget.set(column.targetName, column.name);
    sourceNames.set(policy, byTarget);
  }
  const out: Row = {};
  for (const [name, value] of Object.entries(row)) {
    const source = byTarget.get(name);
    if (source !== undefined) out[source] = value;
  }
  return out;
}
