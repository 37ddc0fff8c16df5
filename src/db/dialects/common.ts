import type { Knex } from 'knex';
import type { ColumnKind } from '../../shared/column-kind.js';
import type { Row } from '../../shared/row.js';
import { compareVersion } from '../../shared/version.js';
import { APPLIED_TABLE } from '../internal-tables.js';
import { keyText } from '../key-text.js';
import type { ApplyCounts, ApplyItem, ApplySlice, BindRules, DialectAdapter, LedgerRow, TableSide } from './dialect.js';
import { ledgerKey } from '../ledger-key.js';

/** What every adapter shares; each engine file says only where it differs. */

const ISO_WITH_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;

/**
 * Turns a JSON-ish value into what the engine's driver binds correctly for a column of
 * this kind. Every value still travels as a bound parameter; this only fixes its JS type.
 */
export function bindWith(rules: BindRules, value: unknown, kind: ColumnKind | null): unknown {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Date) return rules.datesAsText ? value.toISOString() : value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return rules.booleansAsIntegers || kind === 'integer' ? (value ? 1 : 0) : value;
  if (typeof value === 'object') return JSON.stringify(value); // node-pg would turn arrays into PG arrays
  if (typeof value === 'string') {
    if (kind === 'binary') return Buffer.from(value, 'base64');
    if (kind === 'json' && rules.jsonTextAsIs) return value;
    if (kind === 'datetime' && rules.isoDatetimesAsDates && ISO_WITH_TIME.test(value)) {
      const date = new Date(/[zZ]|[+-]\d{2}:?\d{2}$/.test(value) ? value : `${value.replace(' ', 'T')}Z`);
      return Number.isNaN(date.getTime()) ? value : date;
    }
  }
  return value;
}

/** The inclusive range of a fixed-width integer type (`int` is 32-bit, `bigint` 64-bit). */
export function fixedIntegerRange(type: string): readonly [bigint, bigint] | undefined {
  const t = type.toLowerCase().trim();
  const unsigned = /unsigned/.test(t);
  if (/^(tinyint)\b/.test(t)) return bits(8, unsigned);
  if (/^(smallint|int2|smallserial)\b/.test(t)) return bits(16, unsigned);
  if (/^mediumint\b/.test(t)) return bits(24, unsigned);
  if (/^(bigint|int8|bigserial)\b/.test(t)) return bits(64, unsigned);
  if (/^(int|integer|int4|serial)\b/.test(t)) return bits(32, unsigned);
  return undefined;
}

export function bits(n: number, unsigned = false): readonly [bigint, bigint] {
  return unsigned ? [0n, 2n ** BigInt(n) - 1n] : [-(2n ** BigInt(n - 1)), 2n ** BigInt(n - 1) - 1n];
}

