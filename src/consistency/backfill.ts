import type { Knex } from 'knex';
import { APPLIED_TABLE, BACKFILL_TABLE } from '../db/internal-tables.js';
import { inSlices, keysetPage } from '../db/key-queries.js';
import { keyText } from '../db/key-text.js';
import type { Store } from '../db/store.js';
import { readAllStates } from '../db/table-state.js';
import { TandemError } from '../errors.js';
import { throughImage } from '../outbox/image-codec.js';
import type { Policy } from '../policy/policy.js';
import { formatKey, parseKey } from '../policy/row-key.js';
import { secondaryRow, tableRoute } from '../policy/table-route.js';
import type { KeyValues, Row } from '../shared/row.js';
import { ledgerKey } from '../db/ledger-key.js';

export interface BackfillProgress {
  copied: number;
  skipped: number;
  total: number;
  rowsPerSecond: number;
  etaSeconds: number | null;
}

export interface BackfillOptions {
  chunkSize?: number;
  /** Average rows per second at most (0: unthrottled). */
  rate?: number;
  /** Forget the checkpoint and start from the first key. */
  restart?: boolean;
  onProgress?: (progress: BackfillProgress) => void;
  /** Checked between chunks; true stops the backfill (the checkpoint stays). */
  shouldStop?: () => boolean;
}

export interface BackfillReport {
  table: string;
  copied: number;
  skipped: number;
  total: number;
  resumedFrom: string | null;
  durationMs: number;
  rowsPerSecond: number;
  finished: boolean;
}

/**
 * Copies the source's existing rows to the target in key order (DESIGN §6). Per chunk, in
 * one target transaction, it claims the keys the applied ledger has never seen (insert-if-
 * absent, marked with this run's id) and inserts only those rows — so it never overwrites a
 * live write, and a key a live write reaches later gets that newer version on top (the
 * backfill's version (0, 0) is older than any outbox row). The checkpoint is written after
 * the chunk commits; a killed backfill re-reads at most that chunk and skips its keys.
 */
export async function backfillTable(source: Store, target: Store, policy: Policy, options: BackfillOptions = {}): Promise<BackfillReport> {
  const states = await readAllStates(source.knex);
  const state = states.find((s) => s.table === policy.name);
  if (!state?.dualWrite) {
    throw new TandemError('bad_request', 409, `table ${policy.name}: backfill needs dual-write on (turn on tandem.${policy.name}.dual-write first)`);
  }
  const chunkSize = options.chunkSize ?? 1000;
  const started = Date.now();
  const now = Date.now();
  if (options.restart) await source.knex(BACKFILL_TABLE).where({ tbl: policy.name }).del();
  const existing = (await source.knex(BACKFILL_TABLE).where({ tbl: policy.name }).first()) as
    | { last_key: string | null; copied: number | string; skipped: number | string; run_id: number | string; finished_at: number | string | null }
    | undefined;
  const runId = existing && existing.finished_at === null ? Number(existing.run_id) : now;
  if (!existing || existing.finished_at !== null) {
    await source.knex(BACKFILL_TABLE).where({ tbl: policy.name }).del();
    await source.knex(BACKFILL_TABLE).insert({ tbl: policy.name, last_key: null, copied: 0, skipped: 0, run_id: runId, started_at: now, updated_at: now, finished_at: null });
  }
  const resumedFrom = existing && existing.finished_at === null ? existing.last_key : null;
  let after: KeyValues | undefined = resumedFrom ? parseKey(policy, resumedFrom, 'checkpoint') : undefined;
  let copied = existing && existing.finished_at === null ? Number(existing.copied) : 0;
  let skipped = existing && existing.finished_at === null ? Number(existing.skipped) : 0;
  const [countRow] = (await source.knex(policy.sourceTable).count({ n: '*' })) as Array<{ n: number | string }>;
  const total = Number(countRow?.n ?? 0);
  const marker = -runId; // applied_at of ledger rows this run created: tells them apart from others
  const atStart = copied + skipped; // rates count this run's rows only, not a resumed run's

  // The next source page is read while the current one is copied (the read does not depend
  // on the copy: its start key is the current page's last key).
  const readPage = (from: KeyValues | undefined) => prefetch(keysetPage(source, policy.sourceTable, policy.primaryKey, from, chunkSize) as Promise<Row[]>);
  let page = readPage(after);
  for (;;) {
    if (options.shouldStop?.()) return report(false);
    const chunkStarted = Date.now();
    const rows = await page;
    if (rows.length === 0) break;
    const last = rows[rows.length - 1] as Row;
    after = policy.primaryKey.map((c) => last[c]);
    if (rows.length >= chunkSize) page = readPage(after);
    const inserted = await copyChunk(target, policy, rows, marker);
    copied += inserted;
    skipped += rows.length - inserted;
    await source.knex(BACKFILL_TABLE)
      .where({ tbl: policy.name })
      .update({ last_key: formatKey(after), copied, skipped, updated_at: Date.now() });
    if (options.rate && options.rate > 0) {
      const minMs = (rows.length * 1000) / options.rate;
      const spent = Date.now() - chunkStarted;
      if (spent < minMs) await new Promise((r) => setTimeout(r, minMs - spent));
    }
    // After the throttle's pause, so a throttled run reports the rate it keeps, not its bursts.
    const elapsed = Math.max(1, Date.now() - started);
    const rate = ((copied + skipped - atStart) * 1000) / elapsed;
    options.onProgress?.({
      copied,
      skipped,
      total,
      rowsPerSecond: Math.round(rate),
      etaSeconds: rate > 0 ? Math.max(0, Math.round((total - copied - skipped) / rate)) : null,
    });
    if (rows.length < chunkSize) break;
  }
  await source.knex(BACKFILL_TABLE).where({ tbl: policy.name }).update({ finished_at: Date.now(), updated_at: Date.now() });
  return report(true);

  function report(finished: boolean): BackfillReport {
    const durationMs = Date.now() - started;
    return {
      table: policy.name,
      copied,
      skipped,
      total,
      resumedFrom,
      durationMs,
      rowsPerSecond: Math.round(((copied + skipped - atStart) * 1000) / Math.max(1, durationMs)),
      finished,
    };
  }
}

