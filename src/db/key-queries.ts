import type { Knex } from 'knex';

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

/** Keyset condition `(k1, k2, …) > (v1, v2, …)` written out so every dialect plans it the same. */
export function whereAfterKey<T extends Knex.QueryBuilder>(builder: T, keyCols: readonly string[], after: readonly unknown[]): T {
  return builder.where((outer) => {
    keyCols.forEach((_, i) => {
      outer.orWhere((inner) => {
        for (let j = 0; j < i; j++) inner.andWhere(keyCols[j] as string, after[j] as Knex.Value);
        inner.andWhere(keyCols[i] as string, '>', after[i] as Knex.Value);
      });
    });
  }) as T;
}

/** The next `limit` rows of a table in key order after `after` (the first page without it). */
export async function keysetPage(
  db: Knex,
  table: string,
  keyCols: readonly string[],
  after: readonly unknown[] | undefined,
  limit: number,
  columns?: readonly string[],
): Promise<Array<Record<string, unknown>>> {
  let q = db(table).select(columns ? [...columns] : '*');
  if (after) q = whereAfterKey(q, keyCols, after);
  for (const c of keyCols) q = q.orderBy(c, 'asc');
  return (await q.limit(limit)) as Array<Record<string, unknown>>;
}
