import type { Store } from '../db/store.js';

export interface IdentityMove {
  /** Highest key of the old primary's table (null: empty table, or no integer key). */
  oldMax: string | null;
  /** What the new primary's counter was set to (null: the table has no counter to move). */
  movedTo: string | null;
}

/**
 * Moves the new primary's identity counter (PostgreSQL sequence, MySQL/MariaDB
 * AUTO_INCREMENT, SQLite `sqlite_sequence`) past the highest key of the old primary's
 * table, so rows inserted on the new primary never collide with rows created on the old
 * one — the classic cutover outage. Only one-column integer keys have counters. Never moves
 * a counter backwards, so running it twice (a resumed switch) is harmless.
 */
export async function moveIdentity(
  oldPrimary: Store,
  oldTable: string,
  oldKey: string,
  newPrimary: Store,
  newTable: string,
  newKey: string,
): Promise<IdentityMove> {
  const maxOf = async (store: Store, table: string, key: string): Promise<bigint | null> => {
    const row = (await store.knex(table).max({ m: key }).first()) as { m: unknown } | undefined;
    const value = row?.m;
    if (value === null || value === undefined) return null;
    const text = String(value);
    return /^-?\d+$/.test(text) ? BigInt(text) : null;
  };
  const oldMax = await maxOf(oldPrimary, oldTable, oldKey);
  // The new primary is an exact copy after the drain, but its own maximum guards against a
  // copy that is not (the counter must clear every key it holds).
  const ownMax = await maxOf(newPrimary, newTable, newKey);
  const floor = [oldMax, ownMax].reduce<bigint>((a, b) => (b !== null && b > a ? b : a), 0n);
  const movedTo = await raiseCounter(newPrimary, newTable, newKey, floor);
  return { oldMax: oldMax === null ? null : oldMax.toString(), movedTo: movedTo === null ? null : movedTo.toString() };
}

/** Sets the table's counter so the next generated key is above `floor`; returns the counter's new last value. */
function raiseCounter(store: Store, table: string, key: string, floor: bigint): Promise<bigint | null> {
  return store.adapter.moveIdentityAbove(store.knex, table, key, floor);
}
