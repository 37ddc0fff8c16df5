import type { Store } from './store.js';

/**
 * Tandem's own key columns: each must compare bytes exactly. A row key `abc` and a row key
 * `ABC` are two rows on a case-sensitive primary; under a case-insensitive collation they
 * would share one ledger row, and the older of the two arriving after its twin would be
 * skipped as stale — a row silently missing on the target.
 */
export const BINARY_KEY_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  tandem_outbox: ['tbl', 'row_key'],
  tandem_applied: ['tbl', 'row_key'],
  tandem_state: ['tbl'],
  tandem_backfill: ['tbl', 'last_key'],
};

interface ColumnRow {
  table: string;
  column: string;
  columnType: string;
  charset: string | null;
  collation: string | null;
  nullable: string;
}

/**
 * MySQL/MariaDB: gives every Tandem-owned key column its character set's binary collation
 * (`utf8mb4_bin`), migrating installs created with the database default (`*_ci`). Going from
 * a case-insensitive to a binary collation never creates duplicates, so the ALTER cannot
 * fail on existing data. Returns the `table.column` names it changed. PostgreSQL (its
 * deterministic collations compare equal only byte-equal strings) and SQLite (BINARY by
 * default) need nothing.
 *
 * @see https://mariadb.com/kb/en/setting-character-sets-and-collations/
 * @see https://www.postgresql.org/docs/current/collation.html#COLLATION-NONDETERMINISTIC
 */
export async function ensureBinaryKeyColumns(store: Store): Promise<string[]> {
  if (store.dialect !== 'mysql') return [];
  const tables = Object.keys(BINARY_KEY_COLUMNS);
  const result = (await store.knex.raw(
    `SELECT TABLE_NAME AS \`table\`, COLUMN_NAME AS \`column\`, COLUMN_TYPE AS columnType,
            CHARACTER_SET_NAME AS charset, COLLATION_NAME AS collation, IS_NULLABLE AS nullable
       FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (${tables.map(() => '?').join(', ')})`,
    tables,
  )) as unknown as [ColumnRow[]];
  const changed: string[] = [];
  for (const table of tables) {
    const wanted = BINARY_KEY_COLUMNS[table] ?? [];
    const columns = result[0].filter((c) => c.table === table && wanted.includes(c.column) && c.charset && c.collation && !c.collation.endsWith('_bin'));
    if (columns.length === 0) continue;
    // Identifiers and types come from the catalog of our own tables, never from a request.
    const clauses = columns.map(
      (c) => `MODIFY \`${c.column}\` ${c.columnType} CHARACTER SET ${c.charset} COLLATE ${c.charset}_bin ${c.nullable === 'YES' ? 'NULL' : 'NOT NULL'}`,
    );
    await store.knex.raw(`ALTER TABLE \`${table}\` ${clauses.join(', ')}`);
    changed.push(...columns.map((c) => `${table}.${c.column}`));
  }
  return changed;
}
