import type { Knex } from 'knex';
import { bindValue } from '../db/bind-value.js';
import { APPLIED_TABLE } from '../db/internal-tables.js';
import type { Dialect, Store } from '../db/store.js';
import { withDeadlineTransaction } from '../db/with-deadline.js';
import { mapForward } from '../policy/mapping.js';
import type { Policy } from '../policy/policy.js';
import { parseKey } from '../policy/row-key.js';
import type { Row } from './image-codec.js';
import { compareVersion, type OutboxEntry } from './outbox/outbox-entry.js';

export interface ApplyResult {
  /** Per table: keys whose newest image was written / keys skipped because the secondary had newer. */
  perTable: Map<string, { applied: number; skipped: number }>;
  /** Every outbox id covered (coalesced older rows included): all may be marked done. */
  ids: string[];
}

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
 * Applies outbox entries to the secondary in one transaction, versioned per key: the
 * ledger row `tandem_applied` is locked, and the image is written only when its version
 * is newer than the one applied. Duplicates and out-of-order deliveries are skipped.
 */
export async function applyEntries(
  secondary: Store,
  policies: ReadonlyMap<string, Policy>,
  entries: readonly OutboxEntry[],
  deadlineMs: number,
): Promise<ApplyResult> {
  const groups = coalesce(entries);
  const perTable = new Map<string, { applied: number; skipped: number }>();
  await withDeadlineTransaction(secondary, deadlineMs, async (trx) => {
    perTable.clear();
    for (const { newest } of groups) {
      const policy = policies.get(newest.table);
      if (!policy) throw new Error(`outbox row ${newest.id} names table ${newest.table}, which has no policy`);
      const applied = await applyOne(trx, secondary.dialect, policy, newest);
      const counts = perTable.get(newest.table) ?? { applied: 0, skipped: 0 };
      if (applied) counts.applied += 1;
      else counts.skipped += 1;
      perTable.set(newest.table, counts);
    }
  });
  return { perTable, ids: groups.flatMap((g) => g.ids) };
}

async function applyOne(trx: Knex.Transaction, dialect: Dialect, policy: Policy, entry: OutboxEntry): Promise<boolean> {
  const current = await lockLedger(trx, dialect, entry.table, entry.rowKey);
  if (compareVersion({ epoch: entry.epoch, seq: entry.id }, current) <= 0) return false;

  const sourceKey = parseKey(policy, entry.rowKey, 'row_key');
  const where: Row = {};
  policy.targetPrimaryKey.forEach((col, i) => {
    const sourceCol = policy.primaryKey[i] as string;
    where[col] = bindValue(sourceKey[i], policy.columns.get(sourceCol)?.targetKind ?? null, dialect);
  });

  if (entry.op === 'delete' || entry.image === null) {
    await trx(policy.targetTable).where(where).del();
  } else {
    const mapped = mapForward(policy, entry.image);
    const row: Row = {};
    for (const column of policy.columns.values()) {
      if (column.targetName === null || !(column.targetName in mapped)) continue;
      row[column.targetName] = bindValue(mapped[column.targetName], column.targetKind, dialect);
    }
    Object.assign(row, where);
    const nonKey = Object.keys(row).filter((c) => !policy.targetPrimaryKey.includes(c));
    if (dialect === 'mysql') {
      // Not ON DUPLICATE KEY UPDATE: it fires on any unique key and could overwrite another row.
      const exists = await trx(policy.targetTable).select(trx.raw('1 AS one')).where(where).forUpdate().first();
      if (!exists) await trx(policy.targetTable).insert(row);
      else if (nonKey.length > 0) await trx(policy.targetTable).where(where).update(pick(row, nonKey));
    } else if (nonKey.length === 0) {
      await trx(policy.targetTable).insert(row).onConflict([...policy.targetPrimaryKey]).ignore();
    } else {
      await trx(policy.targetTable).insert(row).onConflict([...policy.targetPrimaryKey]).merge(nonKey);
    }
  }
  await trx(APPLIED_TABLE)
    .where({ tbl: entry.table, row_key: entry.rowKey })
    .update({ epoch: entry.epoch, seq: entry.id, applied_at: Date.now() });
  return true;
}

/** Creates the key's ledger row if needed and locks it; returns the version applied so far. */
async function lockLedger(
  trx: Knex.Transaction,
  dialect: Dialect,
  table: string,
  rowKey: string,
): Promise<{ epoch: number; seq: string }> {
  const now = Date.now();
  if (dialect === 'mysql') {
    await trx.raw(
      `INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES (?, ?, -1, -1, ?)
       ON DUPLICATE KEY UPDATE epoch = epoch`,
      [table, rowKey, now],
    );
    const row = (await trx(APPLIED_TABLE).select('epoch', 'seq').where({ tbl: table, row_key: rowKey }).forUpdate().first()) as
      | { epoch: number | string; seq: number | string }
      | undefined;
    return { epoch: Number(row?.epoch ?? -1), seq: String(row?.seq ?? -1) };
  }
  // PostgreSQL and SQLite: one statement creates-or-locks the row and returns it.
  const qualified = dialect === 'pg' ? `${APPLIED_TABLE}.epoch` : 'epoch';
  const result = (await trx.raw(
    `INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES (?, ?, -1, -1, ?)
     ON CONFLICT (tbl, row_key) DO UPDATE SET epoch = ${qualified}
     RETURNING epoch, seq`,
    [table, rowKey, now],
  )) as { rows?: Array<{ epoch: number | string; seq: number | string }> } | Array<{ epoch: number | string; seq: number | string }>;
  const rows = Array.isArray(result) ? result : (result.rows ?? []);
  const row = rows[0];
  return { epoch: Number(row?.epoch ?? -1), seq: String(row?.seq ?? -1) };
}

function pick(row: Row, columns: readonly string[]): Row {
  const out: Row = {};
  for (const c of columns) out[c] = row[c];
  return out;
}
