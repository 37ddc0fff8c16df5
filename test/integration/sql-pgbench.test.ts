import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openToolkit } from '../../src/app.js';
import { backfillTable } from '../../src/consistency/backfill.js';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

const run = promisify(execFile);
const HAS_TOOL = spawnSync('pgbench', ['--version']).status === 0;
if (!HAS_TOOL) console.warn('[tandem tests] SKIPPING the pgbench suite: pgbench is not installed (Debian: postgresql-client)');
const PG_SOURCE = HAS_TOOL ? runnablePairs().filter((p) => p.source === 'pg') : [];
if (PG_SOURCE.length === 0) {
  describe('SQL front pgbench (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

/** pgbench_history has no primary key: it is left unreplicated (no policy), so it is forwarded as any other table. */
const TABLES = { pgbench_accounts: 'aid', pgbench_branches: 'bid', pgbench_tellers: 'tid' } as const;
const CLIENTS = 4;
const SECONDS = Number(process.env['TANDEM_TEST_PGBENCH_SECONDS'] ?? 4);

interface PgbenchResult {
  tps: number;
  failed: number;
  processed: number;
}

async function pgbench(url: URL, mode: string): Promise<PgbenchResult> {
  const { stdout } = await run('pgbench', ['-n', '-r', '-c', String(CLIENTS), '-j', '2', '-T', String(SECONDS), '-M', mode, '-h', url.hostname, '-p', url.port || '5432', '-U', decodeURIComponent(url.username), url.pathname.slice(1)], {
    env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
    timeout: (SECONDS + 60) * 1000,
  });
  if (process.env['TANDEM_TEST_PGBENCH_REPORT']) console.log(stdout);
  const tps = Number(/tps = ([\d.]+)/.exec(stdout)?.[1]);
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1]);
  return { tps, failed, processed };
}

async function pgbenchInit(url: string, steps: string): Promise<void> {
  const u = new URL(url);
  await run('pgbench', ['-i', '-s', '1', '-I', steps, '-q', '-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username), u.pathname.slice(1)]);
}

for (const pair of PG_SOURCE) {
  describe(`SQL front: pgbench TPC-B-like through Tandem (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    /** The baseline: a copy of the source on the same server, which pgbench reaches directly (writes there would escape Tandem). */
    let direct: TestDatabase;
    let tandem: TandemHarness;
    let viaTandem: URL;
    const results: string[] = [];
    const dualWrite: Feature[] = Object.keys(TABLES).map((table) => ({ name: `tandem.${table}.dual-write`, enabled: true, strategies: [{ name: 'default' }] }));

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'pgbsrc');
      target = await createTestDatabase(pair.target, 'pgbtgt');
      direct = await createTestDatabase('pg', 'pgbdirect');
      // Initialised directly on the source: tables, 100,000 accounts, primary keys.
      await pgbenchInit(source.url, 'dtgvp');
      await pgbenchInit(direct.url, 'dtgvp');
      if (pair.target === 'pg') {
        await pgbenchInit(target.url, 'dtp');
      } else {
        await target.knex.raw('CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler varchar(84))');
        await target.knex.raw('CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler varchar(88))');
        await target.knex.raw('CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler varchar(84))');
      }
      const policies = mkdtempSync(path.join(tmpdir(), 'tandem-pgbench-policies-'));
      for (const [table, key] of Object.entries(TABLES)) writeFileSync(path.join(policies, `${table}.yaml`), `table: ${table}\nprimaryKey: [${key}]\n`);
      tandem = await startTandem({
        source: source.url,
        target: target.url,
        policiesDir: policies,
        flags: [],
        overrides: { sql: { port: 0, users: [{ name: 'bench', password: 'bench-password' }] } },
      });
      viaTandem = new URL(`postgres://bench:bench-password@127.0.0.1:${tandem.app.sqlAddress().port}/app`);
    }, 120_000);

    afterAll(async () => {
      if (results.length > 0) console.log(`[pgbench ${pair.name}, ${CLIENTS} clients, ${SECONDS} s each; shared machine, noisy] ${results.join('; ')}`);
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
      await direct?.drop();
    });

    it('source-only: every mode runs through Tandem with 0 failed transactions', async () => {
      for (const mode of ['simple', 'extended', 'prepared'] as const) {
        const base = await pgbench(new URL(direct.url), mode);
        const through = await pgbench(viaTandem, mode);
        results.push(`source-only ${mode}: direct ${base.tps.toFixed(0)} tps, via Tandem ${through.tps.toFixed(0)} tps (${(through.tps / base.tps).toFixed(2)}x)`);
        expect(through.failed).toBe(0);
        expect(through.processed).toBeGreaterThan(0);
      }
      expect(await outboxCounts(source.knex)).toMatchObject({ pending: 0, dead: 0 });
    }, 300_000);

    it('dual-write, after a backfill: every mode through Tandem, 0 failed transactions, verify clean on every replicated table', async () => {
      tandem.setFlags(dualWrite);
      await waitFor(async () => {
        const status = (await tandem.app.status()) as { tables: Array<{ stage: string }> };
        return status.tables.every((t) => t.stage === 'dual-write');
      }, { what: 'dual-write on' });
      // The source held rows when dual-write began: the target is stale until backfilled and verified.
      const toolkit = await openToolkit(tandem.app.config);
      try {
        for (const table of Object.keys(TABLES)) {
          const policy = toolkit.policies.get(table);
          if (!policy) throw new Error(`no policy ${table}`);
          await backfillTable(toolkit.source, toolkit.target, policy);
        }
      } finally {
        await toolkit.close();
      }
      for (const mode of ['simple', 'extended', 'prepared'] as const) {
        const base = await pgbench(new URL(direct.url), mode);
        const through = await pgbench(viaTandem, mode);
        results.push(`dual-write ${mode}: direct ${base.tps.toFixed(0)} tps, via Tandem ${through.tps.toFixed(0)} tps (${(through.tps / base.tps).toFixed(2)}x)`);
        expect(through.failed).toBe(0);
        expect(through.processed).toBeGreaterThan(0);
        await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained', timeoutMs: 60_000 });
        for (const table of Object.keys(TABLES)) {
          const report = await tandem.app.verify(table);
          expect(report.clean, `${table}: ${JSON.stringify({ ...report, differingKeys: undefined })}`).toBe(true);
          expect(report.matching).toBeGreaterThan(0);
        }
      }
    }, 600_000);
  });
}
