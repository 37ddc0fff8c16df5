import type { Dialect } from './dialects/dialect.js';
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
  dialect: Dialect;
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
  return { table, dialect: store.dialect, columns, primaryKey: await store.adapter.primaryKeyOf(knex, table) };
}
