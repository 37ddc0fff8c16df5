import type { Knex } from 'knex';
import type { Store } from './store.js';

/**
 * Keys per `(a = ? AND b = ?) OR …` list. SQLite refuses expression trees deeper than 1000,
 * and long OR chains plan poorly everywhere: composite-key lookups go in slices of this size.
 */
export const KEYS_PER_QUERY = 200;

export function inSlices<T>(items: readonly T[], size = KEYS_PER_QUERY): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * `(k1, k2, …) IN (VALUES (…), …)`: composite keys where the engine plans the list as index
 * lookups (DialectAdapter.keyListAsValues). Its first row, `((NULL::table).k1, …)`, gives
 * the list the key columns' types, so bound values compare as they do in `k1 = ?` (alone
 * they would be text); a row of NULLs matches no key.
 */
export function whereKeyValues<T extends Knex.QueryBuilder>(builder: T, table: string, keyCols: readonly string[], keys: ReadonlyArray<readonly Knex.Value[]>): T {
  const list = keyCols.map(() => '??').join(', ');
  const typed = keyCols.map(() => '(NULL::??).??').join(', ');
  const row = `(${keyCols.map(() => '?').join(', ')})`;
  const bindings: Knex.RawBinding[] = [...keyCols, ...keyCols.flatMap((c) => [table, c])];
  for (const key of keys) bindings.push(...key);
  return builder.whereRaw(`(${list}) IN (VALUES (${typed}), ${keys.map(() => row).join(', ')})`, bindings) as T;
}

/**
 * Keyset condition `(k1, k2, …) > (v1, v2, …)`: as a row-value comparison where the engine
 * plans it as an index range (`rowValues`, DialectAdapter.keysetRowValues), else written out
 * as `k1 > v1 OR (k1 = v1 AND k2 > v2) …`. Key columns are never NULL, so both forms select
 * the same rows; the wrong one for the engine reads every earlier key of the index again on
 * each page (verify and backfill of a composite key slowed down with the table's size).
 */
export function whereAfterKey<T extends Knex.QueryBuilder>(builder: T, keyCols: readonly string[], after: readonly unknown[], rowValues = false): T {
  if (rowValues && keyCols.length > 1) {
    const list = keyCols.map(() => '??').join(', ');
    const values = keyCols.map(() => '?').join(', ');
    return builder.whereRaw(`(${list}) > (${values})`, [...keyCols, ...(after as Knex.Value[])]) as T;
  }
  return builder.where((outer) => {
    keyCols.forEach((_, i) => {
      outer.orWhere((inner) => {
        for (let j = 0; j < i; j++) inner.andWhere(keyCols[j] as string, after[j] as Knex.Value);
        inner.andWhere(keyCols[i] as string, '>', after[i] as Knex.Value);
      });
    });
  }) as T;
}

/** The next `limit` rows of a store's table in key order after `after` (the first page without it). */
export async function keysetPage(
  store: Pick<Store, 'knex' | 'adapter'>,
  table: string,
  keyCols: readonly string[],
  after: readonly unknown[] | undefined,
  limit: number,
  columns?: readonly string[],
): Promise<Array<Record<string, unknown>>> {
  let q = store.knex(table).select(columns ? [...columns] : '*');
  if (after) q = whereAfterKey(q, keyCols, after, store.adapter.keysetRowValues);
  for (const c of keyCols) q = q.orderBy(c, 'asc');
  return (await q.limit(limit)) as Array<Record<string, unknown>>;
}
