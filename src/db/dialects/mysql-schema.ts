import type { Knex } from 'knex';

/** MySQL/MariaDB's schema work: foreign-key edges, key collations, AUTO_INCREMENT. */

function quoteMysql(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

/** Child → parent edges between tables of the current database. */
export async function mysqlForeignKeyEdges(knex: Knex, tables: readonly string[]): Promise<Array<{ child: string; parent: string }>> {
  const [rows] = (await knex.raw(
    `SELECT DISTINCT TABLE_NAME AS child, REFERENCED_TABLE_NAME AS parent FROM information_schema.KEY_COLUMN_USAGE
        WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL AND REFERENCED_TABLE_SCHEMA = DATABASE()`,
  )) as unknown as [Array<{ child: string; parent: string }>];
  return rows.filter((e) => tables.includes(e.child));
}

interface ColumnRow {
  table: string;
  column: string;
  columnType: string;
  charset: string | null;
  collation: string | null;
  nullable: string;
}

/**
 * Gives every named key column its character set's binary collation (`utf8mb4_bin`),
 * migrating installs created with the database default (`*_ci`). Going from a
 * case-insensitive to a binary collation never creates duplicates, so the ALTER cannot fail
 * on existing data. Returns the `table.column` names it changed.
 *
 * @see https://mariadb.com/kb/en/setting-character-sets-and-collations/
 */
export async function mysqlFixKeyCollations(knex: Knex, keyColumns: Readonly<Record<string, readonly string[]>>): Promise<string[]> {
  const tables = Object.keys(keyColumns);
  const result = (await knex.raw(
    `SELECT TABLE_NAME AS \`table\`, COLUMN_NAME AS \`column\`, COLUMN_TYPE AS columnType,
            CHARACTER_SET_NAME AS charset, COLLATION_NAME AS collation, IS_NULLABLE AS nullable
       FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (${tables.map(() => '?').join(', ')})`,
    tables,
  )) as unknown as [ColumnRow[]];
  const changed: string[] = [];
  for (const table of tables) {
    const wanted = keyColumns[table] ?? [];
    const columns = result[0].filter((c) => c.table === table && wanted.includes(c.column) && c.charset && c.collation && !c.collation.endsWith('_bin'));
    if (columns.length === 0) continue;
    // Identifiers and types come from the catalog of our own tables, never from a request.
    const clauses = columns.map(
      (c) => `MODIFY \`${c.column}\` ${c.columnType} CHARACTER SET ${c.charset} COLLATE ${c.charset}_bin ${c.nullable === 'YES' ? 'NULL' : 'NOT NULL'}`,
    );
    await knex.raw(`ALTER TABLE \`${table}\` ${clauses.join(', ')}`);
    changed.push(...columns.map((c) => `${table}.${c.column}`));
  }
  return changed;
}

/** The DDL that sets a table's AUTO_INCREMENT so the next generated key is `floor` + 1. */
export function mysqlAutoIncrementSql(table: string, floor: bigint): string {
  // The value is an integer computed here, never request text; DDL takes no bound parameters.
  const next = floor + 1n;
  return `ALTER TABLE ${quoteMysql(table)} AUTO_INCREMENT = ${next.toString()}`;
}

/** Moves the AUTO_INCREMENT of `table` above `floor`; null when `key` is not an AUTO_INCREMENT column. */
export async function mysqlMoveIdentityAbove(knex: Knex, table: string, key: string, floor: bigint): Promise<bigint | null> {
  const rows = (await knex('information_schema.columns')
    .select('extra')
    .whereRaw('table_schema = DATABASE()')
    .andWhere({ table_name: table, column_name: key })) as Array<{ extra?: string; EXTRA?: string }>;
  const extra = String(rows[0]?.extra ?? rows[0]?.EXTRA ?? '');
  if (!/auto_increment/i.test(extra)) return null;
  // InnoDB never sets AUTO_INCREMENT below MAX(key) + 1, so this cannot move it backwards.
  await knex.raw(mysqlAutoIncrementSql(table, floor));
  return floor;
}

interface KeyColumnRow {
  table: string;
  column: string;
  dataType: string;
  charset: string | null;
}

/**
 * Brings the outbox's row key and the backfill checkpoint from varchar(512) to TEXT, so keys
 * of any length replicate (the applied ledger keeps a digest of a long key: db/ledger-key.ts).
 * An InnoDB index entry holds at most 3,072 bytes, so the outbox's lookup index by key becomes
 * a 191-character prefix index, which narrows to the rows sharing the prefix and then
 * compares the whole value. Each ALTER is one atomic statement; a concurrent start that lost
 * the race finds the work done.
 *
 * @see https://mariadb.com/kb/en/innodb-limitations/#limitations-on-size
 */
export async function mysqlUnboundKeyColumns(knex: Knex): Promise<string[]> {
  const changed: string[] = [];
  for (const row of await mysqlBoundedColumns(knex)) {
    const charset = row.charset ?? 'utf8mb4';
    // Identifiers, types and the character set come from our own catalog, never a request.
    const text = `TEXT CHARACTER SET ${charset} COLLATE ${charset}_bin`;
    const ddl =
      row.table === 'tandem_outbox'
        ? `ALTER TABLE tandem_outbox MODIFY row_key ${text} NOT NULL, DROP INDEX tandem_outbox_key_idx, ADD INDEX tandem_outbox_key_idx (tbl, row_key(191))`
        : `ALTER TABLE tandem_backfill MODIFY last_key ${text} NULL`;
    try {
      await knex.raw(ddl);
      changed.push(`${row.table}.${row.column}`);
    } catch (error) {
      // Another Tandem process altered it between our check and our ALTER.
      if ((await mysqlBoundedColumns(knex)).some((r) => r.table === row.table)) throw error;
    }
  }
  return changed;
}

async function mysqlBoundedColumns(knex: Knex): Promise<KeyColumnRow[]> {
  const [rows] = (await knex.raw(
    `SELECT TABLE_NAME AS \`table\`, COLUMN_NAME AS \`column\`, DATA_TYPE AS dataType, CHARACTER_SET_NAME AS charset
       FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = DATABASE() AND DATA_TYPE = 'varchar'
        AND ((TABLE_NAME = 'tandem_outbox' AND COLUMN_NAME = 'row_key') OR (TABLE_NAME = 'tandem_backfill' AND COLUMN_NAME = 'last_key'))`,
  )) as unknown as [KeyColumnRow[]];
  return rows;
}
