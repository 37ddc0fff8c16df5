/**
 * Issue 14 items 3 and 4: a TCP fault proxy between Tandem and the SOURCE (the primary)
 * black-holes it for 10 s while clients write, then restores it. In-flight requests must be
 * answered within the configured bound (503/504 with Retry-After), and replication must
 * resume by itself: writes after the source returns reach the target within a bounded time,
 * the breaker leaves half-open, and the outbox drains.
 */
import { performance } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, viaProxy, type TestDatabase } from '../helpers/databases.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { call, sleep, type CallResult } from '../helpers/http-client.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const BLACKHOLE_MS = 10_000;
/** The configured answer bound of a request (http.requestDeadlineMs). */
const REQUEST_DEADLINE_MS = 3_000;
/** How soon after the source returns a new write must be on the target. */
const RESUME_BOUND_MS = 15_000;

const networked = runnablePairs().filter((p) => p.source !== 'sqlite');
if (networked.length === 0) {
  describe.skip('source black-hole (needs a PostgreSQL or MariaDB source: faults need a network)', () => {
    it('runs when TANDEM_TEST_PG_URL / TANDEM_TEST_MYSQL_URL are set', () => undefined);
  });
}
for (const pair of networked) {
  describe(`source black-holed for 10 s, then restored (${pair.name})`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterAll(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => console.warn(`cleanup failed: ${String(e)}`));
    });

    it('requests are answered within the bound during the outage, and replication resumes by itself after it', async () => {
      const source: TestDatabase = await createTestDatabase(pair.source, 'srcoutsrc');
      cleanups.push(() => source.drop());
      const target: TestDatabase = await createTestDatabase(pair.target, 'srcouttgt');
      cleanups.push(() => target.drop());
      await createTestTables(source.knex, target.knex);
      const proxy: FaultProxy = await startFaultProxy({ targetHost: source.host, targetPort: source.port });
      cleanups.push(() => proxy.close());
      const tandem: TandemHarness = await startTandem({
        source: viaProxy(source, proxy.port),
        target: target.url,
        policiesDir: writeTestPolicies(),
        listen: true,
        overrides: { http: { requestDeadlineMs: REQUEST_DEADLINE_MS }, db: { statementTimeoutMs: 2_000 } },
      });
      cleanups.push(async () => {
        if (proxy.mode() !== 'pass') await proxy.set('pass').catch(() => undefined);
        await tandem.stop();
      });
      const base = `http://127.0.0.1:${tandem.app.address().port}`;

      // Healthy: writes apply inline.
      for (let k = 1; k <= 5; k++) {
        const res = await call(base, 'PUT', `/v1/tables/kv/rows/t,${k}`, { values: { val: k } });
        expect(res.status).toBe(201);
      }

      // Clients keep writing through the outage.
      let running = true;
      const during: CallResult[] = [];
      const writer = async (n: number) => {
        for (let i = 0; running; i++) {
          const res = await call(base, 'PUT', `/v1/tables/kv/rows/t,${100 + n * 1000 + i}`, { values: { val: i } }, 60_000);
          during.push(res);
          if (res.status !== 201) await sleep(100);
        }
      };
      const writers = Array.from({ length: 4 }, (_, n) => writer(n));
      await sleep(300);
      await proxy.set('blackhole');
      const outageStart = performance.now();
      await sleep(BLACKHOLE_MS);
      await proxy.set('pass');
      const restoredAt = performance.now();
      running = false;
      await Promise.all(writers);

      // Every request sent during the outage got an answer within the bound (plus scheduling slack).
      const inOutage = during.filter((r) => r.sentAt >= outageStart && r.sentAt < restoredAt - REQUEST_DEADLINE_MS);
      expect(inOutage.length).toBeGreaterThan(0);
      const slowest = Math.max(...inOutage.map((r) => r.ms));
      const failures = inOutage.filter((r) => r.status !== 201);
      expect(failures.length).toBeGreaterThan(0);
      for (const r of failures) expect([503, 504]).toContain(r.status);
      expect(slowest).toBeLessThan(REQUEST_DEADLINE_MS + 1_500);

      // After the source returns: a fresh write reaches the target within the bound.
      let marker: CallResult | undefined;
      const resumedAfter = await waitFor(
        async () => {
          marker ??= await call(base, 'PUT', '/v1/tables/kv/rows/t,999999', { values: { val: 42 } });
          if (marker.status !== 201 && marker.status !== 200) {
            marker = undefined;
            return false;
          }
          const row = await target.knex('kv').where({ tenant: 't', k: 999999 }).first();
          return row ? performance.now() - restoredAt : false;
        },
        { timeoutMs: RESUME_BOUND_MS, intervalMs: 100, what: 'a write after the source returned to reach the target' },
      );
      // And everything queued drains.
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { timeoutMs: RESUME_BOUND_MS, what: 'the outbox to drain' });
      const drainedAfter = performance.now() - restoredAt;
      const status = (await call(base, 'GET', '/admin/status')).body as { stores: { target: { breaker: string } } };
      expect(status.stores.target.breaker).toBe('closed');
      const state = await convergence(source.knex, target.knex);
      expect(state.kv.actual).toEqual(state.kv.expected);
      const statuses: Record<string, number> = {};
      for (const r of inOutage) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      console.log(
        `[source outage ${pair.name}] requests during the outage: ${inOutage.length} ${JSON.stringify(statuses)}, slowest answer ${Math.round(slowest)} ms ` +
          `(bound ${REQUEST_DEADLINE_MS} ms); a write reached the target ${Math.round(Number(resumedAfter))} ms after the source returned; outbox drained after ${Math.round(drainedAfter)} ms`,
      );
    });
  });
}

