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

/**
 * Gives every Tandem-owned key column a byte-exact collation where the engine's default is
 * not one (MySQL/MariaDB: its character set's `_bin` collation, migrating installs created
 * with the database default `*_ci`). Returns the `table.column` names it changed. PostgreSQL
 * (its deterministic collations compare equal only byte-equal strings) and SQLite (BINARY by
 * default) need nothing.
 *
 * @see https://mariadb.com/kb/en/setting-character-sets-and-collations/
 * @see https://www.postgresql.org/docs/current/collation.html#COLLATION-NONDETERMINISTIC
 */
export function ensureBinaryKeyColumns(store: Store): Promise<string[]> {
  return store.adapter.fixKeyCollations(store.knex, BINARY_KEY_COLUMNS);
}
