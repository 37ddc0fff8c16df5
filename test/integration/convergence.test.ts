/**
 * DESIGN §3 "consequences that tests must show": concurrent writers on the same keys, target
 * outages and retries end, once the outbox is drained, with map(source) == target, and every
 * acknowledged write answered without a primary error. A TCP fault proxy sits between Tandem
 * and the TARGET (the source is direct), and flaps while many clients write.
 */
import { performance } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, viaProxy, type Pair, type TestDatabase } from '../helpers/databases.js';
import { startFaultProxy, type FaultMode, type FaultProxy } from '../helpers/fault-proxy.js';
import { call, seededRandom, sleep, type CallResult } from '../helpers/http-client.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

interface Rig {
  source: TestDatabase;
  target: TestDatabase;
  /** Between Tandem and the target; absent for a SQLite target (no network). */
  proxy: FaultProxy | undefined;
  tandem: TandemHarness;
  base: string;
  close(): Promise<void>;
}

async function startRig(pair: Pair, label: string, overrides: Record<string, unknown> = {}): Promise<Rig> {
  const cleanups: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => console.warn(`cleanup failed: ${String(e)}`));
  };
  try {
    const source = await createTestDatabase(pair.source, `${label}src`);
    cleanups.push(() => source.drop());
    const target = await createTestDatabase(pair.target, `${label}tgt`);
    cleanups.push(() => target.drop());
    await createTestTables(source.knex, target.knex);
    let proxy: FaultProxy | undefined;
    if (pair.target !== 'sqlite') {
      const p = await startFaultProxy({ targetHost: target.host, targetPort: target.port });
      proxy = p;
      cleanups.push(() => p.close());
    }
    const tandem = await startTandem({
      source: source.url,
      target: proxy ? viaProxy(target, proxy.port) : target.url,
      policiesDir: writeTestPolicies(),
      listen: true,
      overrides,
    });
    cleanups.push(async () => {
      // Let Tandem's pools close cleanly before the proxy and the databases go.
      if (proxy && proxy.mode() !== 'pass') await proxy.set('pass').catch(() => undefined);
      await tandem.stop();
    });
    return { source, target, proxy, tandem, base: `http://127.0.0.1:${tandem.app.address().port}`, close };
  } catch (error) {
    await close();
    throw error;
  }
}

interface Recorded extends CallResult {
  op: string;
  table: 'kv' | 'people';
  key: number;
}

const KEYS = 20;
const CLIENTS = 16;
const LOAD_MS = 5_000;
const MAX_OPS_PER_CLIENT = 400;

/** Which statuses each operation may legitimately answer. */
const ALLOWED: Record<string, readonly number[]> = {
  put: [200, 201, 409],
  patch: [200, 404, 409],
  delete: [204, 404],
};

async function breakerState(base: string): Promise<string | undefined> {
  const res = await call(base, 'GET', '/admin/status');
  return (res.body as { stores?: { target?: { breaker?: string } } } | undefined)?.stores?.target?.breaker;
}

