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
