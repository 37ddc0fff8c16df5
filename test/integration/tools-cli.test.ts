/**
 * The operator tools as operators run them (DESIGN §6, §7): `tandem verify | backfill | flags |
 * outbox | brake` — the built CLI in a child process beside a running Tandem, exit codes,
 * `--json` output parsed here, and every process exiting on its own (pools closed).
 */
import { readFileSync } from 'node:fs';
import { beforeAll, expect, it } from 'vitest';
import type { VerifyReport } from '../../src/consistency/verify.js';
import { encodeImage } from '../../src/outbox/image-codec.js';
import { PAIRS, type TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { call } from '../helpers/http-client.js';
import { convergence } from '../helpers/schema.js';
import { outboxCounts, waitFor, type TandemHarness } from '../helpers/tandem.js';
import { countRows, parseJson, runCli as runTool, toolEnv, type CliResult } from '../helpers/tools.js';

const PEOPLE = 40;
const KV_ROWS = 1_500;

/** What `tandem verify --json` prints: the report without its key list, plus `repaired`. */
type VerifyJson = Omit<VerifyReport, 'differingKeys'> & { repaired: number };

interface FlagsJson {
  origin: string;
  synchronized: boolean;
  killSwitch: boolean;
  tables: Array<{ table: string; dualWrite: boolean; readTargetPercent: number; shadowReadPercent: number }>;
}

/** A tool that has not exited after 15 s is hung (an open pool or timer): it is killed and fails `exited`. */
const runCli = (args: string[], env: Record<string, string>) => runTool(args, env, 15_000);

/** Exited by itself (not killed by the timeout) with this code. */
function exited(result: CliResult, code: number): void {
  expect(result.signal, `the CLI must exit by itself (${result.ms} ms)\nstdout: ${result.stdout}\nstderr: ${result.stderr}`).toBeNull();
  expect(result.code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(code);
}

// SQLite→SQLite, and one server pair across engines.
describeEachPair('tandem tools CLI', { pairs: [PAIRS[0], PAIRS[1]].filter((p) => p !== undefined), label: 'clitool', tandem: () => ({ listen: true }) }, (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let base: string;
    let env: Record<string, string>;
    let policiesDir: string;
    let ids: number[] = [];

    beforeAll(async () => {
      // Both tables empty when dual-write began: not stale.
      ({ source, target, tandem, policiesDir } = suite);
      base = `http://127.0.0.1:${tandem.app.address().port}`;
      env = toolEnv({ source: source.url, target: target.url, policiesDir, flagsFile: tandem.flagsFile });

      const res = await call(base, 'POST', '/v1/batch', {
        ops: Array.from({ length: PEOPLE }, (_, i) => ({
          op: 'insert',
          table: 'people',
          values: { email: `cli${i}@tools.test`, full_name: `Cli ${i}`, age: 20 + i, active: i % 2 === 0, note: `n${i}`, legacy: 'x' },
        })),
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      ids = (res.body as { results: Array<{ row: { id: number } }> }).results.map((r) => Number(r.row.id));
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'the outbox to drain' });
      // kv: the same rows straight into both stores (verify only compares).
      const kv = Array.from({ length: KV_ROWS }, (_, i) => ({ tenant: `t${i % 3}`, k: i, val: i * 7, note: `kv ${i}` }));
      await source.knex.batchInsert('kv', kv, 250);
      await target.knex.batchInsert('kv', kv, 250);
    });


    it('`verify people --json` on identical data exits 0 with every row matching', async () => {
      const result = await runCli(['verify', 'people', '--json'], env);
      exited(result, 0);
      const report = parseJson<VerifyJson>(result);
      expect(report).toMatchObject({ table: 'people', sourceRows: PEOPLE, targetRows: PEOPLE, matching: PEOPLE, mismatched: 0, missingInTarget: 0, extraInTarget: 0, clean: true });
      expect(report).not.toHaveProperty('differingKeys');
    });

    it('drift planted in the target: exit 1, one of each kind, samples naming keys and column; --repair fixes it', async () => {
      const [gone, changed] = [ids[3] as number, ids[7] as number];
      const extra = 90_000;
      await target.knex('app_people').where({ id: gone }).del();
      await target.knex('app_people').where({ id: changed }).update({ name: 'Tampered' });
      await target.knex('app_people').insert({ id: extra, email: 'extra@tools.test', name: 'Extra', age: 1, active: true, note: 'planted' });

      const drift = await runCli(['verify', 'people', '--json'], env);
      exited(drift, 1);
      const report = parseJson<VerifyJson>(drift);
      expect(report).toMatchObject({ clean: false, mismatched: 1, missingInTarget: 1, extraInTarget: 1, matching: PEOPLE - 2, sourceRows: PEOPLE, targetRows: PEOPLE });
      expect(report.samples).toEqual({
        mismatched: [{ key: String(changed), columns: ['full_name'] }],
        missingInTarget: [String(gone)],
        extraInTarget: [String(extra)],
      });

      const repair = await runCli(['verify', 'people', '--repair', '--json'], env);
      exited(repair, 0);
      expect(parseJson<VerifyJson>(repair)).toMatchObject({ clean: true, repaired: 3, mismatched: 0, missingInTarget: 0, extraInTarget: 0, matching: PEOPLE });

      const after = await runCli(['verify', 'people', '--json'], env);
      exited(after, 0);
      expect(parseJson<VerifyJson>(after)).toMatchObject({ clean: true, matching: PEOPLE, targetRows: PEOPLE });
      const { people } = await convergence(source.knex, target.knex);
      expect(people.actual).toEqual(people.expected);
    });

    it(`\`verify kv --json\` on a composite-key table of ${KV_ROWS} rows exits 0`, async () => {
      const result = await runCli(['verify', 'kv', '--json'], env);
      exited(result, 0);
      expect(parseJson<VerifyJson>(result)).toMatchObject({ table: 'kv', matching: KV_ROWS, clean: true });
    });

    it('usage errors exit 2 with a message', async () => {
      const nosuch = await runCli(['verify', 'nosuch'], env);
      exited(nosuch, 2);
      expect(nosuch.stderr).toMatch(/no table named "nosuch"/);
      expect(nosuch.stderr).toMatch(/people/);

      const noTable = await runCli(['verify'], env);
      exited(noTable, 2);
      expect(noTable.stderr).toMatch(/missing required argument 'table'/);

      const badRate = await runCli(['backfill', 'people', '--rate', 'abc'], env);
      exited(badRate, 2);
      expect(badRate.stderr).toMatch(/--rate <n>' argument 'abc' is invalid\. expected a positive integer, got "abc"/);
      // Nothing started: no checkpoint.
      expect(await countRows(source.knex, 'tandem_backfill')).toBe(0);
    });

    it('`flags --json` shows the effective flags; `flags set` edits the flag file', async () => {
      const listed = await runCli(['flags', '--json'], env);
      exited(listed, 0);
      const flags = parseJson<FlagsJson>(listed);
      expect(flags).toMatchObject({ synchronized: true, killSwitch: false });
      expect(flags.tables.find((t) => t.table === 'people')).toMatchObject({ dualWrite: true, readTargetPercent: 0 });

      const before = readFileSync(tandem.flagsFile, 'utf8');
      const set = await runCli(['flags', 'set', 'tandem.people.read-target', '25'], env);
      exited(set, 0);
      expect(set.stdout).toMatch(/tandem\.people\.read-target: 25/);
      const after = readFileSync(tandem.flagsFile, 'utf8');
      expect(after).not.toBe(before);
      const file = JSON.parse(after) as { features: Array<{ name: string; enabled: boolean; strategies: Array<{ name: string; parameters?: Record<string, string> }> }> };
      expect(file.features.find((f) => f.name === 'tandem.people.read-target')).toMatchObject({
        enabled: true,
        strategies: [{ name: 'flexibleRollout', parameters: { rollout: '25' } }],
      });
      // The other flags are kept.
      expect(file.features.find((f) => f.name === 'tandem.people.dual-write')).toMatchObject({ enabled: true });

      const relisted = await runCli(['flags', '--json'], env);
      exited(relisted, 0);
      expect(parseJson<FlagsJson>(relisted).tables.find((t) => t.table === 'people')).toMatchObject({ dualWrite: true, readTargetPercent: 25 });
      // The running Tandem picks the edit up too.
      await waitFor(
        async () => {
          const res = await call(base, 'GET', '/admin/status');
          return (res.body as { tables: Array<{ table: string; readTargetPercent: number }> }).tables.find((t) => t.table === 'people')?.readTargetPercent === 25;
        },
        { what: 'Tandem to reload the flag file' },
      );
    });

    it('`outbox list --json` lists a dead row and `outbox replay --json` makes it pending again', async () => {
      const id = ids[11] as number;
      const row = (await source.knex('people').where({ id }).first()) as Record<string, unknown>;
      const now = Date.now();
      await source.knex('tandem_outbox').insert({
        tbl: 'people',
        row_key: String(id),
        op: 'upsert',
        image: encodeImage(row),
        epoch: 1,
        status: 'dead',
        attempts: 10,
        next_attempt_at: now,
        last_error: 'planted by the test',
        created_at: now,
      });

      const listed = await runCli(['outbox', 'list', '--json'], env);
      exited(listed, 0);
      const { rows } = parseJson<{ rows: Array<{ id: string; table: string; rowKey: string; op: string; attempts: number; lastError: string | null }> }>(listed);
      expect(Array.isArray(rows)).toBe(true);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ table: 'people', rowKey: String(id), op: 'upsert', attempts: 10, lastError: 'planted by the test' });

      const replay = await runCli(['outbox', 'replay', '--json'], env);
      exited(replay, 0);
      expect(parseJson<{ replayed: number }>(replay)).toEqual({ replayed: 1 });

      const relisted = await runCli(['outbox', 'list', '--json', '--table', 'people'], env);
      exited(relisted, 0);
      expect(parseJson<{ rows: unknown[] }>(relisted).rows).toEqual([]);
      // The running Tandem applies the replayed row; the data stays converged.
      await waitFor(async () => {
        const counts = await outboxCounts(source.knex);
        return counts.pending === 0 && counts.dead === 0;
      }, { what: 'the replayed row to be applied' });
      const verify = await runCli(['verify', 'people', '--json'], env);
      exited(verify, 0);
    });

    it('`brake status --json --url` reads the running Tandem', async () => {
      const result = await runCli(['brake', 'status', '--json', '--url', base], env);
      exited(result, 0);
      const tables = parseJson<Array<{ table: string; brake: { active: boolean } | null }>>(result);
      expect(tables.map((t) => t.table).sort()).toEqual(['kv', 'people']);
      for (const t of tables) expect(t.brake).toMatchObject({ active: false });

      const one = await runCli(['brake', 'status', 'people', '--json', '--url', base], env);
      exited(one, 0);
      expect(parseJson<Array<{ table: string }>>(one).map((t) => t.table)).toEqual(['people']);
    });
});
