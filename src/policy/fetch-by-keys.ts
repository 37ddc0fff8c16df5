import type { Knex } from 'knex';
import { bindValue } from '../db/bind-value.js';
import { inSlices, whereKeyValues } from '../db/key-queries.js';
import type { Store } from '../db/store.js';
import { withDeadlineQuery } from '../db/with-deadline.js';
import type { KeyValues, Row } from '../shared/row.js';
import { mapBackward } from './mapping.js';
import type { Policy } from './policy.js';

export interface FetchByKeysOptions {
  /** Cut each query's connection after this long (reads of a store that may be black-holed). */
  deadlineMs?: number;
  /** Select only the key columns. */
  keysOnly?: boolean;
}

/**
 * The rows of these keys from either store, source-shaped (target rows are mapped back).
 * Keys are bound with the column's kind on that store; one-column keys use `IN`,
 * composite keys a VALUES list where the engine plans one well (PostgreSQL), else OR-ed
 * pairs in slices (SQLite caps expression depth).
 */
export async function fetchByKeys(store: Store, policy: Policy, keys: readonly KeyValues[], options: FetchByKeysOptions = {}): Promise<Row[]> {
  if (keys.length === 0) return [];
  const onTarget = store.name === 'target';
  const table = onTarget ? policy.targetTable : policy.sourceTable;
  const cols = onTarget ? policy.targetPrimaryKey : policy.primaryKey;
  const select = options.keysOnly ? [...cols] : '*';
  const bound = (key: KeyValues, i: number) => {
    const column = policy.columns.get(policy.primaryKey[i] as string);
    return bindValue(key[i], (onTarget ? column?.targetKind : column?.kind) ?? null, store.dialect) as Knex.Value;
  };
  const run = async (build: (knex: Knex) => Knex.QueryBuilder) =>
    options.deadlineMs ? await withDeadlineQuery<Row[]>(store, options.deadlineMs, build) : ((await build(store.knex)) as Row[]);
  const rows: Row[] = [];
  if (cols.length === 1) {
    for (const slice of inSlices(keys, 1000)) {
      rows.push(...(await run((knex) => knex(table).select(select).whereIn(cols[0] as string, slice.map((k) => bound(k, 0))))));
    }
  } else if (store.adapter.keyListAsValues) {
    for (const slice of inSlices(keys, 1000)) {
      rows.push(...(await run((knex) => whereKeyValues(knex(table).select(select), table, cols, slice.map((key) => cols.map((_, i) => bound(key, i)))))));
    }
  } else {
    for (const slice of inSlices(keys)) {
      rows.push(
        ...(await run((knex) =>
          knex(table)
            .select(select)
            .where((w) => {
              for (const key of slice) w.orWhere((one) => cols.forEach((col, i) => one.andWhere(col, bound(key, i))));
            }),
        )),
      );
    }
  }
  return onTarget ? rows.map((r) => mapBackward(policy, r)) : rows;
}