/**
 * Issue 14 item 3: a worker that makes no progress is reported (status, metric, readiness
 * body). The statement deadline is set long (31 s) so the worker's claim hangs on the
 * black-holed source the way any stuck call would; the stall threshold is 2 s.
 */
const [stallPair] = networked;
if (stallPair) {
  describe(`a stuck outbox worker is reported (${stallPair.name})`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterAll(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => console.warn(`cleanup failed: ${String(e)}`));
    });

    it('status, /metrics and /readyz say the worker is stalled while it is stuck, and clear once it moves again', async () => {
      const source = await createTestDatabase(stallPair.source, 'stallsrc');
      cleanups.push(() => source.drop());
      const target = await createTestDatabase(stallPair.target, 'stalltgt');
      cleanups.push(() => target.drop());
      await createTestTables(source.knex, target.knex);
      const proxy = await startFaultProxy({ targetHost: source.host, targetPort: source.port });
      cleanups.push(() => proxy.close());
      const tandem = await startTandem({
        source: viaProxy(source, proxy.port),
        target: target.url,
        policiesDir: writeTestPolicies(),
        listen: true,
        overrides: { http: { requestDeadlineMs: REQUEST_DEADLINE_MS }, db: { statementTimeoutMs: 30_000 }, outbox: { stallAfterMs: 2_000 } },
      });
      cleanups.push(async () => {
        if (proxy.mode() !== 'pass') await proxy.set('pass').catch(() => undefined);
        await tandem.stop();
      });
      const base = `http://127.0.0.1:${tandem.app.address().port}`;
      type Status = { worker: { stalled: boolean; reason: string | null } };
      const worker = async () => ((await call(base, 'GET', '/admin/status', undefined, 10_000)).body as Status).worker;
      expect((await call(base, 'PUT', '/v1/tables/kv/rows/t,1', { values: { val: 1 } })).status).toBe(201);
      expect((await worker()).stalled).toBe(false);
      expect((await call(base, 'GET', '/metrics')).body).toMatch(/^tandem_outbox_worker_stalled 0$/m);

      await proxy.set('blackhole');
      const stuckAt = performance.now();
      const seen = await waitFor(async () => {
        const w = await worker();
        return w.stalled ? w : false;
      }, { timeoutMs: 10_000, intervalMs: 200, what: 'status to report the stalled worker' });
      const reportedAfter = performance.now() - stuckAt;
      expect((seen as Status['worker']).reason).toMatch(/no claim round finished/);
      expect((await call(base, 'GET', '/metrics')).body).toMatch(/^tandem_outbox_worker_stalled 1$/m);
      const ready = await call(base, 'GET', '/readyz', undefined, 10_000);
      expect(ready.status).toBe(503); // the primary does not answer
      expect((ready.body as { worker: string }).worker).toMatch(/^stalled/);

      await proxy.set('pass');
      const restoredAt = performance.now();
      await waitFor(async () => !(await worker()).stalled, { timeoutMs: 10_000, intervalMs: 100, what: 'the stall to clear' });
      const clearedAfter = performance.now() - restoredAt;
      console.log(`[worker stall ${stallPair.name}] reported ${Math.round(reportedAfter)} ms after the worker got stuck (threshold 2000 ms); cleared ${Math.round(clearedAfter)} ms after the source returned`);
      expect(reportedAfter).toBeLessThan(6_000);
    });
  });
}
