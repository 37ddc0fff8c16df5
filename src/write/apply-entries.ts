import type { Knex } from 'knex';
import { bindValue } from '../db/bind-value.js';
import { APPLIED_TABLE } from '../db/internal-tables.js';
import { keyText } from '../db/key-text.js';
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
  await withDeadlineTransaction(secondary, deadlineMs, async (trx) => {
    perTable.clear();
    for (const [table, newest] of [...byTable.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
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

/** One table, distinct keys in sorted order. Returns how many were written. */
async function applySlice(trx: Knex.Transaction, dialect: Dialect, policy: Policy, entries: readonly OutboxEntry[]): Promise<number> {
  const current = await lockLedger(trx, dialect, policy.name, entries.map((e) => e.rowKey));
  const newer = entries.filter((e) => compareVersion({ epoch: e.epoch, seq: e.id }, current.get(e.rowKey) ?? { epoch: -1, seq: '-1' }) > 0);
  if (newer.length === 0) return 0;

  const keyOf = (entry: OutboxEntry): Row => {
    const sourceKey = parseKey(policy, entry.rowKey, 'row_key');
    const where: Row = {};
    policy.targetPrimaryKey.forEach((col, i) => {
      const sourceCol = policy.primaryKey[i] as string;
      where[col] = bindValue(sourceKey[i], policy.columns.get(sourceCol)?.targetKind ?? null, dialect);
    });
    return where;
  };
  const deletes = newer.filter((e) => e.op === 'delete' || e.image === null).map(keyOf);
  const upserts = newer
    .filter((e) => e.op !== 'delete' && e.image !== null)
    .map((e) => {
      const mapped = mapForward(policy, e.image as Row);
      const row: Row = {};
      for (const column of policy.columns.values()) {
        if (column.targetName === null || !(column.targetName in mapped)) continue;
        row[column.targetName] = bindValue(mapped[column.targetName], column.targetKind, dialect);
      }
      return Object.assign(row, keyOf(e));
    });

  if (deletes.length > 0) await whereKeys(trx(policy.targetTable), policy.targetPrimaryKey, deletes).del();
  if (upserts.length > 0) await upsertRows(trx, dialect, policy, upserts);

  const now = Date.now();
  const ledger = newer.map((e) => ({ tbl: policy.name, row_key: e.rowKey, epoch: e.epoch, seq: e.id, applied_at: now }));
  if (dialect === 'mysql') {
    await trx.raw(
      `INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES ${ledger.map(() => '(?, ?, ?, ?, ?)').join(', ')}
       ON DUPLICATE KEY UPDATE epoch = VALUES(epoch), seq = VALUES(seq), applied_at = VALUES(applied_at)`,
      ledger.flatMap((l) => [l.tbl, l.row_key, l.epoch, l.seq, l.applied_at]),
    );
  } else {
    await trx(APPLIED_TABLE).insert(ledger).onConflict(['tbl', 'row_key']).merge(['epoch', 'seq', 'applied_at']);
  }
  return newer.length;
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
  // MySQL: not ON DUPLICATE KEY UPDATE — it fires on any unique key and could overwrite
  // another row. Lock the keys that exist, update those, insert the rest.
  const existing = (await whereKeys(trx(policy.targetTable).select([...keyCols]), keyCols, rows).forUpdate()) as Row[];
  const present = new Set(existing.map((r) => keyCols.map((c) => keyText(r[c])).join('\u0000')));
  const fresh: Row[] = [];
  for (const row of rows) {
    const id = keyCols.map((c) => keyText(row[c])).join('\u0000');
    if (!present.has(id)) {
      fresh.push(row);
      continue;
    }
    const where: Row = {};
    const set: Row = {};
    for (const [c, v] of Object.entries(row)) (keyCols.includes(c) ? where : set)[c] = v;
    if (Object.keys(set).length > 0) await trx(policy.targetTable).where(where).update(set);
  }
  if (fresh.length > 0) await trx(policy.targetTable).insert(fresh);
}

function whereKeys<T extends Knex.QueryBuilder>(query: T, keyCols: readonly string[], rows: readonly Row[]): T {
  if (keyCols.length === 1) {
    const col = keyCols[0] as string;
    return query.whereIn(col, rows.map((r) => r[col] as Knex.Value)) as T;
  }
  return query.where((w) => {
    for (const row of rows) {
      w.orWhere((one) => {
        for (const c of keyCols) one.andWhere(c, row[c] as Knex.Value);
      });
    }
  }) as T;
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
  let rows: Array<{ row_key: string; epoch: number | string; seq: number | string }>;
  if (dialect === 'mysql') {
    await trx.raw(`INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES ${values} ON DUPLICATE KEY UPDATE epoch = epoch`, params);
    rows = (await trx(APPLIED_TABLE).select('row_key', 'epoch', 'seq').where('tbl', table).whereIn('row_key', [...rowKeys]).forUpdate()) as typeof rows;
  } else {
    // PostgreSQL and SQLite: one statement creates-or-locks every row and returns it.
    const qualified = dialect === 'pg' ? `${APPLIED_TABLE}.epoch` : 'epoch';
    const result = (await trx.raw(
      `INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES ${values}
       ON CONFLICT (tbl, row_key) DO UPDATE SET epoch = ${qualified}
       RETURNING row_key, epoch, seq`,
      params,
    )) as { rows?: typeof rows } | typeof rows;
    rows = Array.isArray(result) ? result : (result.rows ?? []);
  }
  return new Map(rows.map((r) => [r.row_key, { epoch: Number(r.epoch), seq: String(r.seq) }]));
}
