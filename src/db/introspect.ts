import type { Store } from './store.js';

export interface ColumnInfo {
  name: string;
  /** Database type name as the catalog reports it, lower case (e.g. `integer`, `varchar`, `jsonb`). */
  type: string;
  nullable: boolean;
  maxLength: number | null;
}

export interface TableInfo {
  table: string;
  dialect: 'pg' | 'mysql' | 'sqlite';
  columns: ColumnInfo[];
  /** Primary-key columns in key order; empty when the table has none. */
  primaryKey: string[];
}

/** Reads a table's columns and primary key, or `undefined` when the table does not exist. */
export async function describeTable(store: Store, table: string): Promise<TableInfo | undefined> {
  const { knex } = store;
  if (!(await knex.schema.hasTable(table))) return undefined;
  const info = (await knex(table).columnInfo()) as unknown as Record<
    string,
    { type: string; nullable: boolean; maxLength: number | string | null }
  >;
  const columns: ColumnInfo[] = Object.entries(info).map(([name, c]) => ({
    name,
    type: String(c.type).toLowerCase(),
    nullable: Boolean(c.nullable),
    maxLength: c.maxLength === null || c.maxLength === undefined || c.maxLength === '' ? null : Number(c.maxLength),
  }));
  return { table, dialect: store.dialect, columns, primaryKey: await primaryKeyOf(store, table) };
}

async function primaryKeyOf(store: Store, table: string): Promise<string[]> {
  const { knex } = store;
  if (store.dialect === 'sqlite') {
    const rows = (await knex.raw('SELECT name, pk FROM pragma_table_info(?)', [table])) as Array<{ name: string; pk: number }>;
    return rows.filter((r) => Number(r.pk) > 0).sort((a, b) => Number(a.pk) - Number(b.pk)).map((r) => r.name);
  }
  if (store.dialect === 'pg') {
    const result = (await knex.raw(
      `SELECT a.attname AS name
         FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = to_regclass(?) AND i.indisprimary
        ORDER BY array_position(i.indkey::int2[], a.attnum)`,
      [quotePgIdent(table)],
    )) as { rows: Array<{ name: string }> };
    return result.rows.map((r) => r.name);
  }
  const [rows] = (await knex.raw(
    `SELECT COLUMN_NAME AS name FROM information_schema.KEY_COLUMN_USAGE
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY'
      ORDER BY ORDINAL_POSITION`,
    [table],
  )) as [Array<{ name: string }>];
  return rows.map((r) => r.name);
}

function quotePgIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
