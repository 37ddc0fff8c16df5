/**
 * Issue 11 "retire-source": after cutover, `retire-source` stops reverse replication and
 * marks the source stale. The way back is refused until the source is resynchronised:
 * leaving target-only turns reverse replication on again (target-primary), a rollback is
 * still refused while the source is stale, `tandem backfill --reverse` (the CLI, as a
 * subprocess) copies target → source without overwriting live writes, a clean verify
 * (map(target) == source) clears the mark, and only then does the rollback run.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type Pair, type TestDatabase } from '../helpers/databases.js';
import { call, sleep } from '../helpers/http-client.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';
import { runCli, toolEnv } from '../helpers/tools.js';

const on = (name: string): Feature => ({ name, enabled: true, strategies: [{ name: 'default' }] });
const CUTOVER = [...DUAL_WRITE_ALL, on('tandem.kv.target-primary')];
const RETIRED = [...CUTOVER, on('tandem.kv.retire-source')];

interface KvStatus {
  stage: string;
  primary: string | null;
  stale: boolean;
  staleReason: string | null;
  flagConflict: string | null;
}

interface Rig {
  source: TestDatabase;
  target: TestDatabase;
  tandem: TandemHarness;
  policiesDir: string;
  base: string;
  close(): Promise<void>;
}

async function startRig(pair: Pair): Promise<Rig> {
  const cleanups: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => console.warn(`cleanup failed: ${String(e)}`));
  };
  try {
    const source = await createTestDatabase(pair.source, 'retsrc');
    cleanups.push(() => source.drop());
    const target = await createTestDatabase(pair.target, 'rettgt');
    cleanups.push(() => target.drop());
    await createTestTables(source.knex, target.knex);
    const policiesDir = writeTestPolicies();
    const tandem = await startTandem({ source: source.url, target: target.url, policiesDir, flags: DUAL_WRITE_ALL, listen: true });
    cleanups.push(() => tandem.stop());
    return { source, target, tandem, policiesDir, base: `http://127.0.0.1:${tandem.app.address().port}`, close };
  } catch (error) {
    await close();
    throw error;
  }
}

async function kvStatus(base: string): Promise<KvStatus> {
  const res = await call(base, 'GET', '/admin/status');
  return (res.body as { tables: Array<KvStatus & { table: string }> }).tables.find((t) => t.table === 'kv') as KvStatus;
}

const put = (base: string, k: number, val: number) => call(base, 'PUT', `/v1/tables/kv/rows/t,${k}`, { values: { val } });
const count = async (db: TestDatabase) => Number(((await db.knex('kv').count({ n: '*' })) as Array<{ n: unknown }>)[0]?.n);

const pairs = runnablePairs();

describe.each(pairs)('retire-source and the reverse resync ($name)', (pair) => {
  let rig: Rig;
  afterAll(async () => {
    await rig?.close();
  });

  it('refuses the way back until backfill --reverse and a clean verify', async () => {
    rig = await startRig(pair);
    const { base } = rig;
    rig.tandem.setFlags(CUTOVER);
    await waitFor(async () => (await kvStatus(base)).primary === 'target', { timeoutMs: 20_000, what: 'kv primary on the target' });
    for (let k = 1; k <= 5; k++) expect((await put(base, k, k)).status).toBe(201);

    rig.tandem.setFlags(RETIRED);
    await waitFor(async () => (await kvStatus(base)).stage === 'target-only', { timeoutMs: 20_000, what: 'target-only' });
    const retired = await kvStatus(base);
    expect(retired.stale).toBe(true);
    expect(retired.staleReason).toMatch(/source retired/);
    // The source stops receiving changes.
    for (let k = 6; k <= 10; k++) {
      const res = await put(base, k, k);
      expect(res.status).toBe(201);
      expect(res.write).toBe('primary-only');
    }
    expect((await put(base, 1, 100)).status).toBe(200);
    await waitFor(async () => (await outboxCounts(rig.target.knex)).pending === 0, { what: 'reverse outbox drained' });
    expect(await count(rig.source)).toBe(5);

    // Straight back to the source: refused, target-only kept.
    rig.tandem.setFlags(DUAL_WRITE_ALL);
    await waitFor(async () => /resync/.test((await kvStatus(base)).flagConflict ?? ''), { timeoutMs: 10_000, what: 'the refusal' });
    expect((await kvStatus(base)).stage).toBe('target-only');
    expect((await kvStatus(base)).primary).toBe('target');

    // Leaving target-only to target-primary: reverse replication again, the source still stale.
    rig.tandem.setFlags(CUTOVER);
    await waitFor(async () => (await kvStatus(base)).stage === 'target-primary', { timeoutMs: 10_000, what: 'target-primary again' });
    expect((await put(base, 11, 11)).write).not.toBe('primary-only');
    // A rollback now is still refused: the source lacks rows.
    rig.tandem.setFlags(DUAL_WRITE_ALL);
    await waitFor(async () => /backfill --reverse/.test((await kvStatus(base)).flagConflict ?? ''), { timeoutMs: 10_000, what: 'rollback refused' });
    await sleep(500);
    expect((await kvStatus(base)).primary).toBe('target');
    rig.tandem.setFlags(CUTOVER);

    // The resync, through the CLI, beside the running server.
    const env = toolEnv({ source: rig.source.url, target: rig.target.url, policiesDir: rig.policiesDir, flagsFile: rig.tandem.flagsFile });
    const forward = await runCli(['backfill', 'kv'], env);
    expect(forward.code).toBe(2);
    expect(forward.stderr + forward.stdout).toMatch(/--reverse/);
    const backfill = await runCli(['backfill', '--reverse', 'kv', '--json'], env);
    expect(backfill.code, backfill.stderr).toBe(0);
    const report = JSON.parse(backfill.stdout) as { copied: number; skipped: number; finished: boolean };
    expect(report.finished).toBe(true);
    // Keys 6..10 were missing; 1..5 and 11 are in the source's ledger (never overwritten).
    expect(report.copied).toBe(5);
    expect(await count(rig.source)).toBe(11);
    // Key 1 was changed while retired: the ledger keeps the backfill from touching it, so
    // the verify finds that drift, repairs it from the target, and then clears the mark.
    const verify = await call(base, 'POST', '/admin/tables/kv/verify', { repair: true });
    expect(verify.status).toBe(200);
    await waitFor(async () => {
      const again = await call(base, 'POST', '/admin/tables/kv/verify');
      return (again.body as { clean: boolean }).clean;
    }, { timeoutMs: 20_000, what: 'a clean reverse verify' });
    await waitFor(async () => !(await kvStatus(base)).stale, { timeoutMs: 10_000, what: 'stale mark cleared' });

    // Now the rollback runs.
    rig.tandem.setFlags(DUAL_WRITE_ALL);
    await waitFor(async () => (await kvStatus(base)).primary === 'source', { timeoutMs: 20_000, what: 'rollback after the resync' });
    await waitFor(async () => (await outboxCounts(rig.target.knex)).pending === 0 && (await outboxCounts(rig.source.knex)).pending === 0, { what: 'drained' });
    const snap = await convergence(rig.source.knex, rig.target.knex);
    expect(snap.kv.actual).toEqual(snap.kv.expected);
    expect(snap.kv.actual).toHaveLength(11);
  }, 120_000);
});

if (pairs.length === 0) {
  it.skip('retire-source: no database pair runnable here', () => undefined);
}
