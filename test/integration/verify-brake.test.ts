import { afterAll, beforeAll, expect, it } from 'vitest';
import { PAIRS, runnablePairs, viaProxy, type TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { convergence, createTestTables, PEOPLE_POLICY } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

describeEachPair('verify and repair', { label: 'vf' }, (suite) => {
    const { pair } = suite;
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;

    beforeAll(async () => {
      ({ source, target, tandem } = suite);
      const ops = Array.from({ length: 300 }, (_, i) => ({
        op: 'insert',
        table: 'people',
        values: { id: i + 1, email: `v${i + 1}@x.test`, full_name: `V ${i + 1}`, age: i % 90, active: i % 2 === 0, legacy: 'l' },
      }));
      await tandem.request.post('/v1/batch').send({ ops }).expect(200);
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'drain' });
    });

    const verify = async (repair = false) => (await tandem.request.post('/admin/tables/people/verify').send({ repair }).expect(200)).body;

    it('reports nothing on identical data', async () => {
      const report = await verify();
      expect(report).toMatchObject({ clean: true, matching: 300, mismatched: 0, missingInTarget: 0, extraInTarget: 0, sourceRows: 300, targetRows: 300 });
    });

    it('finds planted drift of each kind with sample keys and columns; --repair then verify is clean', async () => {
      await target.knex('app_people').where({ id: 7 }).del(); // missing in target
      await target.knex('app_people').insert({ id: 5000, email: 'extra@x.test', name: 'Extra' }); // extra in target
      await target.knex('app_people').where({ id: 42 }).update({ name: 'Changed' }); // changed column
      await target.knex('app_people').where({ id: 43 }).update({ age: 99, active: pair.target === 'pg' ? false : 0 });
      const report = await verify();
      expect(report).toMatchObject({ clean: false, mismatched: 2, missingInTarget: 1, extraInTarget: 1, matching: 297 });
      expect(report.samples.missingInTarget).toEqual(['7']);
      expect(report.samples.extraInTarget).toEqual(['5000']);
      expect(report.samples.mismatched).toEqual(
        expect.arrayContaining([{ key: '42', columns: ['full_name'] }, { key: '43', columns: expect.arrayContaining(['age']) }]),
      );
      const metrics = (await tandem.request.get('/metrics').expect(200)).text;
      expect(metrics).toMatch(/tandem_verify_drift_rows\{table="people"\} 4/);
      expect(metrics).toMatch(/tandem_verify_rows_total\{table="people",result="missing"\} 1/);

      const repaired = await verify(true);
      expect(repaired.repaired).toBe(4);
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'repairs applied' });
      const after = await verify();
      expect(after).toMatchObject({ clean: true, mismatched: 0, missingInTarget: 0, extraInTarget: 0 });
      const state = await convergence(source.knex, target.knex);
      expect(state.people.actual).toEqual(state.people.expected);
      const status = (await tandem.request.get('/admin/status').expect(200)).body.tables.find((t: { table: string }) => t.table === 'people');
      expect(status.lastVerify).toMatchObject({ clean: true });
    });
});

// One pair is enough for the big table: PostgreSQL → MariaDB when it runs here, else the first that does.
const big = runnablePairs().find((p) => p.name === 'postgres→mariadb') ?? runnablePairs()[0] ?? PAIRS[0];
const ROWS = 100_000;
describeEachPair(
  'verify of a 100,000-row table',
  {
    pairs: big ? [big] : [],
    label: 'v100',
    setupTimeoutMs: 180_000,
    schema: async (source, target, pair) => {
      await createTestTables(source.knex, target.knex);
      for (let i = 0; i < ROWS; i += 2000) {
        const rows = Array.from({ length: Math.min(2000, ROWS - i) }, (_, j) => {
          const id = i + j + 1;
          return { id, email: `r${id}@x.test`, full_name: `Row ${id}`, age: id % 100, active: id % 3 === 0, note: `n${id}` };
        });
        // SQLite allows at most 500 terms in one compound SELECT (knex's multi-row insert).
        const per = pair.source === 'sqlite' || pair.target === 'sqlite' ? 400 : 1000;
        await source.knex.batchInsert('people', rows.map((r) => ({ ...r, legacy: 'x' })), per);
        await target.knex.batchInsert('app_people', rows.map(({ full_name, ...r }) => ({ ...r, name: full_name })), per);
      }
    },
  },
  (suite) => {
    const { pair: big } = suite;
    let tandem: TandemHarness;
    beforeAll(() => ({ tandem } = suite));

    it('compares 2 × 100,000 rows and reports its speed', async () => {
      const report = (await tandem.request.post('/admin/tables/people/verify').send({}).expect(200)).body;
      console.log(`[verify ${big.name}] ${report.sourceRows} + ${report.targetRows} rows in ${report.durationMs} ms → ${report.rowsPerSecond} rows/s (${report.chunks} chunks)`);
      expect(report).toMatchObject({ clean: true, matching: ROWS, sourceRows: ROWS, targetRows: ROWS });
      // The table was non-empty when dual-write began: stale until this clean verify.
      const status = (await tandem.request.get('/admin/status').expect(200)).body.tables.find((t: { table: string }) => t.table === 'people');
      expect(status.stale).toBe(false);
    });
  },
);

