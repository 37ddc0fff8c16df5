import type { TableSide } from '../db/dialects/dialect.js';
import type { Store, StoreName } from '../db/store.js';
import type { ColumnKind } from '../shared/column-kind.js';
import type { KeyValues, Row } from '../shared/row.js';
import { mapBackward, mapForward } from './mapping.js';
import type { Policy } from './policy.js';
import { parseKey } from './row-key.js';

/** One table as the primary store holds it: its side, and each column's kind for binding. */
export interface PrimaryTable extends TableSide {
  readonly kinds: ReadonlyMap<string, ColumnKind | null>;
}

/**
 * One policy's table in one direction: which table and key the primary has, which the
 * secondary has, and how a primary-shaped image becomes a secondary row. Before cutover the
 * source is primary and images map forward (the policy's renames); after it the target is
 * primary and they map backward (the inverse mapping, DESIGN §5). Nothing else in the write
 * path knows which store is which.
 */
export interface TableRoute {
  readonly policy: Policy;
  readonly primary: PrimaryTable;
  readonly secondary: TableSide;
  /** A primary-shaped image → the secondary's column names (columns it lacks dropped). */
  mapImage(image: Row): Row;
  /** Each secondary column's kind (for binding values on the secondary's engine). */
  secondaryKind(column: string): ColumnKind | null;
  /** An outbox row key → the secondary's key values, in its key order. */
  secondaryKey(rowKey: string): KeyValues;
}

const cache = new WeakMap<Policy, Map<StoreName, TableRoute>>();

/** The route of a policy's table with `primary` as the primary store (built once per policy and direction). */
export function tableRoute(policy: Policy, primary: StoreName): TableRoute {
  let routes = cache.get(policy);
  if (!routes) {
    routes = new Map();
    cache.set(policy, routes);
  }
  let route = routes.get(primary);
  if (!route) {
    route = primary === 'source' ? forward(policy) : backward(policy);
    routes.set(primary, route);
  }
  return route;
}

function forward(policy: Policy): TableRoute {
  const targetKinds = new Map<string, ColumnKind | null>();
  for (const c of policy.columns.values()) if (c.targetName !== null) targetKinds.set(c.targetName, c.targetKind);
  return {
    policy,
    primary: { name: policy.name, table: policy.sourceTable, key: policy.primaryKey, kinds: new Map([...policy.columns.values()].map((c) => [c.name, c.kind])) },
    secondary: { name: policy.name, table: policy.targetTable, key: policy.targetPrimaryKey },
    mapImage: (image) => mapForward(policy, image),
    secondaryKind: (column) => targetKinds.get(column) ?? null,
    secondaryKey: (rowKey) => parseKey(policy, rowKey, 'row_key'),
  };
}

function backward(policy: Policy): TableRoute {
  const sourceKinds = new Map<string, ColumnKind | null>();
  const targetKinds = new Map<string, ColumnKind | null>();
  for (const c of policy.columns.values()) {
    sourceKinds.set(c.name, c.kind);
    if (c.targetName !== null) targetKinds.set(c.targetName, c.targetKind);
  }
  return {
    policy,
    primary: { name: policy.name, table: policy.targetTable, key: policy.targetPrimaryKey, kinds: targetKinds },
    secondary: { name: policy.name, table: policy.sourceTable, key: policy.primaryKey },
    mapImage: (image) => mapBackward(policy, image),
    secondaryKind: (column) => sourceKinds.get(column) ?? null,
    secondaryKey: (rowKey) => parseKey(policy, rowKey, 'row_key'),
  };
}

/** A primary-shaped image as the secondary's row (mapped, bound; key columns as the image has them). */
export function secondaryRow(secondary: Store, route: TableRoute, image: Row): Row {
  const mapped = route.mapImage(image);
  const row: Row = {};
  for (const [column, value] of Object.entries(mapped)) row[column] = secondary.adapter.bind(value, route.secondaryKind(column));
  return row;
}

/** An outbox row key as the secondary's key columns, bound for its engine. */
export function secondaryKey(secondary: Store, route: TableRoute, rowKey: string): Row {
  const values = route.secondaryKey(rowKey);
  const where: Row = {};
  route.secondary.key.forEach((col, i) => {
    where[col] = secondary.adapter.bind(values[i], route.secondaryKind(col));
  });
  return where;
}
