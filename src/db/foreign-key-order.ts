import type { Store } from './store.js';

/** Child → parent edges between tables of one store (foreign keys), by table name. */
function foreignKeyEdges(store: Store, tables: readonly string[]): Promise<Array<{ child: string; parent: string }>> {
  return store.adapter.foreignKeyEdges(store.knex, tables);
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