// The brake and read-your-writes need a target behind a fault proxy (a networked target).
const networked = runnablePairs().find((p) => p.target !== 'sqlite') ?? PAIRS.find((p) => p.target !== 'sqlite');
const BRAKE_POLICY = `${PEOPLE_POLICY}safety: { maxTargetErrorRate: 0.1, minConsistency: 0.99, maxLagSeconds: 1, window: 60s, minSamples: 20 }
`;
const routed = (readTarget: number, shadow: number): Feature[] => [
  ...DUAL_WRITE_ALL,
  { name: 'tandem.people.read-target', enabled: readTarget > 0, strategies: [{ name: 'flexibleRollout', parameters: { rollout: String(readTarget), stickiness: 'default', groupId: 'p' } }] },
  { name: 'tandem.people.shadow-read', enabled: shadow > 0, strategies: [{ name: 'flexibleRollout', parameters: { rollout: String(shadow), stickiness: 'default', groupId: 's' } }] },
];

let brakeProxy: FaultProxy | undefined;
describeEachPair(
  'safety brake',
  {
    pairs: networked ? [networked] : [],
    label: 'br',
    policies: { 'people.yaml': BRAKE_POLICY },
    tandem: async ({ target, onCleanup }) => {
      const proxy = (brakeProxy = await startFaultProxy({ targetHost: target.host, targetPort: target.port }));
      onCleanup(() => proxy.close());
      return {
        target: viaProxy(target, proxy.port),
        flags: routed(100, 100),
        // A breaker that never opens, so every routed read reaches the failing target.
        overrides: { apply: { volumeThreshold: 100_000, consecutiveFailures: 100_000 } },
      };
    },
  },
  (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let proxy: FaultProxy;
    let tandem: TandemHarness;

    beforeAll(async () => {
      ({ source, target, tandem } = suite);
      if (!brakeProxy) throw new Error('the fault proxy did not start');
      proxy = brakeProxy;
      const ops = Array.from({ length: 60 }, (_, i) => ({ op: 'insert', table: 'people', values: { id: i + 1, email: `b${i + 1}@x.test`, full_name: `B ${i + 1}` } }));
      await tandem.request.post('/v1/batch').send({ ops }).expect(200);
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'drain' });
    });

    const status = async () => (await tandem.request.get('/admin/status').expect(200)).body.tables.find((t: { table: string }) => t.table === 'people');
    const read = async (id: number) => {
      const res = await tandem.request.get(`/v1/tables/people/rows/${id}`);
      expect(res.status).toBe(200);
      return res.headers['tandem-read'] as string;
    };
    const release = async () => {
      const res = await tandem.request.post('/admin/tables/people/brake/release').expect(200);
      expect(res.body.released).toBe(true);
    };

    it('trips on planted mismatches (consistency), moves reads to the source, and release restores routing', async () => {
      expect(await read(1)).toBe('target');
      for (let id = 1; id <= 30; id++) await target.knex('app_people').where({ id }).update({ name: `drift ${id}` });
      for (let id = 1; id <= 30 && !(await status()).brake.active; id++) await read(id);
      const s = await waitFor(async () => ((await status()).brake.active ? status() : undefined), { what: 'brake on consistency' });
      expect(s.brake).toMatchObject({ active: true, signal: 'consistency' });
      expect(s.brake.window.shadowSamples).toBeGreaterThanOrEqual(20);
      expect(await read(50)).toBe('source');
      const metrics = (await tandem.request.get('/metrics').expect(200)).text;
      expect(metrics).toMatch(/tandem_safety_brake_active\{table="people"\} 1/);
      expect(metrics).toMatch(/tandem_safety_brake_trips_total\{table="people",signal="consistency"\} 1/);
      // Repair the drift, then release: reads go back to the target.
      for (let id = 1; id <= 30; id++) await target.knex('app_people').where({ id }).update({ name: `B ${id}` });
      await release();
      expect(await read(50)).toBe('target');
    });

    it('never trips on too few samples, then trips on the target error rate', async () => {
      tandem.setFlags(routed(100, 0));
      await waitFor(async () => (await status()).shadowReadPercent === 0, { what: 'shadow off' });
      await proxy.set('refuse');
      try {
        for (let i = 0; i < 10; i++) expect(await read(1 + i)).toBe('source'); // fell back: 10 errors
        expect((await status()).brake.active).toBe(false); // 10 < minSamples 20
        for (let i = 0; i < 30 && !(await status()).brake.active; i++) await read(1 + i);
        const s = await status();
        expect(s.brake).toMatchObject({ active: true, signal: 'error_rate' });
        expect(s.brake.window.targetOps).toBeGreaterThanOrEqual(20);
      } finally {
        await proxy.set('pass');
      }
      expect(await read(2)).toBe('source'); // braked, though the target is back
      await release();
      await waitFor(async () => (await read(2)) === 'target', { what: 'routing restored' });
    });

    it('trips on replication lag while the target is down', async () => {
      await proxy.set('refuse');
      try {
        await tandem.request.patch('/v1/tables/people/rows/3').send({ values: { age: 1 } }).expect(200);
        const s = await waitFor(async () => ((await status()).brake.active ? status() : undefined), { what: 'brake on lag', timeoutMs: 10_000 });
        expect(s.brake).toMatchObject({ active: true, signal: 'lag' });
        expect(s.brake.value).toBeGreaterThan(1);
        expect(await read(4)).toBe('source');
      } finally {
        await proxy.set('pass');
      }
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'drain after outage' });
      await release();
      await waitFor(async () => (await read(4)) === 'target', { what: 'routing restored' });
    });
  },
);

