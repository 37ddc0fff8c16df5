/**
 * DESIGN §6 backfill: it refuses without dual-write, copies a stale target while live writes
 * go through Tandem (never resurrecting a row deleted meanwhile, never overwriting a newer
 * write), and a SIGKILLed CLI run resumes from its checkpoint without copying a row twice.
 */
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { openToolkit } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import { backfillTable, type BackfillReport } from '../../src/consistency/backfill.js';
import type { Policy } from '../../src/policy/policy.js';
import { createTestDatabase, runnablePairs, type Pair, type TestDatabase } from '../helpers/databases.js';
import { call, seededRandom, sleep } from '../helpers/http-client.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';
import { countRows, parseJson, runCli, seedPeople, startCli, toolEnv } from '../helpers/tools.js';

const LIVE_ROWS = 5_000;
const RESUME_ROWS = 20_000;
const CLIENTS = 8;

interface TableStatus {
  table: string;
  stage: string;
  stale: boolean;
  staleReason: string | null;
}

interface Rig {
  source: TestDatabase;
  target: TestDatabase;
  tandem: TandemHarness;
  base: string;
  env: Record<string, string>;
  people(): Promise<TableStatus>;
}

const PEOPLE_OFF: Feature[] = [
  { name: 'tandem.people.dual-write', enabled: false, strategies: [{ name: 'default' }] },
  { name: 'tandem.kv.dual-write', enabled: true, strategies: [{ name: 'default' }] },
];

