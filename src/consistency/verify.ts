import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { OUTBOX_TABLE } from '../db/internal-tables.js';
import { keysetPage } from '../db/key-queries.js';
import type { Store } from '../db/store.js';
import { mapBackward } from '../policy/mapping.js';
import { canonical, compareSettings, diffRows, type CompareSettings } from '../policy/normalize.js';
import type { Policy } from '../policy/policy.js';
import { formatKey, parseKey, type KeyValues } from '../policy/row-key.js';
import { fetchByKeys } from '../read/fetch-by-keys.js';
import type { Row } from '../write/image-codec.js';

export interface VerifyProgress {
  phase: 'source' | 'target' | 'recheck';
  done: number;
  total: number;
}

export interface VerifyOptions {
  /** Rows per chunk. Default 2000. */
  chunkSize?: number;
  /** Sample keys kept per kind of drift. Default 10. */
  sampleLimit?: number;
  /** Longest wait for differing keys with pending outbox rows to drain before the re-check, ms. Default 10000. */
  drainWaitMs?: number;
  onProgress?: (progress: VerifyProgress) => void;
}

export interface VerifyReport {
  table: string;
  sourceRows: number;
  targetRows: number;
  matching: number;
  mismatched: number;
  missingInTarget: number;
  extraInTarget: number;
  /** Chunks whose canonical hash differed (and were diffed row by row). */
  chunksDiffering: number;
  chunks: number;
  samples: {
    mismatched: Array<{ key: string; columns: string[] }>;
    missingInTarget: string[];
    extraInTarget: string[];
  };
  /** Differing keys re-read at the end (after their pending outbox rows drained). */
  rechecked: number;
  /** Keys that still had pending outbox rows after the wait (counted as drift). */
  stillPending: number;
  durationMs: number;
  rowsPerSecond: number;
  clean: boolean;
  /** Every differing key, for --repair (not printed). */
  differingKeys: KeyValues[];
}

type Drift = { kind: 'mismatched'; columns: string[] } | { kind: 'missing' } | { kind: 'extra' };

/**
 * Compares map(source) with the target (DESIGN §6): the source in key order, chunk by
 * chunk, against the same keys in the target — canonical row hashes per chunk, row diffs in
 * chunks that differ — then the target's keys against the source for extra rows. Keys that
 * differ are re-read at the end, once their pending outbox rows (if any) have drained, so a
 * write in flight during the walk is not reported as drift.
 */