/** A page read ahead: if the backfill stops or fails before awaiting it, its rejection is not unhandled. */
function prefetch<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** Claims never-seen keys in the ledger and inserts their rows, in one target transaction. */
async function copyChunk(target: Store, policy: Policy, rows: readonly Row[], marker: number): Promise<number> {
  // By the key's form in the ledger (a long key is its digest there).
  const byKey = new Map(rows.map((r) => [ledgerKey(formatKey(policy.primaryKey.map((c) => r[c]))), r]));
  const rowKeys = [...byKey.keys()];
  // Replication sessions: a child row may be copied before its parent (foreign-key checks off).
  return target.replica.transaction(async (trx) => {
    const ledger = rowKeys.map((k) => ({ tbl: policy.name, row_key: k, epoch: 0, seq: 0, applied_at: marker }));
    for (let i = 0; i < ledger.length; i += 500) await target.adapter.claimAbsent(trx, ledger.slice(i, i + 500));
    // Ours: the ledger rows carrying this run's marker and still at version (0, 0).
    const claimed: string[] = [];
    for (let i = 0; i < rowKeys.length; i += 1000) {
      const q = target.adapter.forUpdate(
        trx(APPLIED_TABLE).select('row_key').where({ tbl: policy.name, epoch: 0, seq: 0, applied_at: marker }).whereIn('row_key', rowKeys.slice(i, i + 1000)),
      );
      claimed.push(...((await q) as Array<{ row_key: string }>).map((r) => r.row_key));
    }
    if (claimed.length === 0) return 0;
    // Claimed keys hold version (0, 0), older than any outbox row, and are locked: write their
    // rows whatever the target holds (a stale pre-Tandem copy, or this run's killed attempt).
    // Count as copied only the keys that were absent, so a resumed run copies no row twice.
    const route = tableRoute(policy, 'source');
    // The same path as an outbox image: through its encoding, map, bind for the target's engine.
    const targetRows = claimed.map((k) => secondaryRow(target, route, throughImage(byKey.get(k) as Row)));
    const present = await existingTargetKeys(trx, policy, targetRows);
    for (let i = 0; i < targetRows.length; i += 200) await target.adapter.upsertRows(trx, route.secondary, targetRows.slice(i, i + 200));
    return targetRows.filter((r) => !present.has(targetKeyOf(policy, r))).length;
  });
}

function targetKeyOf(policy: Policy, row: Row): string {
  return policy.targetPrimaryKey.map((c) => keyText(row[c])).join('\u0000');
}

async function existingTargetKeys(trx: Knex.Transaction, policy: Policy, rows: readonly Row[]): Promise<Set<string>> {
  const cols = policy.targetPrimaryKey;
  const found: Row[] = [];
  if (cols.length === 1) {
    const col = cols[0] as string;
    for (const slice of inSlices(rows, 1000)) {
      found.push(...((await trx(policy.targetTable).select(col).whereIn(col, slice.map((r) => r[col] as Knex.Value))) as Row[]));
    }
  } else {
    for (const slice of inSlices(rows)) {
      found.push(...((await trx(policy.targetTable).select([...cols]).where((w) => {
        for (const r of slice) {
          w.orWhere((one) => {
            for (const c of cols) one.andWhere(c, r[c] as Knex.Value);
          });
        }
      })) as Row[]));
    }
  }
  return new Set(found.map((r) => targetKeyOf(policy, r)));
}
