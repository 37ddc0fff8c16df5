import type { ApplyItem, ApplySlice } from '../db/dialects/dialect.js';
import { replicaView, type Store } from '../db/store.js';
import { deadlineRunner } from '../db/with-deadline.js';
import type { OutboxEntry } from '../outbox/outbox-entry.js';
import type { Policy } from '../policy/policy.js';
import { secondaryKey, secondaryRow, tableRoute, type TableRoute } from '../policy/table-route.js';
import { compareVersion } from '../shared/version.js';

export interface ApplyResult {
  /** Per table: keys whose newest image was written / keys skipped because the secondary had newer. */
  perTable: Map<string, { applied: number; skipped: number }>;
  /** Every outbox id covered (coalesced older rows included): all may be marked done. */
  ids: string[];
}

/** Keys per statement: well inside every engine's bound-parameter limit. */
const SLICE = 200;

/** Groups entries by key and keeps the newest; keys sorted so concurrent appliers lock in one order. */
export function coalesce(entries: readonly OutboxEntry[]): Array<{ newest: OutboxEntry; ids: string[] }> {
  const groups = new Map<string, { newest: OutboxEntry; ids: string[] }>();
  for (const entry of entries) {
    const id = `${entry.table}\u0000${entry.rowKey}`;
    const group = groups.get(id);
    if (!group) {
      groups.set(id, { newest: entry, ids: [entry.id] });
      continue;
    }
    group.ids.push(entry.id);
    if (compareVersion({ epoch: entry.epoch, seq: entry.id }, { epoch: group.newest.epoch, seq: group.newest.id }) > 0) {
      group.newest = entry;
    }
  }
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
}

/**
 * Applies outbox entries to `secondary` (from the other store's outbox) in one transaction, versioned per
 * key (DESIGN §3.4): only images newer than the version the secondary's ledger holds are
 * written; duplicates and late deliveries are skipped. How the engine does it (ledger
 * locks, upserts, round trips) is the secondary's adapter's business.
 */
export async function applyEntries(
  secondary: Store,
  policies: ReadonlyMap<string, Policy>,
  entries: readonly OutboxEntry[],
  deadlineMs: number,
): Promise<ApplyResult> {
  // The outbox lives in the other store: the route runs from it to this one.
  const primaryName = secondary.name === 'target' ? 'source' : 'target';
  const groups = coalesce(entries);
  const byTable = new Map<string, OutboxEntry[]>();
  for (const { newest } of groups) {
    if (!policies.has(newest.table)) throw new Error(`outbox row ${newest.id} names table ${newest.table}, which has no policy`);
    const list = byTable.get(newest.table) ?? [];
    list.push(newest);
    byTable.set(newest.table, list);
  }
  const slices: ApplySlice[] = [];
  for (const [table, newest] of [...byTable.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const route = tableRoute(policies.get(table) as Policy, primaryName);
    const items = newest.map((e) => applyItem(secondary, route, e));
    for (let i = 0; i < items.length; i += SLICE) slices.push({ side: route.secondary, items: items.slice(i, i + SLICE) });
  }
  // Through the secondary's replication sessions (foreign-key checks off: children may arrive before parents).
  const sessions = replicaView(secondary);
  const counts = await sessions.adapter.applyVersioned(sessions.knex, deadlineRunner(sessions, deadlineMs), slices);
  const perTable = new Map<string, { applied: number; skipped: number }>();
  slices.forEach(({ side }, i) => {
    const sum = perTable.get(side.name) ?? { applied: 0, skipped: 0 };
    sum.applied += counts[i]?.applied ?? 0;
    sum.skipped += counts[i]?.skipped ?? 0;
    perTable.set(side.name, sum);
  });
  return { perTable, ids: groups.flatMap((g) => g.ids) };
}

/** One entry as the secondary's key and full row, values bound for its engine. */
export function applyItem(secondary: Store, route: TableRoute, entry: OutboxEntry): ApplyItem {
  const key = secondaryKey(secondary, route, entry.rowKey);
  const base = { rowKey: entry.rowKey, epoch: entry.epoch, seq: entry.id, key };
  if (entry.op === 'delete' || entry.image === null) return { ...base, row: null };
  return { ...base, row: Object.assign(secondaryRow(secondary, route, entry.image), key) };
}