export async function verifyTable(source: Store, target: Store, policy: Policy, options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  const chunkSize = options.chunkSize ?? 2000;
  const sampleLimit = options.sampleLimit ?? 10;
  const settings = compareSettings(policy);
  const [sourceRows, targetRows] = await Promise.all([countRows(source.knex, policy.sourceTable), countRows(target.knex, policy.targetTable)]);
  const drift = new Map<string, { key: KeyValues; drift: Drift }>();
  let matching = 0;
  let chunks = 0;
  let chunksDiffering = 0;

  // Pass 1: every source row against the target row of the same key.
  let after: KeyValues | undefined;
  let seen = 0;
  for (;;) {
    const rows = await keysetPage(source.knex, policy.sourceTable, policy.primaryKey, after, chunkSize);
    if (rows.length === 0) break;
    chunks++;
    const keys = rows.map((r) => policy.primaryKey.map((c) => r[c]));
    const targetByKey = indexBy(policy, await fetchByKeys(target, policy, keys));
    const sourceHash = chunkHash(rows.map((r) => canonicalRow(policy, settings, r, 'source')));
    const targetHash = chunkHash(keys.map((k) => targetByKey.get(formatKey(k))).map((r) => (r ? canonicalRow(policy, settings, r, 'target') : 'missing')));
    if (sourceHash === targetHash) {
      matching += rows.length;
    } else {
      chunksDiffering++;
      for (const row of rows) {
        const key = policy.primaryKey.map((c) => row[c]);
        const other = targetByKey.get(formatKey(key));
        if (!other) drift.set(formatKey(key), { key, drift: { kind: 'missing' } });
        else {
          const columns = diffRows(policy, settings, row, other);
          if (columns.length === 0) matching++;
          else drift.set(formatKey(key), { key, drift: { kind: 'mismatched', columns } });
        }
      }
    }
    seen += rows.length;
    options.onProgress?.({ phase: 'source', done: seen, total: sourceRows });
    after = keys[keys.length - 1];
    if (rows.length < chunkSize) break;
  }

  // Pass 2: target keys the source does not have.
  after = undefined;
  seen = 0;
  for (;;) {
    const rows = await keysetPage(target.knex, policy.targetTable, policy.targetPrimaryKey, after, chunkSize, policy.targetPrimaryKey);
    if (rows.length === 0) break;
    const keys = rows.map((r) => {
      const back = mapBackward(policy, r);
      return policy.primaryKey.map((c) => back[c]);
    });
    const present = new Set((await fetchKeysOnly(source, policy, keys)).map((k) => formatKey(k)));
    for (const key of keys) if (!present.has(formatKey(key))) drift.set(formatKey(key), { key, drift: { kind: 'extra' } });
    seen += rows.length;
    options.onProgress?.({ phase: 'target', done: seen, total: targetRows });
    after = rows.length > 0 ? policy.targetPrimaryKey.map((c) => rows[rows.length - 1]?.[c]) : undefined;
    if (rows.length < chunkSize) break;
  }

  // Re-check every differing key once its pending outbox rows have drained.
  let stillPending = 0;
  const rechecked = drift.size;
  if (drift.size > 0) {
    const deadline = Date.now() + (options.drainWaitMs ?? 10_000);
    let pending = await pendingKeys(source, policy, [...drift.keys()]);
    while (pending.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      pending = await pendingKeys(source, policy, [...drift.keys()]);
    }
    stillPending = pending.size;
    const entries = [...drift.values()];
    for (let i = 0; i < entries.length; i += chunkSize) {
      const slice = entries.slice(i, i + chunkSize);
      const keys = slice.map((e) => e.key);
      const [s, t] = await Promise.all([fetchByKeys(source, policy, keys), fetchByKeys(target, policy, keys)]);
      const sourceByKey = indexBy(policy, s);
      const targetByKey = indexBy(policy, t);
      for (const { key } of slice) {
        const id = formatKey(key);
        if (pending.has(id)) continue;
        const a = sourceByKey.get(id);
        const b = targetByKey.get(id);
        let now: Drift | undefined;
        if (a && !b) now = { kind: 'missing' };
        else if (!a && b) now = { kind: 'extra' };
        else if (a && b) {
          const columns = diffRows(policy, settings, a, b);
          if (columns.length > 0) now = { kind: 'mismatched', columns };
        }
        if (now) drift.set(id, { key, drift: now });
        else {
          drift.delete(id);
          if (a) matching++;
        }
      }
      options.onProgress?.({ phase: 'recheck', done: Math.min(i + chunkSize, entries.length), total: entries.length });
    }
  }

  const report: VerifyReport = {
    table: policy.name,
    sourceRows,
    targetRows,
    matching,
    mismatched: 0,
    missingInTarget: 0,
    extraInTarget: 0,
    chunks,
    chunksDiffering,
    samples: { mismatched: [], missingInTarget: [], extraInTarget: [] },
    rechecked,
    stillPending,
    durationMs: 0,
    rowsPerSecond: 0,
    clean: false,
    differingKeys: [],
  };
  for (const [id, { key, drift: d }] of drift) {
    report.differingKeys.push(key);
    if (d.kind === 'mismatched') {
      report.mismatched++;
      if (report.samples.mismatched.length < sampleLimit) report.samples.mismatched.push({ key: id, columns: d.columns });
    } else if (d.kind === 'missing') {
      report.missingInTarget++;
      if (report.samples.missingInTarget.length < sampleLimit) report.samples.missingInTarget.push(id);
    } else {
      report.extraInTarget++;
      if (report.samples.extraInTarget.length < sampleLimit) report.samples.extraInTarget.push(id);
    }
  }
  report.durationMs = Date.now() - started;
  report.rowsPerSecond = Math.round(((sourceRows + targetRows) * 1000) / Math.max(1, report.durationMs));
  report.clean = drift.size === 0;
  return report;
}

async function countRows(db: Knex, table: string): Promise<number> {
  const [row] = (await db(table).count({ n: '*' })) as Array<{ n: number | string }>;
  return Number(row?.n ?? 0);
}

async function fetchKeysOnly(store: Store, policy: Policy, keys: readonly KeyValues[]): Promise<KeyValues[]> {
  const rows = await fetchByKeys(store, policy, keys, { keysOnly: true });
  return rows.map((r) => policy.primaryKey.map((c) => r[c]));
}

function indexBy(policy: Policy, rows: readonly Row[]): Map<string, Row> {
  return new Map(rows.map((r) => [formatKey(policy.primaryKey.map((c) => r[c])), r]));
}

/** A row's compared columns as canonical text (the same normalisation as shadow reads). */
function canonicalRow(policy: Policy, settings: CompareSettings, row: Row, side: 'source' | 'target'): string {
  const parts: unknown[] = [];
  for (const column of policy.columns.values()) {
    if (column.targetName === null || settings.ignore.has(column.name)) continue;
    const kind = side === 'source' ? column.kind : (column.targetKind ?? column.kind);
    const other = side === 'source' ? column.targetKind : column.kind;
    const value = canonical(row[column.name], kind, other, settings, column.name);
    // Floats compare with a tolerance: hash them rounded so equal-enough values hash alike;
    // a chunk that still differs is diffed row by row with the real tolerance.
    parts.push(typeof value === 'number' ? Number(value.toPrecision(12)) : value);
  }
  return JSON.stringify(parts);
}

function chunkHash(rows: readonly string[]): string {
  const hash = createHash('sha256');
  for (const r of rows) hash.update(r).update('\n');
  return hash.digest('hex');
}

/** Which of these keys have pending outbox rows in the primary. */
async function pendingKeys(primary: Store, policy: Policy, rowKeys: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < rowKeys.length; i += 1000) {
    const rows = (await primary.knex(OUTBOX_TABLE)
      .distinct('row_key')
      .where({ tbl: policy.name, status: 'pending' })
      .whereIn('row_key', rowKeys.slice(i, i + 1000))) as Array<{ row_key: string }>;
    for (const r of rows) out.add(r.row_key);
  }
  return out;
}

export function keyFromRowKey(policy: Policy, rowKey: string): KeyValues {
  return parseKey(policy, rowKey, 'row_key');
}
