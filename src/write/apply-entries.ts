import type { Knex } from 'knex';
import { APPLIED_TABLE } from '../db/internal-tables.js';
import type { Dialect, Store } from '../db/store.js';
import { withDeadlineTransaction } from '../db/with-deadline.js';
import type { Policy } from '../policy/policy.js';
import type { Row } from './image-codec.js';
import { planSlice, splitByPresence, whereKeys } from './apply-plan.js';
import { applyMysqlSlices, type MysqlSlice } from './apply-mysql.js';
import { compareVersion, type OutboxEntry } from './outbox/outbox-entry.js';

export interface ApplyResult {
  /** Per table: keys whose newest image was written / keys skipped because the secondary had newer. */
  perTable: Map<string, { applied: number; skipped: number }>;
  /** Every outbox id covered (coalesced older rows included): all may be marked done. */
  ids: string[];
}

/** Rows per statement: well inside every dialect's bound-parameter limit. */
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
 * Applies outbox entries to the secondary in one transaction, versioned per key (DESIGN
 * §3.4): the keys' ledger rows in `tandem_applied` are created-or-locked in one statement,
 * and only images newer than the version applied are written — as set operations, a few
 * statements per batch rather than per key. Duplicates and late deliveries are skipped.
 */
export async function applyEntries(
  secondary: Store,
  policies: ReadonlyMap<string, Policy>,
  entries: readonly OutboxEntry[],
  deadlineMs: number,
): Promise<ApplyResult> {
  const groups = coalesce(entries);
  const byTable = new Map<string, OutboxEntry[]>();
  for (const { newest } of groups) {
    if (!policies.has(newest.table)) throw new Error(`outbox row ${newest.id} names table ${newest.table}, which has no policy`);
    const list = byTable.get(newest.table) ?? [];
    list.push(newest);
    byTable.set(newest.table, list);
  }
  const perTable = new Map<string, { applied: number; skipped: number }>();
  const tables = [...byTable.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  if (secondary.dialect === 'mysql') {
    const slices: MysqlSlice[] = [];
    for (const [table, newest] of tables) {
      for (let i = 0; i < newest.length; i += SLICE) slices.push({ policy: policies.get(table) as Policy, entries: newest.slice(i, i + SLICE) });
    }
    const counts = await applyMysqlSlices(secondary, slices, deadlineMs);
    slices.forEach(({ policy }, i) => {
      const sum = perTable.get(policy.name) ?? { applied: 0, skipped: 0 };
      sum.applied += counts[i]?.applied ?? 0;
      sum.skipped += counts[i]?.skipped ?? 0;
      perTable.set(policy.name, sum);
    });
    return { perTable, ids: groups.flatMap((g) => g.ids) };
  }
  await withDeadlineTransaction(secondary, deadlineMs, async (trx) => {
    perTable.clear();
    for (const [table, newest] of tables) {
      const policy = policies.get(table) as Policy;
      const counts = { applied: 0, skipped: 0 };
      for (let i = 0; i < newest.length; i += SLICE) {
        const applied = await applySlice(trx, secondary.dialect, policy, newest.slice(i, i + SLICE));
        counts.applied += applied;
        counts.skipped += Math.min(SLICE, newest.length - i) - applied;
      }
      perTable.set(table, counts);
    }
  });
  return { perTable, ids: groups.flatMap((g) => g.ids) };
}

/** One table, distinct keys in sorted order, on PostgreSQL or SQLite (MySQL: apply-mysql.ts). Returns how many were written. */
async function applySlice(trx: Knex.Transaction, dialect: Dialect, policy: Policy, entries: readonly OutboxEntry[]): Promise<number> {
  const current = await lockLedger(trx, dialect, policy.name, entries.map((e) => e.rowKey));
  const plan = planSlice(dialect, policy, entries, current);
  if (plan.newer.length === 0) return 0;
  if (plan.deletes.length > 0) await whereKeys(trx(policy.targetTable), policy.targetPrimaryKey, plan.deletes).del();
  if (plan.upserts.length > 0) await upsertRows(trx, dialect, policy, plan.upserts);
  await trx(APPLIED_TABLE).insert(plan.ledger).onConflict(['tbl', 'row_key']).merge(['epoch', 'seq', 'applied_at']);
  return plan.newer.length;
}

/** Writes full rows by key: inserts new keys, updates existing ones (callers hold the keys' ledger locks). */
export async function upsertRows(trx: Knex.Transaction, dialect: Dialect, policy: Policy, rows: Row[]): Promise<void> {
  const keyCols = policy.targetPrimaryKey;
  if (dialect !== 'mysql') {
    // Rows of one table share their columns (full after-images), as a multi-row insert needs.
    const groups = new Map<string, Row[]>();
    for (const row of rows) {
      const shape = Object.keys(row).sort().join(',');
      groups.set(shape, [...(groups.get(shape) ?? []), row]);
    }
    for (const group of groups.values()) {
      const nonKey = Object.keys(group[0] as Row).filter((c) => !keyCols.includes(c));
      const insert = trx(policy.targetTable).insert(group).onConflict([...keyCols]);
      await (nonKey.length === 0 ? insert.ignore() : insert.merge(nonKey));
    }
    return;
  }
  // MySQL (backfill): lock the keys that exist, update those, insert the rest (splitByPresence).
  const existing = (await whereKeys(trx(policy.targetTable).select([...keyCols]), keyCols, rows).forUpdate()) as Row[];
  const { fresh, updates } = splitByPresence(keyCols, rows, existing);
  for (const { where, set } of updates) await trx(policy.targetTable).where(where).update(set);
  if (fresh.length > 0) await trx(policy.targetTable).insert(fresh);
}

/** Creates the keys' ledger rows if needed and locks them; returns the versions applied so far. */
async function lockLedger(
  trx: Knex.Transaction,
  dialect: Dialect,
  table: string,
  rowKeys: readonly string[],
): Promise<Map<string, { epoch: number; seq: string }>> {
  const now = Date.now();
  const values = rowKeys.map(() => '(?, ?, -1, -1, ?)').join(', ');
  const params = rowKeys.flatMap((k) => [table, k, now]);
  // One statement creates-or-locks every row and returns it (MySQL: apply-mysql.ts).
  const qualified = dialect === 'pg' ? `${APPLIED_TABLE}.epoch` : 'epoch';
  const result = (await trx.raw(
    `INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES ${values}
     ON CONFLICT (tbl, row_key) DO UPDATE SET epoch = ${qualified}
     RETURNING row_key, epoch, seq`,
    params,
  )) as { rows?: Array<{ row_key: string; epoch: number | string; seq: number | string }> } | Array<{ row_key: string; epoch: number | string; seq: number | string }>;
  const rows = Array.isArray(result) ? result : (result.rows ?? []);
  return new Map(rows.map((r) => [r.row_key, { epoch: Number(r.epoch), seq: String(r.seq) }]));
}
