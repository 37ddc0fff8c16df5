/**
 * The freeze as a client sees it: a steady open-loop write load (fixed rate, not closed
 * loop) while the primary moves to the target and back. Prints p50/p99 write latency
 * before, during each switch, and the rollback time (flag flip → first write acknowledged
 * by the source); asserts every write is acknowledged (no 5xx at all at this rate: the
 * freeze is far shorter than cutover.holdMs) and present in both stores afterwards.
 */
import { performance } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type Pair, type TestDatabase } from '../helpers/databases.js';
import { call, sleep, type CallResult } from '../helpers/http-client.js';
import { createTestTables, snapshot, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

// Tandem runs in this process beside the load generator, on 2 shared cores: a rate it sustains.
const RATE = 30;
const CUTOVER: Feature[] = [...DUAL_WRITE_ALL, { name: 'tandem.kv.target-primary', enabled: true, strategies: [{ name: 'default' }] }];

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function kvPrimary(base: string): Promise<string | null> {
  const res = await call(base, 'GET', '/admin/status');
  if (res.status !== 200) throw new Error(`status answered ${res.status}: ${String(res.error?.message ?? JSON.stringify(res.body))}`);
  const kv = (res.body as { tables: Array<{ table: string; primary: string | null; switch: unknown }> }).tables.find((t) => t.table === 'kv');
  return kv && kv.switch === null ? kv.primary : null;
}

const pairs = runnablePairs();

describe.each(pairs)('switch latency at a steady write rate ($name)', (pair: Pair) => {
  let source: TestDatabase | undefined;
  let target: TestDatabase | undefined;
  let tandem: TandemHarness | undefined;
  afterAll(async () => {
    await tandem?.stop();
    await source?.drop();
    await target?.drop();
  });

  it(`acknowledges every write at ${RATE}/s through a cutover and a rollback`, async () => {
    source = await createTestDatabase(pair.source, 'latsrc');
    target = await createTestDatabase(pair.target, 'lattgt');
    await createTestTables(source.knex, target.knex);
    tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies(), flags: DUAL_WRITE_ALL, listen: true });
    const base = `http://127.0.0.1:${tandem.app.address().port}`;

    const results: CallResult[] = [];
    const inflight: Array<Promise<void>> = [];
    let n = 0;
    let sending = true;
    const startAt = performance.now();
    const sender = (async () => {
      while (sending) {
        const due = startAt + (n * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        const key = n++;
        inflight.push(call(base, 'PUT', `/v1/tables/kv/rows/lat,${key}`, { values: { val: key } }).then((r) => void results.push(r)));
      }
    })();

    await sleep(2_000);
    const forwardAt = performance.now();
    tandem.setFlags(CUTOVER);
    await waitFor(async () => (await kvPrimary(base)) === 'target', { timeoutMs: 20_000, intervalMs: 20, what: 'cutover' });
    const forwardDone = performance.now();
    await sleep(2_000);
    const backAt = performance.now();
    tandem.setFlags(DUAL_WRITE_ALL);
    await waitFor(async () => (await kvPrimary(base)) === 'source', { timeoutMs: 20_000, intervalMs: 20, what: 'rollback' });
    const backDone = performance.now();
    await sleep(1_000);
    sending = false;
    await sender;
    await Promise.all(inflight);

    expect(results.filter((r) => r.status !== 201).map((r) => `${r.status} ${JSON.stringify(r.body)}`)).toEqual([]);
    expect(results).toHaveLength(n);
    await waitFor(async () => (await outboxCounts(source!.knex)).pending === 0 && (await outboxCounts(target!.knex)).pending === 0, { what: 'drained' });
    const rows = await snapshot(source.knex, 'kv', ['tenant', 'k']);
    expect(rows).toHaveLength(n);
    expect(await snapshot(target.knex, 'kv', ['tenant', 'k'])).toEqual(rows);

    const window = (from: number, to: number) => results.filter((r) => r.sentAt >= from && r.sentAt <= to).map((r) => r.ms);
    const steady = window(startAt + 500, forwardAt);
    // A write sent just before the flip can be the one that waits longest: count from 200 ms before.
    const forward = window(forwardAt - 200, forwardDone);
    const back = window(backAt - 200, backDone);
    const firstSource = results.filter((r) => r.primary === 'source' && r.sentAt >= backAt).sort((a, b) => a.doneAt - b.doneAt)[0];
    const fmt = (v: number[]) => `p50 ${percentile(v, 50).toFixed(1)} / p99 ${percentile(v, 99).toFixed(1)} / max ${Math.max(...v).toFixed(1)} ms (n=${v.length})`;
    console.log(
      `[switch latency ${pair.name}] ${RATE} writes/s: steady ${fmt(steady)}; during cutover ${fmt(forward)}, flip→done ${(forwardDone - forwardAt).toFixed(0)} ms; ` +
        `during rollback ${fmt(back)}, flip→done ${(backDone - backAt).toFixed(0)} ms; rollback flip→first source ack ${firstSource ? (firstSource.doneAt - backAt).toFixed(0) : 'none'} ms`,
    );
    expect(firstSource).toBeDefined();
  }, 90_000);
});

if (pairs.length === 0) {
  it.skip('switch latency: no database pair runnable here', () => undefined);
}
