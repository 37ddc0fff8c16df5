import type { Knex } from 'knex';
import { OUTBOX_TABLE } from '../db/internal-tables.js';
import { keysetPage } from '../db/key-queries.js';
import type { Store } from '../db/store.js';
import { mapBackward } from '../policy/mapping.js';
import { compareSettings, diffRows } from '../policy/normalize.js';
import type { Policy } from '../policy/policy.js';
import { fetchByKeys } from '../policy/fetch-by-keys.js';
import { formatKey, shownKey } from '../policy/row-key.js';
import type { KeyValues, Row } from '../shared/row.js';
import type { VerifyReport } from '../shared/verify-report.js';

export type { VerifyReport } from '../shared/verify-report.js';

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


type Drift = { kind: 'mismatched'; columns: string[] } | { kind: 'missing' } | { kind: 'extra' };

/**
 * Compares map(source) with the target (DESIGN §6): the source in key order, chunk by
 * chunk, against the same keys in the target, row by row — identical driver values match at
 * once, others are compared canonically (the shadow-read normalisation) — then the target's
 * keys against the source for extra rows. DESIGN §6 hashes each chunk's canonical rows
 * first; both sides' rows are in this process anyway, so comparing them directly finds the
 * same drift without canonicalising every value (verify's profile). Keys that
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

  // Pass 1: every source row against the target row of the same key. Pass 2: target keys
  // the source does not have. The passes run side by side, and each fetches its next page
  // while it compares the current one.
  const pass1 = async () => {
    let seen = 0;
    // A page of source rows with the target rows of its keys on the way: the next page and
    // its target rows are fetched while this one is compared.
    const fetchPage = (after: KeyValues | undefined): Promise<SourcePage> =>
      prefetch(
        keysetPage(source, policy.sourceTable, policy.primaryKey, after, chunkSize).then((rows) => {
          const keys = rows.map((r) => policy.primaryKey.map((c) => r[c]));
          const more = rows.length >= chunkSize;
          const next: Promise<SourcePage> | undefined = more ? fetchPage(keys[keys.length - 1]) : undefined;
          const targetRows = prefetch(rows.length > 0 ? fetchByKeys(target, policy, keys) : Promise.resolve([]));
          return { rows, keys, next, targetRows };
        }),
      );
    let page: Promise<SourcePage> | undefined = fetchPage(undefined);
    while (page) {
      const current: SourcePage = await page;
      const { rows, keys, targetRows } = current;
      page = current.next;
      if (rows.length === 0) break;
      chunks++;
      const targetByKey = indexBy(policy, await targetRows);
      let differs = false;
      rows.forEach((row, i) => {
        const key = keys[i] as KeyValues;
        const id = formatKey(key);
        const other = targetByKey.get(id);
        if (!other) {
          drift.set(id, { key, drift: { kind: 'missing' } });
          differs = true;
        } else {
          const columns = diffRows(policy, settings, row, other);
          if (columns.length === 0) matching++;
          else {
            drift.set(id, { key, drift: { kind: 'mismatched', columns } });
            differs = true;
          }
        }
      });
      if (differs) chunksDiffering++;
      seen += rows.length;
      options.onProgress?.({ phase: 'source', done: seen, total: sourceRows });
    }
  };
  const pass2 = async () => {
    let seen = 0;
    const targetPage = (after: KeyValues | undefined) =>
      keysetPage(target, policy.targetTable, policy.targetPrimaryKey, after, chunkSize, policy.targetPrimaryKey);
    let page = targetPage(undefined);
    for (;;) {
      const rows = await page;
      if (rows.length === 0) break;
      const more = rows.length >= chunkSize;
      if (more) page = prefetch(targetPage(policy.targetPrimaryKey.map((c) => rows[rows.length - 1]?.[c])));
      const keys = rows.map((r) => {
        const back = mapBackward(policy, r);
        return policy.primaryKey.map((c) => back[c]);
      });
      const present = new Set((await fetchKeysOnly(source, policy, keys)).map((k) => formatKey(k)));
      for (const key of keys) if (!present.has(formatKey(key))) drift.set(formatKey(key), { key, drift: { kind: 'extra' } });
      seen += rows.length;
      options.onProgress?.({ phase: 'target', done: seen, total: targetRows });
      if (!more) break;
    }
  };
  await Promise.all([pass1(), pass2()]);

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
      if (report.samples.mismatched.length < sampleLimit) report.samples.mismatched.push({ key: shownKey(policy, id), columns: d.columns });
    } else if (d.kind === 'missing') {
      report.missingInTarget++;
      if (report.samples.missingInTarget.length < sampleLimit) report.samples.missingInTarget.push(shownKey(policy, id));
    } else {
      report.extraInTarget++;
      if (report.samples.extraInTarget.length < sampleLimit) report.samples.extraInTarget.push(shownKey(policy, id));
    }
  }
  report.durationMs = Date.now() - started;
  report.rowsPerSecond = Math.round(((sourceRows + targetRows) * 1000) / Math.max(1, report.durationMs));
  report.clean = drift.size === 0;
  return report;
}

/** One page of pass 1: source rows, their keys, the target rows of those keys (in flight), the next page (in flight). */
interface SourcePage {
  rows: Row[];
  keys: KeyValues[];
  next: Promise<SourcePage> | undefined;
  targetRows: Promise<Row[]>;
}

/** A page fetched ahead: if the pass fails before awaiting it, its rejection is not unhandled. */
function prefetch<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
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
