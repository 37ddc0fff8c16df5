import type { Store } from './store.js';

/** Child → parent edges between tables of one store (foreign keys), by table name. */
export async function foreignKeyEdges(store: Store, tables: readonly string[]): Promise<Array<{ child: string; parent: string }>> {
  const { knex } = store;
  if (store.dialect === 'pg') {
    const result = (await knex.raw(
      `SELECT cl.relname AS child, pl.relname AS parent FROM pg_constraint c
         JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_class pl ON pl.oid = c.confrelid
        WHERE c.contype = 'f' AND pg_table_is_visible(cl.oid) AND pg_table_is_visible(pl.oid)`,
    )) as { rows: Array<{ child: string; parent: string }> };
    return result.rows.filter((e) => tables.includes(e.child));
  }
  if (store.dialect === 'mysql') {
    const [rows] = (await knex.raw(
      `SELECT DISTINCT TABLE_NAME AS child, REFERENCED_TABLE_NAME AS parent FROM information_schema.KEY_COLUMN_USAGE
        WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL AND REFERENCED_TABLE_SCHEMA = DATABASE()`,
    )) as unknown as [Array<{ child: string; parent: string }>];
    return rows.filter((e) => tables.includes(e.child));
  }
  const edges: Array<{ child: string; parent: string }> = [];
  for (const child of tables) {
    // A PRAGMA takes no bound parameters; the name comes from a policy and is quoted as an identifier.
    const rows = (await knex.raw(`PRAGMA foreign_key_list("${child.replace(/"/g, '""')}")`)) as Array<{ table: string }>;
    for (const r of rows) edges.push({ child, parent: r.table });
  }
  return edges;
}

/**
 * The tables in foreign-key order, parents first (ties and cycles by name), so a backfill
 * of every table copies each parent before its children.
 */
export async function foreignKeyOrder(store: Store, tables: readonly string[]): Promise<string[]> {
  const edges = (await foreignKeyEdges(store, tables)).filter((e) => e.child !== e.parent && tables.includes(e.parent));
  const remaining = new Set([...tables].sort());
  const order: string[] = [];
  while (remaining.size > 0) {
    const ready = [...remaining].filter((t) => !edges.some((e) => e.child === t && remaining.has(e.parent)));
    // A cycle: take the first by name and go on (FK checks are off in the target's sessions).
    const next = ready[0] ?? [...remaining][0] as string;
    order.push(next);
    remaining.delete(next);
  }
  return order;
}