for (const pair of runnablePairs()) {
  const networked = pair.target !== 'sqlite';
  const title = networked
    ? `convergence while the target network fails (${pair.name})`
    : `convergence under concurrent load WITHOUT faults: a SQLite target has no network to fault (${pair.name})`;

  describe(title, () => {
    const rigs: Rig[] = [];
    afterAll(async () => {
      for (const rig of rigs) await rig.close();
    });

    it(`16 concurrent clients on overlapping keys${networked ? ' while the target flaps' : ''} converge once the outbox drains`, async () => {
      const rig = await startRig(pair, 'conv');
      rigs.push(rig);
      const { base, proxy } = rig;
      const seed = Number(process.env['TANDEM_TEST_SEED'] ?? Date.now() % 1_000_000);
      const records: Recorded[] = [];
      const deadline = performance.now() + LOAD_MS;
      let running = true;
      let counter = 0;

      const client = async (n: number) => {
        const random = seededRandom(seed * 100 + n);
        for (let i = 0; i < MAX_OPS_PER_CLIENT && performance.now() < deadline; i++) {
          const table = random() < 0.5 ? 'kv' : 'people';
          const key = 1 + Math.floor(random() * KEYS);
          const roll = random();
          const op = roll < 0.45 ? 'put' : roll < 0.75 ? 'patch' : 'delete';
          const v = ++counter;
          const path = table === 'kv' ? `/v1/tables/kv/rows/t,${key}` : `/v1/tables/people/rows/${key}`;
          let body: unknown;
          if (op === 'put') {
            body =
              table === 'kv'
                ? { values: { val: v, note: `c${n}-${v}` } }
                : { values: { email: `p${key}@x`, full_name: `name ${v}`, age: v % 100, active: v % 2 === 0, note: `c${n}`, legacy: `l${v % 7}` } };
          } else if (op === 'patch') {
            body = table === 'kv' ? { values: { val: v } } : { values: { full_name: `patched ${v}`, age: v % 90 } };
          }
          const res = await call(base, op === 'put' ? 'PUT' : op === 'patch' ? 'PATCH' : 'DELETE', path, body);
          records.push({ ...res, op, table, key });
        }
      };

      // Starts healthy, then cycles through every fault with a healthy spell between them.
      const modes: Array<[FaultMode, number?]> = [['pass'], ['refuse'], ['pass'], ['blackhole'], ['pass'], ['reset'], ['delay', 50]];
      const flaps: string[] = [];
      const flapper = async () => {
        if (!proxy) return;
        const random = seededRandom(seed + 7);
        for (let i = 0; running; i++) {
          const [mode, delayMs] = modes[i % modes.length] as [FaultMode, number?];
          await proxy.set(mode, delayMs === undefined ? undefined : { delayMs });
          flaps.push(mode);
          const dwell = 300 + Math.floor(random() * 400);
          const until = performance.now() + dwell;
          while (running && performance.now() < until) await sleep(20);
        }
      };

      const started = performance.now();
      const flapping = flapper();
      await Promise.all(Array.from({ length: CLIENTS }, (_, n) => client(n)));
      running = false;
      await flapping;
      await proxy?.set('pass');
      const loadMs = performance.now() - started;

      const drainStart = performance.now();
      let final = { pending: -1, dead: -1, done: -1 };
      await waitFor(
        async () => {
          final = await outboxCounts(rig.source.knex);
          return final.pending === 0;
        },
        { timeoutMs: 30_000, intervalMs: 50, what: 'the source outbox to have no pending rows' },
      );
      const drainMs = performance.now() - drainStart;

      const ok = records.filter((r) => r.status >= 200 && r.status < 300);
      const queued = ok.filter((r) => r.write === 'queued').length;
      const applied = ok.filter((r) => r.write === 'applied').length;
      const byStatus: Record<string, number> = {};
      for (const r of records) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
      console.log(
        `[convergence ${pair.name}] seed=${seed} ops=${records.length} in ${Math.round(loadMs)} ms; acknowledged=${ok.length} ` +
          `(applied=${applied}, queued=${queued}); statuses=${JSON.stringify(byStatus)}; proxy flaps=${flaps.length}; ` +
          `drain after faults ended=${Math.round(drainMs)} ms; outbox=${JSON.stringify(final)}`,
      );

      // The source is direct: no write may fail on the primary.
      const serverErrors = records.filter((r) => r.status >= 500 || r.status === 0);
      expect(serverErrors.map((r) => `${r.op} ${r.table}/${r.key} → ${r.status} ${JSON.stringify(r.body ?? r.error?.message)}`)).toEqual([]);
      const unexpected = records.filter((r) => !(ALLOWED[r.op] ?? []).includes(r.status));
      expect(unexpected.map((r) => `${r.op} ${r.table}/${r.key} → ${r.status} ${JSON.stringify(r.body)}`)).toEqual([]);
      expect(ok.length).toBeGreaterThan(100);
      expect(applied).toBeGreaterThan(0);
      if (networked) expect(queued, 'some writes must have been queued (proof the faults happened)').toBeGreaterThan(0);

      expect(final.dead).toBe(0);
      const state = await convergence(rig.source.knex, rig.target.knex);
      expect(state.kv.actual).toEqual(state.kv.expected);
      expect(state.people.actual).toEqual(state.people.expected);
      // The load really overlapped: at least some keys survive and some were deleted at some point.
      expect(records.some((r) => r.op === 'delete' && r.status === 204)).toBe(true);
    });

    if (!networked) return;

    it('target outage: writes are queued, the breaker opens, later writes pay no timeout, and a 2,000-row backlog drains', async () => {
      // The suite's fast settings (apply deadline 500 ms) with the production batch size (500 rows):
      // whatever the deadline, the worker must make progress on a backlog. A longer reset timeout
      // keeps the breaker open for the whole measured window.
      const rig = await startRig(pair, 'outage', { apply: { resetTimeoutMs: 3_000 }, outbox: { batchSize: 500 } });
      rigs.push(rig);
      const { base, tandem } = rig;
      const proxy = rig.proxy as FaultProxy;
      const breakerEvents: Array<{ at: number; state: string }> = [];
      tandem.app.events.on((e) => {
        if (e.type === 'breaker' && e.store === 'target') breakerEvents.push({ at: performance.now(), state: e.state });
      });

      // Warm up while healthy.
      const warm = await call(base, 'PUT', '/v1/tables/kv/rows/o,0', { values: { val: 0 } });
      expect(warm.status).toBe(201);
      expect(warm.write).toBe('applied');

      // 1. Target refuses connections: every write still succeeds on the primary, queued.
      await proxy.set('refuse');
      const refused: CallResult[] = [];
      for (let k = 1; k <= 20; k++) refused.push(await call(base, 'PUT', `/v1/tables/kv/rows/o,${k}`, { values: { val: k, note: 'refused' } }));
      expect(refused.map((r) => r.status)).toEqual(Array(20).fill(201));
      expect(refused.map((r) => r.write)).toEqual(Array(20).fill('queued'));

      // 2. The breaker opens (status and metric agree).
      await waitFor(async () => (await breakerState(base)) === 'open', { timeoutMs: 5_000, what: 'the target breaker to open' });
      const metrics = await call(base, 'GET', '/metrics');
      expect(String(metrics.body)).toMatch(/tandem_circuit_state\{store="target"\} 2/);

      // 3. Black hole: with the breaker open, no request waits for the dead network.
      await proxy.set('blackhole');
      const holed: CallResult[] = [];
      const windowStart = performance.now();
      for (let k = 21; k <= 40; k++) holed.push(await call(base, 'PUT', `/v1/tables/kv/rows/o,${k}`, { values: { val: k, note: 'blackhole' } }));
      const windowEnd = performance.now();
      const latencies = holed.map((r) => Math.round(r.ms * 10) / 10);
      const transitions = breakerEvents.filter((e) => e.at >= windowStart && e.at <= windowEnd).map((e) => e.state);
      console.log(
        `[outage ${pair.name}] refused writes: max ${Math.round(Math.max(...refused.map((r) => r.ms)))} ms; ` +
          `black-holed writes with the breaker open: max ${Math.max(...latencies)} ms, median ${[...latencies].sort((a, b) => a - b)[10]} ms ` +
          `(all: ${latencies.join(', ')}); breaker transitions during the window: ${JSON.stringify(transitions)}`,
      );
      expect(holed.map((r) => r.status)).toEqual(Array(20).fill(201));
      expect(holed.map((r) => r.write)).toEqual(Array(20).fill('queued'));
      expect(transitions).toEqual([]);
      for (const ms of latencies) expect(ms).toBeLessThan(400); // under the 500 ms apply deadline: nobody waited for it

      // 4. A backlog queued during the outage: 20 batches of 100 upserts on distinct keys.
      const BACKLOG = 2_000;
      const batchTimes: number[] = [];
      for (let b = 0; b < BACKLOG / 100; b++) {
        const ops = Array.from({ length: 100 }, (_, i) => ({
          op: 'upsert',
          table: 'kv',
          key: { tenant: 'bulk', k: b * 100 + i },
          values: { val: b * 100 + i, note: `b${b}` },
        }));
        const res = await call(base, 'POST', '/v1/batch', { ops });
        expect(res.status).toBe(200);
        expect(res.write).toBe('queued');
        batchTimes.push(res.ms);
      }
      const pendingBefore = (await outboxCounts(rig.source.knex)).pending;
      expect(pendingBefore).toBeGreaterThanOrEqual(BACKLOG + 40);

      // 5. Back to pass: the breaker closes on its own, the outbox drains, the target converges.
      const workerFailures: string[] = [];
      tandem.app.events.on((e) => {
        if (e.type === 'apply.failed' && e.path === 'worker') workerFailures.push(`${e.rows} rows: ${e.error.message}`);
      });
      const passAt = performance.now();
      await proxy.set('pass');
      let firstDrop: number | undefined;
      let pending = pendingBefore;
      let drained = true;
      try {
        await waitFor(
          async () => {
            pending = (await outboxCounts(rig.source.knex)).pending;
            if (firstDrop === undefined && pending < pendingBefore) firstDrop = performance.now();
            return pending === 0;
          },
          { timeoutMs: 15_000, intervalMs: 10, what: 'the outage backlog to drain' },
        );
      } catch {
        drained = false;
      }
      const zeroAt = performance.now();
      const closedAt = breakerEvents.find((e) => e.at >= passAt && e.state === 'closed')?.at;
      const opensAfterPass = breakerEvents.filter((e) => e.at >= passAt && e.state === 'open').length;
      const drainMs = zeroAt - (firstDrop ?? passAt);
      const rate = Math.round((pendingBefore - pending) / (drainMs / 1000));
      console.log(
        `[outage ${pair.name}] backlog=${pendingBefore} rows (batches of 100 answered in max ${Math.round(Math.max(...batchTimes))} ms); ` +
          `pass→breaker closed ${closedAt === undefined ? 'never' : `${Math.round(closedAt - passAt)} ms`}; ` +
          `first row drained ${firstDrop === undefined ? 'never' : `${Math.round(firstDrop - passAt)} ms after pass`}; ` +
          `${drained ? 'drained' : `NOT drained after ${Math.round(zeroAt - passAt)} ms (${pending} rows still pending)`}: ` +
          `${pendingBefore - pending} rows in ${Math.round(drainMs)} ms → ${rate} rows/s; total recovery ${Math.round(zeroAt - passAt)} ms; ` +
          `breaker re-opened ${opensAfterPass}× after pass; worker apply failures after pass: ${workerFailures.length}` +
          (workerFailures.length > 0 ? ` (first: ${workerFailures[0]})` : ''),
      );
      expect(drained, `the outbox still had ${pending} of ${pendingBefore} rows pending 15 s after the target came back`).toBe(true);

      const counts = await outboxCounts(rig.source.knex);
      expect(counts.dead).toBe(0);
      const state = await convergence(rig.source.knex, rig.target.knex);
      expect(state.kv.actual).toEqual(state.kv.expected);
      expect(state.kv.actual).toHaveLength(BACKLOG + 41);
      expect(state.people.actual).toEqual(state.people.expected);
      await waitFor(async () => (await breakerState(base)) === 'closed', { timeoutMs: 5_000, what: 'the breaker to be closed' });
    });

    it('relapse right after a recovery: the breaker opens again after a few failed writes', async () => {
      // Fast test settings: apply deadline 500 ms, reset 500 ms, volume threshold 3, window 5 s.
      const rig = await startRig(pair, 'relapse');
      rigs.push(rig);
      const { base, tandem } = rig;
      const proxy = rig.proxy as FaultProxy;
      const breakerEvents: string[] = [];
      tandem.app.events.on((e) => {
        if (e.type === 'breaker' && e.store === 'target') breakerEvents.push(e.state);
      });
      expect((await call(base, 'PUT', '/v1/tables/kv/rows/r,0', { values: { val: 0 } })).write).toBe('applied');

      // An outage long enough for the breaker to turn many writes away.
      await proxy.set('refuse');
      for (let k = 1; k <= 40; k++) expect((await call(base, 'PUT', `/v1/tables/kv/rows/r,${k}`, { values: { val: k } })).write).toBe('queued');
      expect(await breakerState(base)).not.toBe('closed');

      // Recovery: the breaker closes and the outbox drains.
      await proxy.set('pass');
      await waitFor(async () => (await breakerState(base)) === 'closed', { timeoutMs: 5_000, what: 'the breaker to close after recovery' });
      await waitFor(async () => (await outboxCounts(rig.source.knex)).pending === 0, { timeoutMs: 10_000, what: 'the outbox to drain' });
      for (let k = 41; k <= 43; k++) expect((await call(base, 'PUT', `/v1/tables/kv/rows/r,${k}`, { values: { val: k } })).write).toBe('applied');

      // Relapse: the target black-holes again. A few writes pay the apply deadline, then the
      // breaker must open so that the rest answer at once.
      await proxy.set('blackhole');
      const relapse: CallResult[] = [];
      for (let k = 44; k <= 53; k++) relapse.push(await call(base, 'PUT', `/v1/tables/kv/rows/r,${k}`, { values: { val: k } }));
      const latencies = relapse.map((r) => Math.round(r.ms));
      const slow = latencies.filter((ms) => ms >= 400).length;
      console.log(
        `[relapse ${pair.name}] write latencies after the target relapsed: ${latencies.join(', ')} ms; ` +
          `${slow} paid the apply deadline; breaker states: ${breakerEvents.join(' → ')}; now ${await breakerState(base)}`,
      );
      expect(relapse.map((r) => r.status)).toEqual(Array(10).fill(201));
      expect(relapse.map((r) => r.write)).toEqual(Array(10).fill('queued'));
      // apply.consecutiveFailures (5) bounds the waiting writes however many successes the
      // recovery left in the breaker's window (the worker's failures may open it sooner).
      // Once open, no request waits again: a half-open breaker's trial is the worker's.
      expect(slow, 'writes that waited for the black-holed target before the breaker re-opened').toBeLessThanOrEqual(5);
      const firstFast = latencies.findIndex((ms) => ms < 400);
      expect(firstFast, 'a write answered without waiting: the breaker re-opened').toBeGreaterThanOrEqual(0);
      expect(latencies.slice(firstFast).every((ms) => ms < 400), 'no write waited after the breaker re-opened').toBe(true);

      await proxy.set('pass');
      await waitFor(async () => (await outboxCounts(rig.source.knex)).pending === 0, { timeoutMs: 10_000, what: 'the outbox to drain after the relapse' });
      const state = await convergence(rig.source.knex, rig.target.knex);
      expect(state.kv.actual).toEqual(state.kv.expected);
    });
  });
}
