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
async function raiseCounter(store: Store, table: string, key: string, floor: bigint): Promise<bigint | null> {
  const { knex } = store;
  if (store.dialect === 'pg') {
    const found = (await knex.raw('SELECT pg_get_serial_sequence(?, ?) AS seq', [quotePg(table), key])) as { rows: Array<{ seq: string | null }> };
    const seq = found.rows[0]?.seq;
    if (!seq) return null;
    // setval(seq, v, true): the next nextval() returns v + 1. GREATEST keeps it from going back.
    const result = (await knex.raw(
      `SELECT setval(?::regclass, GREATEST(?::bigint, COALESCE(pg_sequence_last_value(?::regclass), 0), 1), true) AS v`,
      [seq, floor.toString(), seq],
    )) as { rows: Array<{ v: string | number }> };
    return BigInt(String(result.rows[0]?.v ?? floor));
  }
  if (store.dialect === 'mysql') {
    const rows = (await knex('information_schema.columns')
      .select('extra')
      .whereRaw('table_schema = DATABASE()')
      .andWhere({ table_name: table, column_name: key })) as Array<{ extra?: string; EXTRA?: string }>;
    const extra = String(rows[0]?.extra ?? rows[0]?.EXTRA ?? '');
    if (!/auto_increment/i.test(extra)) return null;
    // InnoDB never sets AUTO_INCREMENT below MAX(key) + 1, so this cannot move it backwards.
    // The value is an integer computed here, never request text; DDL takes no bound parameters.
    const next = floor + 1n;
    await knex.raw(`ALTER TABLE ${quoteMysql(table)} AUTO_INCREMENT = ${next.toString()}`);
    return floor;
  }
  // SQLite: only AUTOINCREMENT tables keep a counter; plain INTEGER PRIMARY KEY takes MAX(rowid) + 1.
  const hasSequence = (await knex('sqlite_master').where({ type: 'table', name: 'sqlite_sequence' }).first()) !== undefined;
  if (!hasSequence) return null;
  const ddl = (await knex('sqlite_master').select('sql').where({ type: 'table', name: table }).first()) as { sql?: string } | undefined;
  if (!ddl?.sql || !/autoincrement/i.test(ddl.sql)) return null;
  return knex.transaction(async (trx) => {
    const current = (await trx('sqlite_sequence').select('seq').where({ name: table }).first()) as { seq: number | string } | undefined;
    if (current === undefined) {
      await trx('sqlite_sequence').insert({ name: table, seq: floor.toString() });
      return floor;
    }
    const value = BigInt(String(current.seq));
    if (value >= floor) return value;
    await trx('sqlite_sequence').where({ name: table }).update({ seq: floor.toString() });
    return floor;
  });
}

function quotePg(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteMysql(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}
