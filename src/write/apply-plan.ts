import type { Knex } from 'knex';
import { bindValue } from '../db/bind-value.js';
import { keyText } from '../db/key-text.js';
import type { Dialect } from '../db/store.js';
import { mapForward } from '../policy/mapping.js';
import type { Policy } from '../policy/policy.js';
import { parseKey } from '../policy/row-key.js';
import type { Row } from './image-codec.js';
import { compareVersion, type OutboxEntry } from './outbox/outbox-entry.js';

/** What every dialect's versioned apply shares: which images are newer, and the rows they become. */

export interface SlicePlan {
  /** Entries newer than what the secondary has applied: the ones to write. */
  newer: OutboxEntry[];
  /** Target keys to delete (tombstones). */
  deletes: Row[];
  /** Full target rows to write. */
  upserts: Row[];
  /** The ledger rows recording the new versions. */
  ledger: Array<{ tbl: string; row_key: string; epoch: number; seq: string; applied_at: number }>;
}

/** What a slice writes, given the versions the secondary has applied (`current`). */
export function planSlice(dialect: Dialect, policy: Policy, entries: readonly OutboxEntry[], current: ReadonlyMap<string, { epoch: number; seq: string }>): SlicePlan {
  const newer = entries.filter((e) => compareVersion({ epoch: e.epoch, seq: e.id }, current.get(e.rowKey) ?? { epoch: -1, seq: '-1' }) > 0);
  const keyOf = (entry: OutboxEntry): Row => targetKey(dialect, policy, entry.rowKey);
  const deletes = newer.filter(isTombstone).map(keyOf);
  const upserts = newer.filter((e) => !isTombstone(e)).map((e) => targetRow(dialect, policy, e));
  const now = Date.now();
  const ledger = newer.map((e) => ({ tbl: policy.name, row_key: e.rowKey, epoch: e.epoch, seq: e.id, applied_at: now }));
  return { newer, deletes, upserts, ledger };
}

export function isTombstone(entry: OutboxEntry): boolean {
  return entry.op === 'delete' || entry.image === null;
}

/** An entry's after-image as the full target row (key included), bound for the dialect. */
export function targetRow(dialect: Dialect, policy: Policy, entry: OutboxEntry): Row {
  const mapped = mapForward(policy, entry.image as Row);
  const row: Row = {};
  for (const column of policy.columns.values()) {
    if (column.targetName === null || !(column.targetName in mapped)) continue;
    row[column.targetName] = bindValue(mapped[column.targetName], column.targetKind, dialect);
  }
  return Object.assign(row, targetKey(dialect, policy, entry.rowKey));
}

/** An outbox row key as the secondary's key columns, bound for its dialect. */
export function targetKey(dialect: Dialect, policy: Policy, rowKey: string): Row {
  const sourceKey = parseKey(policy, rowKey, 'row_key');
  const where: Row = {};
  policy.targetPrimaryKey.forEach((col, i) => {
    const sourceCol = policy.primaryKey[i] as string;
    where[col] = bindValue(sourceKey[i], policy.columns.get(sourceCol)?.targetKind ?? null, dialect);
  });
  return where;
}

/**
 * MySQL/MariaDB writes full rows without ON DUPLICATE KEY UPDATE, which fires on any unique
 * key and could overwrite another row: the rows whose key exists (`existing`, read under
 * lock) become updates, the others one insert.
 */
export function splitByPresence(keyCols: readonly string[], rows: readonly Row[], existing: readonly Row[]): { fresh: Row[]; updates: Array<{ where: Row; set: Row }> } {
  const idOf = (row: Row) => keyCols.map((c) => keyText(row[c])).join('\u0000');
  const present = new Set(existing.map(idOf));
  const fresh: Row[] = [];
  const updates: Array<{ where: Row; set: Row }> = [];
  for (const row of rows) {
    if (!present.has(idOf(row))) {
      fresh.push(row);
      continue;
    }
    const where: Row = {};
    const set: Row = {};
    for (const [c, v] of Object.entries(row)) (keyCols.includes(c) ? where : set)[c] = v;
    if (Object.keys(set).length > 0) updates.push({ where, set });
  }
  return { fresh, updates };
}

export function whereKeys<T extends Knex.QueryBuilder>(query: T, keyCols: readonly string[], rows: readonly Row[]): T {
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