/** `"name"` with embedded quotes doubled (PostgreSQL, SQLite). */
export function quoteDouble(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `WHERE key IN (…)` for one-column keys, `(a = ? AND b = ?) OR …` otherwise. */
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

/**
 * Rows whose key exists (`existing`, read under lock) become updates, the others one
 * insert: for engines whose upsert (ON DUPLICATE KEY UPDATE) fires on any unique key and
 * could overwrite another row.
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
    const { where, set } = splitKey(keyCols, row);
    if (Object.keys(set).length > 0) updates.push({ where, set });
  }
  return { fresh, updates };
}

/** A full row as its key columns and the rest. */
export function splitKey(keyCols: readonly string[], row: Row): { where: Row; set: Row } {
  const where: Row = {};
  const set: Row = {};
  for (const [c, v] of Object.entries(row)) (keyCols.includes(c) ? where : set)[c] = v;
  return { where, set };
}

/** The items newer than the versions the secondary has applied. */
export function newerItems(items: readonly ApplyItem[], current: ReadonlyMap<string, { epoch: number; seq: string }>): ApplyItem[] {
  return items.filter((i) => compareVersion({ epoch: i.epoch, seq: i.seq }, current.get(ledgerKey(i.rowKey)) ?? { epoch: -1, seq: '-1' }) > 0);
}

/** `INSERT … ON CONFLICT` upserts grouped by column shape (PostgreSQL, SQLite). */
export async function upsertOnConflict(trx: Knex.Transaction, side: TableSide, rows: readonly Row[]): Promise<void> {
  const groups = new Map<string, Row[]>();
  for (const row of rows) {
    const shape = Object.keys(row).sort().join(',');
    groups.set(shape, [...(groups.get(shape) ?? []), row]);
  }
  for (const group of groups.values()) {
    const nonKey = Object.keys(group[0] as Row).filter((c) => !side.key.includes(c));
    const insert = trx(side.table).insert(group).onConflict([...side.key]);
    await (nonKey.length === 0 ? insert.ignore() : insert.merge(nonKey));
  }
}

/** Records versions with `INSERT … ON CONFLICT DO UPDATE` (PostgreSQL, SQLite). */
export async function recordLedgerOnConflict(trx: Knex.Transaction, rows: readonly LedgerRow[]): Promise<void> {
  if (rows.length === 0) return;
  await trx(APPLIED_TABLE).insert([...rows]).onConflict(['tbl', 'row_key']).merge(['epoch', 'seq', 'applied_at']);
}

/** Inserts ledger rows where absent (PostgreSQL, SQLite). */
export async function claimAbsentOnConflict(trx: Knex.Transaction, rows: readonly LedgerRow[]): Promise<void> {
  if (rows.length === 0) return;
  await trx(APPLIED_TABLE).insert([...rows]).onConflict(['tbl', 'row_key']).ignore();
}

/**
 * Creates-or-locks every key's ledger row in one statement and returns the versions
 * (`INSERT … ON CONFLICT DO UPDATE … RETURNING`, PostgreSQL and SQLite). `epochColumn` is
 * how the engine names the existing row's column in the DO UPDATE clause.
 */
export async function lockLedgerReturning(
  trx: Knex.Transaction,
  epochColumn: string,
  tbl: string,
  rowKeys: readonly string[],
): Promise<Map<string, { epoch: number; seq: string }>> {
  const now = Date.now();
  const values = rowKeys.map(() => '(?, ?, -1, -1, ?)').join(', ');
  const params = rowKeys.flatMap((k) => [tbl, ledgerKey(k), now]);
  const result = (await trx.raw(
    `INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES ${values}
     ON CONFLICT (tbl, row_key) DO UPDATE SET epoch = ${epochColumn}
     RETURNING row_key, epoch, seq`,
    params,
  )) as { rows?: LedgerRecord[] } | LedgerRecord[];
  const rows = Array.isArray(result) ? result : (result.rows ?? []);
  return new Map(rows.map((r) => [r.row_key, { epoch: Number(r.epoch), seq: String(r.seq) }]));
}

interface LedgerRecord {
  row_key: string;
  epoch: number | string;
  seq: number | string;
}

/**
 * The versioned apply as ordinary statements in one transaction (PostgreSQL, SQLite): per
 * slice, lock the ledger rows, write only the newer images, record their versions.
 */
export async function applyInTransaction(adapter: DialectAdapter, trx: Knex.Transaction, slices: readonly ApplySlice[]): Promise<ApplyCounts[]> {
  const counts: ApplyCounts[] = [];
  for (const { side, items } of slices) {
    const current = await adapter.lockLedger(trx, side.name, items.map((i) => i.rowKey));
    const newer = newerItems(items, current);
    if (newer.length > 0) {
      const deletes = newer.filter((i) => i.row === null).map((i) => i.key);
      const upserts = newer.filter((i) => i.row !== null).map((i) => i.row as Row);
      if (deletes.length > 0) await whereKeys(trx(side.table), side.key, deletes).del();
      if (upserts.length > 0) await adapter.upsertRows(trx, side, upserts);
      const now = Date.now();
      await adapter.recordLedger(trx, newer.map((i) => ({ tbl: side.name, row_key: ledgerKey(i.rowKey), epoch: i.epoch, seq: i.seq, applied_at: now })));
    }
    counts.push({ applied: newer.length, skipped: items.length - newer.length });
  }
  return counts;
}

/** The key columns of a row, as a WHERE object. */
export function keyOf(side: TableSide, row: Row): Row {
  const where: Row = {};
  for (const c of side.key) where[c] = row[c];
  return where;
}

/** Sends one statement on a fresh callback-style driver connection (pg, mysql2) and calls back with its error. */
export function queryOnConnection(connection: unknown, sql: string, done: (err: Error | null) => void): void {
  (connection as { query(sql: string, cb: (err: Error | null) => void): void }).query(sql, (err) => done(err));
}
