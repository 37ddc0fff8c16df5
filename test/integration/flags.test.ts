import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PAIRS, type Pair, type TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { mapPeople, snapshot } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

/**
 * Flags are desired state (DESIGN §2): switching dual-write on and off through the local
 * flag file changes what writes do, marks the target stale when it may lack rows, keeps the
 * last good flags when the file breaks, and refuses stages this build cannot run.
 */

interface TableStatus {
  table: string;
  stage: string;
  stale: boolean;
  staleReason: string | null;
  flagConflict: string | null;
  flags: { dualWrite: boolean; targetPrimary: boolean; retireSource: boolean };
  outbox: { pending: number; dead: number };
}

interface Status {
  flags: { origin: string; synchronized: boolean; lastError: string | null };
  tables: TableStatus[];
}

const on = (name: string): Feature => ({ name, enabled: true, strategies: [{ name: 'default' }] });
const off = (name: string): Feature => ({ name, enabled: false, strategies: [{ name: 'default' }] });

const ALL_OFF: Feature[] = [off('tandem.people.dual-write'), off('tandem.kv.dual-write')];

async function status(tandem: TandemHarness): Promise<Status> {
  const res = await tandem.request.get('/admin/status').expect(200);
  return res.body as Status;
}

async function tableStatus(tandem: TandemHarness, table = 'people'): Promise<TableStatus> {
  const found = (await status(tandem)).tables.find((t) => t.table === table);
  if (!found) throw new Error(`no status for table ${table}`);
  return found;
}

/** Polls /admin/status until a table's status satisfies `ready`, and returns it. */
async function statusWhen(
  tandem: TandemHarness,
  ready: (s: TableStatus) => boolean,
  what: string,
  table = 'people',
): Promise<TableStatus> {
  let last: TableStatus | undefined;
  await waitFor(
    async () => {
      last = await tableStatus(tandem, table);
      return ready(last);
    },
    { timeoutMs: 5_000, what: `${table}: ${what}` },
  );
  return last as TableStatus;
}

async function metrics(tandem: TandemHarness): Promise<string> {
  return (await tandem.request.get('/metrics').expect(200)).text;
}

/** The value of one sample, or undefined when the series is absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

async function count(db: Knex, table: string): Promise<number> {
  const row = (await db(table).count({ n: '*' }).first()) as { n: number | string } | undefined;
  return Number(row?.n ?? 0);
}

async function insertPerson(tandem: TandemHarness, email: string, fullName: string): Promise<{ id: number; write: string }> {
  const res = await tandem.request.post('/v1/tables/people/rows').send({ values: { email, full_name: fullName } }).expect(201);
  return { id: res.body.row.id as number, write: String(res.headers['tandem-write']) };
}

async function targetPerson(target: Knex, id: number): Promise<Record<string, unknown> | undefined> {
  return (await target('app_people').where({ id }).first()) as Record<string, unknown> | undefined;
}

/** Starts Tandem and remembers its scratch folders (flag file, policies) for `removeScratch`. */
async function startTracked(scratch: string[], options: Parameters<typeof startTandem>[0]): Promise<TandemHarness> {
  scratch.push(options.policiesDir);
  const tandem = await startTandem(options);
  scratch.push(path.dirname(tandem.flagsFile));
  return tandem;
}

function removeScratch(scratch: string[]): void {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
}

const SWITCH_PAIRS = PAIRS.filter((p) => p.name === 'sqlite→sqlite' || p.name === 'postgres→mariadb');
const SQLITE = PAIRS.find((p) => p.name === 'sqlite→sqlite') as Pair;

