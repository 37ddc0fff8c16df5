import { OUTBOX_TABLE } from '../db/internal-tables.js';
import type { Store } from '../db/store.js';
import type { OutboxTableStats } from '../events.js';

/** Pending and dead counts and the age of the oldest pending row, per table. */
export async function outboxStats(primary: Store, tables: readonly string[]): Promise<OutboxTableStats[]> {
  const rows = (await primary.knex(OUTBOX_TABLE)
    .select('tbl', 'status')
    .count({ n: '*' })
    .min({ oldest: 'created_at' })
    .whereIn('status', ['pending', 'dead'])
    .groupBy('tbl', 'status')) as Array<{ tbl: string; status: string; n: number | string; oldest: number | string | null }>;
  const now = Date.now();
  const byTable = new Map<string, OutboxTableStats>(tables.map((t) => [t, { table: t, pending: 0, dead: 0, lagSeconds: 0 }]));
  for (const row of rows) {
    const stats = byTable.get(row.tbl) ?? { table: row.tbl, pending: 0, dead: 0, lagSeconds: 0 };
    byTable.set(row.tbl, stats);
    if (row.status === 'pending') {
      stats.pending = Number(row.n);
      stats.lagSeconds = row.oldest === null ? 0 : Math.max(0, (now - Number(row.oldest)) / 1000);
      stats.oldestPendingAt = row.oldest === null ? null : Number(row.oldest);
    } else {
      stats.dead = Number(row.n);
    }
  }
  return [...byTable.values()];
}