for (const pair of runnablePairs()) {
  describe(`backfill (${pair.name})`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterAll(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => console.warn(`cleanup failed: ${String(e)}`));
    });

    /** Fresh databases with `rows` people already in the source, then Tandem started with `flags`. */
    async function startRig(p: Pair, label: string, rows: number, flags: Feature[]): Promise<Rig> {
      const source = await createTestDatabase(p.source, `${label}src`);
      cleanups.push(() => source.drop());
      const target = await createTestDatabase(p.target, `${label}tgt`);
      cleanups.push(() => target.drop());
      await createTestTables(source.knex, target.knex);
      if (rows > 0) await seedPeople(source.knex, rows);
      const policiesDir = writeTestPolicies();
      cleanups.push(async () => rmSync(policiesDir, { recursive: true, force: true }));
      const tandem = await startTandem({ source: source.url, target: target.url, policiesDir, flags, listen: true });
      cleanups.push(() => tandem.stop());
      const base = `http://127.0.0.1:${tandem.app.address().port}`;
      const env = toolEnv({ source: source.url, target: target.url, policiesDir, flagsFile: tandem.flagsFile });
      const people = async () => {
        const res = await call(base, 'GET', '/admin/status');
        const body = res.body as { tables: TableStatus[] };
        const t = body.tables.find((x) => x.table === 'people');
        if (!t) throw new Error(`no people in /admin/status: ${JSON.stringify(res.body)}`);
        return t;
      };
      return { source, target, tandem, base, env, people };
    }

    /** Stores and bound policy as the tools get them, pointed at the rig's databases. */
    async function toolkitFor(rig: Rig) {
      const toolkit = await openToolkit(loadConfig({ env: rig.env }));
      cleanups.push(() => toolkit.close());
      return { toolkit, policy: toolkit.policies.get('people') as Policy };
    }

    async function drained(rig: Rig): Promise<void> {
      await waitFor(async () => (await outboxCounts(rig.source.knex)).pending === 0, { timeoutMs: 30_000, what: 'the outbox to drain' });
      expect((await outboxCounts(rig.source.knex)).dead).toBe(0);
    }

    async function verifyClean(rig: Rig): Promise<Record<string, unknown>> {
      const res = await call(rig.base, 'POST', '/admin/tables/people/verify', {}, 60_000);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const report = res.body as Record<string, unknown>;
      expect(report, JSON.stringify(report)).toMatchObject({ mismatched: 0, missingInTarget: 0, extraInTarget: 0, clean: true });
      return report;
    }

    it('refuses to run while dual-write is off for the table (library and CLI), and runs once it is on', async () => {
      const rig = await startRig(pair, 'refuse', LIVE_ROWS, PEOPLE_OFF);
      expect(await rig.people()).toMatchObject({ stage: 'source-only' });
      const { toolkit, policy } = await toolkitFor(rig);
      await expect(backfillTable(toolkit.source, toolkit.target, policy)).rejects.toThrow(/dual-write/);

      const cli = await runCli(['backfill', 'people', '--json'], rig.env);
      expect(cli.signal, 'the CLI must exit by itself').toBeNull();
      expect(cli.code, cli.stderr).not.toBe(0);
      expect(cli.stderr).toMatch(/dual-write/);
      expect(cli.stdout).toBe('');
      // Nothing was copied and no checkpoint was left behind.
      expect(await countRows(rig.target.knex, 'app_people')).toBe(0);
      expect(await countRows(rig.source.knex, 'tandem_backfill')).toBe(0);

      // Dual-write on: the same call now copies everything (no load: the unthrottled rate).
      rig.tandem.setFlags(DUAL_WRITE_ALL);
      await waitFor(async () => (await rig.people()).stage === 'dual-write', { what: 'dual-write on people' });
      expect(await rig.people()).toMatchObject({ stale: true });
      // The defaults, as `tandem backfill people` runs it (chunks of 1000).
      const report = await backfillTable(toolkit.source, toolkit.target, policy);
      console.log(`[backfill ${pair.name}] unthrottled, no load: ${report.copied} rows in ${report.durationMs} ms = ${report.rowsPerSecond} rows/s`);
      expect(report).toMatchObject({ finished: true, copied: LIVE_ROWS, skipped: 0, total: LIVE_ROWS, resumedFrom: null });
      expect(await countRows(rig.target.knex, 'app_people')).toBe(LIVE_ROWS);
      await verifyClean(rig);
      expect(await rig.people()).toMatchObject({ stale: false });
    });

    it(`copies ${LIVE_ROWS} rows into a stale target while clients write through Tandem: clean verify, nothing deleted comes back`, async () => {
      const rig = await startRig(pair, 'live', LIVE_ROWS, DUAL_WRITE_ALL);
      // Dual-write began over a non-empty source: the target is stale until backfill + verify.
      expect(await rig.people()).toMatchObject({ stage: 'dual-write', stale: true, staleReason: expect.stringMatching(/backfill/) as unknown });
      expect(await countRows(rig.target.knex, 'app_people')).toBe(0);
      const { toolkit, policy } = await toolkitFor(rig);

      const original = ((await rig.source.knex('people').select('id').orderBy('id')) as Array<{ id: number | string }>).map((r) => Number(r.id));
      expect(original).toHaveLength(LIVE_ROWS);
      // The load only touches original ids (update / delete+insert / re-insert), one request per id
      // at a time, so the test knows each id's state; new rows are never deleted. Every delete is
      // in one batch with the insert of a new row, so the source's row count never drops: the
      // backfill must then read at least as many rows as existed at its start.
      const alive = new Map(original.map((id) => [id, true]));
      const busy = new Set<number>();
      const uncertain = new Set<number>();
      const deletedDuring = new Map<number, number>();
      const failures: string[] = [];
      let phase: 'before' | 'during' | 'after' = 'before';
      let progress = 0;
      let running = true;
      let counter = 0;
      const ops = { update: 0, deleteInsert: 0, reinsert: 0, insert: 0 };
      const seed = Number(process.env['TANDEM_TEST_SEED'] ?? Date.now() % 1_000_000);

      const client = async (n: number) => {
        const random = seededRandom(seed * 100 + n);
        while (running) {
          const v = ++counter;
          if (random() < 0.1) {
            const res = await call(rig.base, 'POST', '/v1/tables/people/rows', {
              values: { email: `new-${n}-${v}@live.test`, full_name: `New ${v}`, age: v % 80, active: true, note: `c${n}` },
            });
            if (res.status !== 201) failures.push(`insert: ${res.status} ${JSON.stringify(res.body)}`);
            else ops.insert++;
            continue;
          }
          // Mostly just ahead of the backfill's position, where the races are.
          const near = random() < 0.7;
          const index = near ? Math.min(original.length - 1, progress + Math.floor(random() * 500)) : Math.floor(random() * original.length);
          const id = original[index] as number;
          if (busy.has(id) || uncertain.has(id)) {
            await sleep(1);
            continue;
          }
          busy.add(id);
          try {
            if (!alive.get(id)) {
              const res = await call(rig.base, 'PUT', `/v1/tables/people/rows/${id}`, {
                values: { email: `re-${id}@live.test`, full_name: `Back ${v}`, age: v % 70, active: false, note: `re c${n}`, legacy: 'R' },
              });
              if (res.status === 201) {
                alive.set(id, true);
                ops.reinsert++;
              } else {
                uncertain.add(id);
                failures.push(`re-insert ${id}: ${res.status} ${JSON.stringify(res.body)}`);
              }
            } else if (random() < 0.5) {
              const res = await call(rig.base, 'PATCH', `/v1/tables/people/rows/${id}`, { values: { full_name: `Upd ${v}`, age: v % 60, note: `u c${n}` } });
              if (res.status === 200) ops.update++;
              else {
                uncertain.add(id);
                failures.push(`update ${id}: ${res.status} ${JSON.stringify(res.body)}`);
              }
            } else {
              const startedDuring = phase === 'during';
              const res = await call(rig.base, 'POST', '/v1/batch', {
                ops: [
                  { op: 'insert', table: 'people', values: { email: `pair-${n}-${v}@live.test`, full_name: `Pair ${v}`, age: 1, active: true } },
                  { op: 'delete', table: 'people', key: id },
                ],
              });
              if (res.status === 200) {
                alive.set(id, false);
                ops.deleteInsert++;
                if (startedDuring || phase === 'during') deletedDuring.set(id, v);
                else deletedDuring.delete(id);
              } else {
                uncertain.add(id);
                failures.push(`delete ${id}: ${res.status} ${JSON.stringify(res.body)}`);
              }
            }
          } finally {
            busy.delete(id);
          }
        }
      };

      const clients = Array.from({ length: CLIENTS }, (_, n) => client(n));
      let report: BackfillReport;
      try {
        await sleep(300);
        phase = 'during';
        // Throttled so the load overlaps the whole copy on every engine (the unthrottled rate is
        // measured in the refusal test, without load).
        report = await backfillTable(toolkit.source, toolkit.target, policy, {
          chunkSize: 250,
          rate: 10_000,
          onProgress: (p) => {
            progress = p.copied + p.skipped;
          },
        });
        phase = 'after';
        await sleep(200);
      } finally {
        running = false;
        await Promise.all(clients);
      }
      console.log(
        `[backfill ${pair.name}] live: ${report.copied} copied + ${report.skipped} skipped of ${report.total} at start in ${report.durationMs} ms ` +
          `= ${report.rowsPerSecond} rows/s, while clients did ${JSON.stringify(ops)} (${deletedDuring.size} ids deleted during the backfill)`,
      );
      expect(failures, failures.slice(0, 5).join('\n')).toEqual([]);
      expect(report.finished).toBe(true);
      expect(report.resumedFrom).toBeNull();
      expect(report.total).toBeGreaterThanOrEqual(LIVE_ROWS);
      expect(report.copied + report.skipped).toBeGreaterThanOrEqual(report.total);
      expect(deletedDuring.size, 'the load must have deleted rows while the backfill ran').toBeGreaterThan(0);

      await drained(rig);
      const verify = await verifyClean(rig);
      expect(verify['staleCleared']).toBe(true);
      const { people, kv } = await convergence(rig.source.knex, rig.target.knex);
      expect(people.actual).toEqual(people.expected);
      expect(kv.actual).toEqual(kv.expected);

      // Not resurrected: every id deleted during the backfill and still deleted is absent from the target.
      const gone = [...deletedDuring.keys()].filter((id) => alive.get(id) === false && !uncertain.has(id));
      expect(gone.length).toBeGreaterThan(0);
      const back = (await rig.target.knex('app_people').whereIn('id', gone).select('id')) as Array<{ id: number }>;
      expect(back.map((r) => Number(r.id))).toEqual([]);
      const inSource = (await rig.source.knex('people').whereIn('id', gone).select('id')) as Array<{ id: number }>;
      expect(inSource).toEqual([]);

      expect(await rig.people()).toMatchObject({ stage: 'dual-write', stale: false });
    });

    it(`a SIGKILLed CLI backfill of ${RESUME_ROWS} rows resumes from its checkpoint and copies each row exactly once`, async () => {
      const rig = await startRig(pair, 'resume', RESUME_ROWS, DUAL_WRITE_ALL);
      expect(await rig.people()).toMatchObject({ stage: 'dual-write', stale: true });
      const args = ['backfill', 'people', '--rate', '4000', '--chunk', '500', '--json'];

      const first = startCli(args, rig.env, 30_000);
      // Kill it once it has checkpointed a chunk (a fixed sleep raced the CLI's start on a busy
      // machine: killed before its first checkpoint, there was nothing to resume from).
      await waitFor(
        async () => {
          const row = (await rig.source.knex('tandem_backfill').where({ tbl: 'people' }).first()) as { copied: number | string } | undefined;
          return Number(row?.copied ?? 0) > 0;
        },
        { timeoutMs: 25_000, intervalMs: 20, what: 'the CLI backfill to checkpoint its first chunk' },
      );
      first.child.kill('SIGKILL');
      const killed = await first.result;
      expect(killed.signal, `the first run must still be running when killed:\n${killed.stderr}`).toBe('SIGKILL');

      const checkpoint = (await rig.source.knex('tandem_backfill').where({ tbl: 'people' }).first()) as
        | { last_key: string | null; copied: number | string; skipped: number | string; run_id: number | string; finished_at: unknown }
        | undefined;
      expect(checkpoint).toBeDefined();
      const cp = checkpoint as NonNullable<typeof checkpoint>;
      const copiedBefore = Number(cp.copied);
      expect(cp.finished_at).toBeNull();
      expect(Number(cp.skipped)).toBe(0);
      expect(copiedBefore).toBeGreaterThan(0);
      expect(copiedBefore).toBeLessThan(RESUME_ROWS);
      expect(copiedBefore % 500).toBe(0);
      expect(cp.last_key).not.toBeNull();
      // The checkpoint follows the chunk's commit: the target holds the checkpointed rows, plus
      // at most the one chunk committed just before the kill.
      const targetAtKill = await countRows(rig.target.knex, 'app_people');
      const uncheckpointed = targetAtKill - copiedBefore;
      expect([0, 500]).toContain(uncheckpointed);
      if (uncheckpointed > 0) console.log(`[backfill ${pair.name}] killed between a chunk's commit and its checkpoint: ${uncheckpointed} rows`);
      const [maxRow] = (await rig.target.knex('app_people').max({ m: 'id' })) as Array<{ m: number | string | null }>;
      if (uncheckpointed === 0) expect(String(maxRow?.m)).toBe(cp.last_key);

      const second = await runCli(args, rig.env, 60_000);
      expect(second.signal, second.stderr).toBeNull();
      expect(second.code, second.stderr).toBe(0);
      const report = parseJson<BackfillReport>(second);
      expect(report).toMatchObject({ table: 'people', finished: true, resumedFrom: cp.last_key, total: RESUME_ROWS });
      // `copied` in the report counts the checkpointed rows of the killed run too.
      const copiedSecond = report.copied - copiedBefore;
      const targetAfter = await countRows(rig.target.knex, 'app_people');
      expect(targetAfter).toBe(await countRows(rig.source.knex, 'people'));
      expect(targetAfter).toBe(RESUME_ROWS);
      // Exactly once: checkpointed + copied by the second run (+ the uncheckpointed chunk, which the
      // second run finds present and skips) is every row, and the second run's count is what it inserted.
      expect(copiedBefore + copiedSecond + uncheckpointed).toBe(RESUME_ROWS);
      expect(copiedSecond).toBe(targetAfter - targetAtKill);
      expect(report.skipped).toBe(uncheckpointed);
      const secondRows = RESUME_ROWS - copiedBefore;
      console.log(
        `[backfill ${pair.name}] CLI: killed after ${copiedBefore} rows; the resumed run copied ${copiedSecond} in ${report.durationMs} ms ` +
          `(${Math.round((secondRows * 1000) / report.durationMs)} rows/s measured at --rate 4000; report says ${report.rowsPerSecond} rows/s)`,
      );
      // The throttle holds (--rate 4000: 500-row chunks at most every 125 ms)…
      expect(report.durationMs).toBeGreaterThanOrEqual(((secondRows - 500) * 1000) / 4000);
      // …and the rate the resumed run reports is its own (its rows over its time), not the killed
      // run's rows too: at most 4000 rows/s.
      const ownRate = Math.round((secondRows * 1000) / report.durationMs);
      expect
        .soft(report.rowsPerSecond, `rowsPerSecond of a resumed run (its own rate: ${ownRate}) counts rows the killed run copied`)
        .toBeLessThanOrEqual(ownRate + Math.max(2, ownRate * 0.005));

      const verify = await verifyClean(rig);
      expect(verify['matching']).toBe(RESUME_ROWS);
      expect(await rig.people()).toMatchObject({ stale: false });

      // --restart: from the first key again; every key is in the ledger already, so nothing is copied.
      const restart = await runCli(['backfill', 'people', '--restart', '--chunk', '2000', '--json'], rig.env, 60_000);
      expect(restart.signal, restart.stderr).toBeNull();
      expect(restart.code, restart.stderr).toBe(0);
      const again = parseJson<BackfillReport>(restart);
      expect(again).toMatchObject({ finished: true, resumedFrom: null, copied: 0, skipped: RESUME_ROWS, total: RESUME_ROWS });
      console.log(`[backfill ${pair.name}] --restart (unthrottled, all skipped): ${again.rowsPerSecond} rows/s`);
      expect(await countRows(rig.target.knex, 'app_people')).toBe(RESUME_ROWS);
      await verifyClean(rig);
    }, 90_000);
  });
}