// These suites restart Tandem with other flags: they start and stop it themselves.
describeEachPair('dual-write switched on over existing rows', { pairs: SWITCH_PAIRS, label: 'flagon', tandem: false }, (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let policiesDir: string;
    let tandem: TandemHarness;
    const existing: number[] = [];
    const scratch: string[] = [];

    beforeAll(async () => {
      ({ source, target, policiesDir } = suite);
      tandem = await startTracked(scratch, { source: source.url, target: target.url, policiesDir, flags: ALL_OFF });
    });

    afterAll(async () => {
      await tandem?.stop();
      removeScratch(scratch);
    });

    it('with dual-write off, writes go to the source only and the target stays empty', async () => {
      const people = await tableStatus(tandem);
      expect(people).toMatchObject({ stage: 'source-only', stale: false, flagConflict: null, flags: { dualWrite: false } });

      for (const i of [1, 2, 3]) {
        const { id, write } = await insertPerson(tandem, `old${i}@example.com`, `Old ${i}`);
        expect(write).toBe('primary-only');
        existing.push(id);
      }
      const patched = await tandem.request.patch(`/v1/tables/people/rows/${existing[0]}`).send({ values: { age: 50 } }).expect(200);
      expect(patched.headers['tandem-write']).toBe('primary-only');
      const kv = await tandem.request.put('/v1/tables/kv/rows/a,1').send({ values: { val: 1 } }).expect(201);
      expect(kv.headers['tandem-write']).toBe('primary-only');
      await tandem.request.delete(`/v1/tables/people/rows/${existing[2]}`).expect(204);
      existing.pop();

      // No outbox row was ever written, and nothing reached the target.
      expect(await count(source.knex, 'tandem_outbox')).toBe(0);
      expect(await count(target.knex, 'app_people')).toBe(0);
      expect(await count(target.knex, 'kv')).toBe(0);
      expect(await count(target.knex, 'tandem_applied')).toBe(0);
      expect(await count(source.knex, 'people')).toBe(2);

      const text = await metrics(tandem);
      expect(sample(text, 'tandem_stage{table="people",stage="source-only"}')).toBe(1);
      expect(sample(text, 'tandem_stage{table="people",stage="dual-write"}')).toBe(0);
      expect(text).not.toMatch(/tandem_apply_total\{table="people"/);
    });

    it('switching dual-write on takes effect within seconds and marks the target stale', async () => {
      tandem.setFlags(DUAL_WRITE_ALL);
      const people = await statusWhen(tandem, (s) => s.stage === 'dual-write', 'reach dual-write');
      // The source already held rows the target never received.
      expect(people.stale).toBe(true);
      expect(people.staleReason).toMatch(/already held rows/);
      expect(people.flags.dualWrite).toBe(true);
      const kv = await statusWhen(tandem, (s) => s.stage === 'dual-write', 'reach dual-write', 'kv');
      expect(kv.stale).toBe(true);

      const text = await metrics(tandem);
      expect(sample(text, 'tandem_stage{table="people",stage="dual-write"}')).toBe(1);
      expect(sample(text, 'tandem_target_stale{table="people"}')).toBe(1);

      // Staleness is recorded in tandem_state, not only in memory.
      const state = (await source.knex('tandem_state').where({ tbl: 'people' }).first()) as Record<string, unknown>;
      expect(Number(state['dual_write'])).toBe(1);
      expect(Number(state['stale'])).toBe(1);
      expect(String(state['stale_reason'])).toMatch(/already held rows/);
    });

    it('new writes are applied to the target; the older rows stay missing there', async () => {
      const { id, write } = await insertPerson(tandem, 'new@example.com', 'New Person');
      expect(write).toBe('applied');
      expect(await targetPerson(target.knex, id)).toMatchObject({ email: 'new@example.com', name: 'New Person' });
      const patched = await tandem.request.patch(`/v1/tables/people/rows/${id}`).send({ values: { age: 7 } }).expect(200);
      expect(patched.headers['tandem-write']).toBe('applied');
      expect(Number((await targetPerson(target.knex, id))?.['age'])).toBe(7);

      const sourceRows = await snapshot(source.knex, 'people', ['id']);
      const targetRows = await snapshot(target.knex, 'app_people', ['id']);
      expect(targetRows).toEqual(mapPeople(sourceRows.filter((r) => r['id'] === id)));
      for (const old of existing) expect(await targetPerson(target.knex, old)).toBeUndefined();
    });

    it('stays stale across a restart (the mark lives in tandem_state)', async () => {
      await tandem.stop();
      tandem = await startTracked(scratch, { source: source.url, target: target.url, policiesDir });
      const people = await tableStatus(tandem);
      expect(people).toMatchObject({ stage: 'dual-write', stale: true });
      expect(people.staleReason).toMatch(/already held rows/);
      expect(sample(await metrics(tandem), 'tandem_target_stale{table="people"}')).toBe(1);
    });
});

describeEachPair('flags reconcile into stages', { pairs: [SQLITE], label: 'flagcycle', tandem: false }, (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    const scratch: string[] = [];

    beforeAll(async () => {
      ({ source, target } = suite);
      tandem = await startTracked(scratch, {
        source: source.url,
        target: target.url,
        policiesDir: suite.policiesDir,
        flags: DUAL_WRITE_ALL,
      });
    });

    afterAll(async () => {
      await tandem?.stop();
      removeScratch(scratch);
    });

    it('with both tables empty and dual-write on from the start, the target is not stale', async () => {
      const people = await tableStatus(tandem);
      expect(people).toMatchObject({ stage: 'dual-write', stale: false, staleReason: null, flagConflict: null, flags: { dualWrite: true } });
      expect(sample(await metrics(tandem), 'tandem_target_stale{table="people"}')).toBe(0);
      const { id, write } = await insertPerson(tandem, 'first@example.com', 'First');
      expect(write).toBe('applied');
      expect(await targetPerson(target.knex, id)).toMatchObject({ name: 'First' });
    });

    it('off → on: stale after off, still stale after on, and the metric says so', async () => {
      tandem.setFlags([off('tandem.people.dual-write'), on('tandem.kv.dual-write')]);
      const offStatus = await statusWhen(tandem, (s) => s.stage === 'source-only', 'fall back to source-only');
      expect(offStatus.stale).toBe(true);
      expect(offStatus.staleReason).toMatch(/switched off/);
      // The other table is untouched.
      expect(await tableStatus(tandem, 'kv')).toMatchObject({ stage: 'dual-write', stale: false });

      const missed = await insertPerson(tandem, 'missed@example.com', 'Missed');
      expect(missed.write).toBe('primary-only');
      expect(await targetPerson(target.knex, missed.id)).toBeUndefined();

      tandem.setFlags(DUAL_WRITE_ALL);
      const onStatus = await statusWhen(tandem, (s) => s.stage === 'dual-write', 'return to dual-write');
      expect(onStatus.stale).toBe(true);
      expect(onStatus.staleReason).toBeTruthy();
      const text = await metrics(tandem);
      expect(text).toMatch(/^tandem_target_stale\{table="people"\} 1$/m);
      expect(sample(text, 'tandem_target_stale{table="kv"}')).toBe(0);

      const after = await insertPerson(tandem, 'after@example.com', 'After');
      expect(after.write).toBe('applied');
      expect(await targetPerson(target.knex, after.id)).toMatchObject({ name: 'After' });
      expect(await targetPerson(target.knex, missed.id)).toBeUndefined();
    });

    it('a broken flag file keeps the last good flags, and Tandem stays ready', async () => {
      const before = await tableStatus(tandem);
      expect(before.stage).toBe('dual-write');

      writeFileSync(tandem.flagsFile, 'version: 2\nfeatures:\n  - name: tandem.people.dual-write\n    enabled: [true\n');
      let broken: Status | undefined;
      await waitFor(async () => Boolean((broken = await status(tandem)).flags.lastError), {
        timeoutMs: 5_000,
        what: 'the broken flag file to be reported',
      });
      expect(broken?.flags.lastError).toContain(tandem.flagsFile);
      expect(broken?.flags.synchronized).toBe(true);
      // Several reconcile intervals later nothing moved.
      await new Promise((resolve) => setTimeout(resolve, 800));
      const people = await tableStatus(tandem);
      expect(people).toMatchObject({ stage: 'dual-write', stale: before.stale, flags: { dualWrite: true } });
      const ready = await tandem.request.get('/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body.ready).toBe(true);
      const { write } = await insertPerson(tandem, 'broken-file@example.com', 'During Broken File');
      expect(write).toBe('applied');

      // Valid YAML, but not a flag file: the same.
      writeFileSync(tandem.flagsFile, 'features: not-a-list\n');
      await new Promise((resolve) => setTimeout(resolve, 800));
      expect(await tableStatus(tandem)).toMatchObject({ stage: 'dual-write', flags: { dualWrite: true } });
      expect((await status(tandem)).flags.lastError).toBeTruthy();
      expect((await tandem.request.get('/readyz')).status).toBe(200);

      // A good file again clears the error.
      tandem.setFlags(DUAL_WRITE_ALL);
      await waitFor(async () => (await status(tandem)).flags.lastError === null, { timeoutMs: 5_000, what: 'the flag error to clear' });
      expect(await tableStatus(tandem)).toMatchObject({ stage: 'dual-write' });
    });

    it('a deleted flag file keeps the last good flags: no stage changes, an error in status and the metric', async () => {
      const before = await tableStatus(tandem);
      expect(before.stage).toBe('dual-write');
      const errorsBefore = sample(await metrics(tandem), 'tandem_flags_errors_total') ?? 0;
      rmSync(tandem.flagsFile);
      await waitFor(async () => /missing/.test((await status(tandem)).flags.lastError ?? ''), { timeoutMs: 5_000, what: 'the missing flag file to be reported' });
      await new Promise((resolve) => setTimeout(resolve, 800));
      expect(await tableStatus(tandem)).toMatchObject({ stage: 'dual-write', stale: before.stale, flags: { dualWrite: true } });
      expect(await tableStatus(tandem, 'kv')).toMatchObject({ stage: 'dual-write' });
      expect(sample(await metrics(tandem), 'tandem_flags_errors_total')).toBeGreaterThan(errorsBefore);
      expect((await tandem.request.get('/readyz')).status).toBe(200);
      expect((await insertPerson(tandem, 'no-file@example.com', 'No File')).write).toBe('applied');
      tandem.setFlags(DUAL_WRITE_ALL);
      await waitFor(async () => (await status(tandem)).flags.lastError === null, { timeoutMs: 5_000, what: 'the flag error to clear' });
    });

    it('target-primary on a stale target is refused: the stage stays dual-write', async () => {
      const conflictsBefore = sample(await metrics(tandem), 'tandem_flag_conflicts_total') ?? 0;
      tandem.setFlags([...DUAL_WRITE_ALL, on('tandem.people.target-primary')]);
      const people = await statusWhen(tandem, (s) => s.flagConflict !== null, 'show the flag conflict');
      expect(people.stage).toBe('dual-write');
      expect(people.flags.targetPrimary).toBe(true);
      expect(people.flagConflict).toMatch(/target-primary refused: the target is stale/);
      const text = await metrics(tandem);
      expect(sample(text, 'tandem_flag_conflicts_total')).toBeGreaterThanOrEqual(Math.max(1, conflictsBefore + 1));
      expect(sample(text, 'tandem_stage{table="people",stage="dual-write"}')).toBe(1);
      expect(sample(text, 'tandem_stage{table="people",stage="target-primary"}')).toBe(0);
      // Writes still run dual-write with the source as primary.
      const { id, write } = await insertPerson(tandem, 'conflict@example.com', 'During Conflict');
      expect(write).toBe('applied');
      expect(await source.knex('people').where({ id }).first()).toBeTruthy();
      expect(await targetPerson(target.knex, id)).toMatchObject({ name: 'During Conflict' });
      expect(await tableStatus(tandem, 'kv')).toMatchObject({ stage: 'dual-write', flagConflict: null });

      // target-primary without dual-write is impossible: the last good stage (dual-write) stays.
      tandem.setFlags([on('tandem.kv.dual-write'), on('tandem.people.target-primary')]);
      const impossible = await statusWhen(
        tandem,
        (s) => /requires dual-write/.test(s.flagConflict ?? ''),
        'refuse the impossible combination',
      );
      expect(impossible.stage).toBe('dual-write');
      expect(sample(await metrics(tandem), 'tandem_flag_conflicts_total')).toBeGreaterThanOrEqual(conflictsBefore + 2);
      expect((await insertPerson(tandem, 'impossible@example.com', 'Impossible')).write).toBe('applied');

      // Plain dual-write again clears the conflict.
      tandem.setFlags(DUAL_WRITE_ALL);
      const cleared = await statusWhen(tandem, (s) => s.flagConflict === null, 'clear the conflict');
      expect(cleared.stage).toBe('dual-write');
    });
});
