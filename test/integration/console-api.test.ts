import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

/**
 * The admin endpoints behind the console, over HTTP against the real app (SQLite): tokens,
 * background jobs with progress, flags written to the local file, history, capabilities.
 */
describe('console admin API (sqlite→sqlite)', () => {
  let source: TestDatabase;
  let target: TestDatabase;
  let tandem: TandemHarness;
  const admin = { authorization: 'Bearer admin-token-1' };
  const data = { authorization: 'Bearer data-token-1' };

  beforeAll(async () => {
    source = await createTestDatabase('sqlite', 'casrc');
    target = await createTestDatabase('sqlite', 'catgt');
    await createTestTables(source.knex, target.knex);
    // Rows before dual-write: the target is stale and needs a backfill.
    await source.knex.batchInsert('people', Array.from({ length: 1500 }, (_, i) => ({ id: i + 1, email: `c${i + 1}@x.test`, full_name: `C ${i + 1}` })), 100);
    tandem = await startTandem({
      source: source.url,
      target: target.url,
      policiesDir: writeTestPolicies(),
      env: { TANDEM_ADMIN_TOKEN: 'admin-token-1', TANDEM_API_TOKENS: 'data-token-1' },
    });
  });

  afterAll(async () => {
    await tandem?.stop();
    await source?.drop();
    await target?.drop();
  });

  it('serves the page and its assets without a token, with a strict CSP', async () => {
    const page = await tandem.request.get('/console').expect(200);
    expect(page.text).toContain('<script type="module" src="/console/assets/console.js">');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    const script = await tandem.request.get('/console/assets/console.js').expect(200);
    expect(script.headers['content-type']).toMatch(/javascript/);
    await tandem.request.get('/console/assets/nothing.js').expect(404);
  });

  it('refuses the admin endpoints without a token (401) and with a data token (403)', async () => {
    for (const path of ['/admin/status', '/admin/flags', '/admin/jobs', '/admin/capabilities', '/admin/tables/people/history']) {
      const none = await tandem.request.get(path);
      expect(none.status, path).toBe(401);
      expect(none.body.code).toBe('unauthorized');
      const wrong = await tandem.request.get(path).set(data);
      expect(wrong.status, path).toBe(403);
      expect(wrong.body).toMatchObject({ code: 'forbidden', field: 'authorization' });
      await tandem.request.get(path).set(admin).expect(200);
    }
  });

  it('runs a backfill then a verify as jobs, with progress, rate and a result; the stale mark clears', async () => {
    const before = (await tandem.request.get('/admin/status').set(admin).expect(200)).body.tables.find((t: { table: string }) => t.table === 'people');
    expect(before.stale).toBe(true);
    const started = await tandem.request.post('/admin/tables/people/jobs').set(admin).send({ kind: 'backfill', chunk: 100 }).expect(202);
    expect(started.headers['location']).toBe(`/admin/jobs/${started.body.id}`);
    expect(started.body).toMatchObject({ kind: 'backfill', table: 'people', state: 'running' });
    const backfill = await waitFor(async () => {
      const job = (await tandem.request.get(`/admin/jobs/${started.body.id}`).set(admin).expect(200)).body;
      return job.state === 'running' ? undefined : job;
    });
    expect(backfill).toMatchObject({ state: 'succeeded', progress: { phase: 'copy', done: 1500, total: 1500 }, result: { copied: 1500, finished: true } });
    expect(backfill.progress.rowsPerSecond).toBeGreaterThan(0);

    const verify = (await tandem.request.post('/admin/tables/people/jobs').set(admin).send({ kind: 'verify' }).expect(202)).body;
    const done = await waitFor(async () => {
      const job = (await tandem.request.get(`/admin/jobs/${verify.id}`).set(admin).expect(200)).body;
      return job.state === 'running' ? undefined : job;
    });
    expect(done).toMatchObject({ state: 'succeeded', result: { clean: true, matching: 1500, staleCleared: true } });
    expect(done.result).not.toHaveProperty('differingKeys');
    const after = (await tandem.request.get('/admin/status').set(admin).expect(200)).body.tables.find((t: { table: string }) => t.table === 'people');
    expect(after).toMatchObject({ stale: false, lastVerify: { clean: true, matching: 1500 } });
    const list = (await tandem.request.get('/admin/jobs').set(admin).expect(200)).body.jobs as Array<{ id: string }>;
    expect(list.map((j) => j.id)).toEqual([verify.id, started.body.id]);
  });

  it('refuses bad job requests with a 4xx naming the field', async () => {
    const cases: Array<[string, unknown, number, string]> = [
      ['/admin/tables/people/jobs', { kind: 'drop' }, 400, 'kind'],
      ['/admin/tables/people/jobs', { kind: 'verify', repair: 'yes' }, 400, 'repair'],
      ['/admin/tables/people/jobs', { kind: 'verify', rate: 5 }, 400, 'rate'],
      ['/admin/tables/people/jobs', { kind: 'backfill', rate: 0 }, 400, 'rate'],
      ['/admin/tables/nope/jobs', { kind: 'verify' }, 404, 'table'],
    ];
    for (const [path, body, status, field] of cases) {
      const res = await tandem.request.post(path).set(admin).send(body as object);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.field).toBe(field);
    }
    await tandem.request.get('/admin/jobs/unknown').set(admin).expect(404);
  });

  it('sets flags in the local file (atomically), and the routing follows', async () => {
    const flags = (await tandem.request.get('/admin/flags').set(admin).expect(200)).body;
    expect(flags).toMatchObject({ origin: 'file', editable: true, file: tandem.flagsFile });
    const people = flags.tables.find((t: { table: string }) => t.table === 'people');
    expect(people.flags.map((f: { name: string }) => f.name)).toEqual([
      'tandem.people.dual-write',
      'tandem.people.read-target',
      'tandem.people.shadow-read',
      'tandem.people.target-primary',
      'tandem.people.retire-source',
    ]);
    const res = await tandem.request.put('/admin/flags/tandem.people.read-target').set(admin).send({ value: 100 }).expect(200);
    expect(res.body).toMatchObject({ name: 'tandem.people.read-target', enabled: true, percent: 100 });
    const file = JSON.parse(readFileSync(tandem.flagsFile, 'utf8')) as { features: Array<{ name: string }> };
    expect(file.features.map((f) => f.name)).toContain('tandem.people.read-target');
    expect(file.features.map((f) => f.name)).toContain('tandem.kv.dual-write'); // the rest is kept
    await waitFor(async () => (await tandem.request.get('/v1/tables/people/rows/3').set(data).expect(200)).headers['tandem-read'] === 'target', { what: 'reads on the target' });

    await tandem.request.put('/admin/flags/tandem.people.read-target').set(admin).send({ value: 101 }).expect(400);
    await tandem.request.put('/admin/flags/tandem.people.read-target').set(admin).send({ value: true }).expect(400);
    await tandem.request.put('/admin/flags/tandem.people.dual-write').set(admin).send({ value: 50 }).expect(400);
    const unknown = await tandem.request.put('/admin/flags/tandem.nope.dual-write').set(admin).send({ value: true }).expect(404);
    expect(unknown.body.field).toBe('name');
  });

  it('keeps a history per table and reports capabilities (cutover and rollback, driven by the CLI)', async () => {
    const history = (await tandem.request.get('/admin/tables/people/history').set(admin).expect(200)).body;
    expect(history).toMatchObject({ table: 'people', intervalSeconds: 5 });
    expect(Object.keys(history.series)).toEqual(
      expect.arrayContaining(['sourceWritesPerSecond', 'targetWritesPerSecond', 'applied', 'lagSeconds', 'consistency', 'targetErrorRate']),
    );
    await tandem.request.get('/admin/tables/nope/history').set(admin).expect(404);
    const caps = (await tandem.request.get('/admin/capabilities').set(admin).expect(200)).body;
    expect(caps).toMatchObject({ cutover: true, rollback: true, flagsEditable: true });
  });
});