describeEachPair('read-your-writes across replicas', { pairs: networked ? [networked] : [], label: 'ryo', tandem: false }, (suite) => {
    let source: TestDatabase;
    let proxy: FaultProxy;
    let a: TandemHarness;
    let b: TandemHarness;

    beforeAll(async () => {
      const { target, policiesDir } = suite;
      source = suite.source;
      proxy = await startFaultProxy({ targetHost: target.host, targetPort: target.port });
      // Replica A reaches the target through the proxy; replica B directly.
      a = await startTandem({ source: source.url, target: viaProxy(target, proxy.port), policiesDir, flags: routed(100, 0) });
      b = await startTandem({ source: source.url, target: target.url, policiesDir, flags: routed(100, 0) });
    });

    afterAll(async () => {
      await a?.stop();
      await b?.stop();
      await proxy?.close();
    });

    it('a key written through one replica while its target was down reads from the target again once another replica applied it', async () => {
      await a.request.put('/v1/tables/people/rows/1').send({ values: { email: 'r@x.test', full_name: 'before' } }).expect(201);
      expect((await a.request.get('/v1/tables/people/rows/1').expect(200)).headers['tandem-read']).toBe('target');
      await proxy.set('refuse');
      const queued = await a.request.patch('/v1/tables/people/rows/1').send({ values: { full_name: 'after' } }).expect(200);
      expect(queued.headers['tandem-write']).toBe('queued');
      // A knows the key is pending: it reads it from the source (read-your-writes).
      const own = await a.request.get('/v1/tables/people/rows/1').expect(200);
      expect(own.headers['tandem-read']).toBe('source');
      expect(own.body.row.full_name).toBe('after');
      // B's worker applies the row; A's own worker never sees it again.
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'replica B to apply the row' });
      await proxy.set('pass');
      const read = await waitFor(async () => {
        const res = await a.request.get('/v1/tables/people/rows/1').expect(200);
        return res.headers['tandem-read'] === 'target' ? res : undefined;
      }, { what: 'replica A to forget the applied key and read it from the target', timeoutMs: 10_000 });
      expect(read?.body.row.full_name).toBe('after');
    });
});
