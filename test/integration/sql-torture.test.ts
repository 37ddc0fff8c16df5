/**
 * Issue 12: the convergence and crash torture of the HTTP row API, driven through the SQL
 * front instead — node-postgres sessions on the wire (simple and parameterised statements,
 * transactions that commit and that roll back) and `POST /v1/sql` — on overlapping keys.
 * (1) In process, with a TCP fault proxy between Tandem and the target that flaps through
 * refuse, black hole, reset and delay. (2) Tandem as a child process, SIGKILLed twice in the
 * middle of the writes and restarted. Either way, once the outbox drains the target equals
 * the mapped source, nothing is dead, and every write acknowledged by COMMIT is in the source.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { childTandemEnv, freePort, spawnTandem, type TandemChild } from '../helpers/child.js';
import { createTestDatabase, runnablePairs, viaProxy, type TestDatabase } from '../helpers/databases.js';
import { startFaultProxy, type FaultMode, type FaultProxy } from '../helpers/fault-proxy.js';
import { call, seededRandom, sleep } from '../helpers/http-client.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front torture (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

const KEYS = 20;
/** Errors a client may get from PostgreSQL itself under this load (transactions on overlapping keys). */
const RETRYABLE = new Set(['40P01', '40001']);

type Random = () => number;

/** One unit of client work: statements in autocommit or one transaction; `keys` it may change. */
interface Unit {
  statements: Array<{ sql: string; params?: unknown[] }>;
  tx: 'none' | 'commit' | 'rollback';
}

/** A random unit on overlapping kv and people keys; `v` makes every value unique. */
function unit(random: Random, v: number, insertedEmail: string): Unit {
  const key = () => 1 + Math.floor(random() * KEYS);
  const one = (): { sql: string; params?: unknown[] } => {
    const roll = random();
    const k = key();
    if (roll < 0.3) return { sql: 'INSERT INTO kv (tenant, k, val, note) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, k) DO UPDATE SET val = excluded.val, note = excluded.note', params: ['t', k, v, `u${v}`] };
    if (roll < 0.45) return { sql: `UPDATE kv SET val = ${v}, note = 'lit${v}' WHERE tenant = 't' AND k = ${k}` };
    if (roll < 0.6) return { sql: 'DELETE FROM kv WHERE tenant = $1 AND k = $2', params: ['t', k] };
    if (roll < 0.8) {
      return {
        sql: 'INSERT INTO people (id, email, full_name, age, legacy) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET full_name = excluded.full_name, age = excluded.age RETURNING id',
        params: [k, `p${k}@torture`, `name ${v}`, v % 100, 'x'],
      };
    }
    if (roll < 0.9) return { sql: 'INSERT INTO people (email, full_name, age) VALUES ($1, $2, $3)', params: [insertedEmail, `new ${v}`, v % 50] };
    return { sql: `DELETE FROM people WHERE id = ${k}` };
  };
  const roll = random();
  if (roll < 0.6) return { statements: [one()], tx: 'none' };
  const statements = [one(), one()];
  // Two writes of one transaction in key order would still race others: PostgreSQL may
  // answer a deadlock (40P01), which the client sees and rolls back; that is PostgreSQL's.
  return { statements, tx: roll < 0.9 ? 'commit' : 'rollback' };
}

interface Outcome {
  acknowledged: number;
  rolledBack: number;
  retryable: number;
  failures: string[];
  /** Emails of `INSERT INTO people (email …)` acknowledged by the commit (must be in the source). */
  insertedEmails: string[];
}

function newOutcome(): Outcome {
  return { acknowledged: 0, rolledBack: 0, retryable: 0, failures: [], insertedEmails: [] };
}

/** Runs units on one wire session until `until()` says stop; connection errors end it (the process may be killed). */
async function wireClient(url: string, random: Random, counter: { v: number }, until: () => boolean, out: Outcome, tag: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    while (until()) {
      const v = ++counter.v;
      const email = `${tag}-${v}@torture`;
      const u = unit(random, v, email);
      const inserts = u.statements.some((s) => s.params?.[0] === email);
      try {
        if (u.tx !== 'none') await client.query('BEGIN');
        for (const s of u.statements) await client.query(s.sql, s.params);
        if (u.tx === 'rollback') {
          await client.query('ROLLBACK');
          out.rolledBack++;
          continue;
        }
        if (u.tx === 'commit') await client.query('COMMIT');
        out.acknowledged++;
        if (inserts) out.insertedEmails.push(email);
      } catch (error) {
        const code = (error as { code?: string }).code;
        // No SQLSTATE: the connection is gone (Tandem was killed); what was in flight is unknown.
        if (code === undefined || !/^[0-9A-Z]{5}$/.test(code)) return;
        if (u.tx !== 'none') await client.query('ROLLBACK').catch(() => undefined);
        if (RETRYABLE.has(code) || code === '23505') out.retryable++;
        else out.failures.push(`${code} ${(error as Error).message}`);
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The same units over `POST /v1/sql` (a list runs in one transaction; rollbacks are not expressible, so those units commit). */
async function httpClient(base: string, random: Random, counter: { v: number }, until: () => boolean, out: Outcome, tag: string): Promise<void> {
  while (until()) {
    const v = ++counter.v;
    const email = `${tag}-${v}@torture`;
    const u = unit(random, v, email);
    const inserts = u.statements.some((s) => s.params?.[0] === email);
    const body = u.statements.length === 1 ? { sql: u.statements[0]?.sql, params: u.statements[0]?.params ?? [] } : { statements: u.statements.map((s) => ({ sql: s.sql, params: s.params ?? [] })) };
    const res = await call(base, 'POST', '/v1/sql', body);
    if (res.status === 0) return; // Tandem was killed
    if (res.status === 200) {
      out.acknowledged++;
      if (inserts) out.insertedEmails.push(email);
      continue;
    }
    const sqlstate = (res.body as { sqlstate?: string } | undefined)?.sqlstate;
    if (sqlstate && (RETRYABLE.has(sqlstate) || sqlstate === '23505')) out.retryable++;
    else out.failures.push(`${res.status} ${JSON.stringify(res.body)}`);
  }
}

function summary(o: Outcome): string {
  return `acknowledged=${o.acknowledged} rolledBack=${o.rolledBack} retryable=${o.retryable} failures=${o.failures.length}`;
}

async function expectConverged(source: TestDatabase, target: TestDatabase, outcomes: Outcome[]): Promise<void> {
  const state = await convergence(source.knex, target.knex);
  expect(state.kv.actual).toEqual(state.kv.expected);
  expect(state.people.actual).toEqual(state.people.expected);
  const emails = outcomes.flatMap((o) => o.insertedEmails);
  const found = new Set(((await source.knex('people').whereIn('email', emails).select('email')) as Array<{ email: string }>).map((r) => r.email));
  expect(emails.filter((e) => !found.has(e)), 'acknowledged inserts missing on the source').toEqual([]);
}

for (const pair of PG_SOURCE) {
  describe(`SQL front torture (${pair.name})`, () => {
    const cleanups: Array<() => Promise<unknown>> = [];
    afterAll(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => console.warn(`cleanup failed: ${String(e)}`));
    });

    it('wire sessions and /v1/sql on overlapping keys while the target flaps: the target converges, nothing dead', async () => {
      const source = await createTestDatabase(pair.source, 'sqltorsrc');
      cleanups.push(() => source.drop());
      const target = await createTestDatabase(pair.target, 'sqltortgt');
      cleanups.push(() => target.drop());
      await createTestTables(source.knex, target.knex);
      // Generated ids above the explicit ones (1..KEYS) the units upsert.
      await source.knex.raw(`SELECT setval('people_id_seq', 1000)`);
      const proxy: FaultProxy = await startFaultProxy({ targetHost: target.host, targetPort: target.port });
      cleanups.push(() => proxy.close());
      const tandem: TandemHarness = await startTandem({ source: source.url, target: viaProxy(target, proxy.port), policiesDir: writeTestPolicies(), listen: true, overrides: { sql: { port: 0 } } });
      cleanups.push(async () => {
        await proxy.set('pass').catch(() => undefined);
        await tandem.stop();
      });
      const url = `postgres://app@127.0.0.1:${tandem.app.sqlAddress().port}/app`;
      const base = `http://127.0.0.1:${tandem.app.address().port}`;
      const seed = Number(process.env['TANDEM_TEST_SEED'] ?? Date.now() % 1_000_000);
      const deadline = performance.now() + 5_000;
      const until = () => performance.now() < deadline;
      const counter = { v: 0 };
      const outcomes = Array.from({ length: 10 }, newOutcome);
      let flapping = true;
      const flaps: string[] = [];
      const flapper = (async () => {
        const modes: Array<[FaultMode, number?]> = [['pass'], ['refuse'], ['pass'], ['blackhole'], ['pass'], ['reset'], ['delay', 50]];
        for (let i = 0; flapping; i++) {
          const [mode, delayMs] = modes[i % modes.length] as [FaultMode, number?];
          await proxy.set(mode, delayMs === undefined ? undefined : { delayMs });
          flaps.push(mode);
          const until2 = performance.now() + 300 + ((i * 97) % 400);
          while (flapping && performance.now() < until2) await sleep(20);
        }
      })();
      await Promise.all(
        outcomes.map((o, n) =>
          n < 7 ? wireClient(url, seededRandom(seed * 100 + n), counter, until, o, `w${n}`) : httpClient(base, seededRandom(seed * 100 + n), counter, until, o, `h${n}`),
        ),
      );
      flapping = false;
      await flapper;
      await proxy.set('pass');
      const drainStart = performance.now();
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { timeoutMs: 30_000, what: 'the outbox to drain' });
      const drainMs = performance.now() - drainStart;
      const total = outcomes.reduce((a, o) => ({ ...a, acknowledged: a.acknowledged + o.acknowledged, rolledBack: a.rolledBack + o.rolledBack, retryable: a.retryable + o.retryable }), newOutcome());
      console.log(`[sql torture ${pair.name}] seed=${seed} ${summary({ ...total, failures: outcomes.flatMap((o) => o.failures) })}; flaps=${flaps.length}; drained ${Math.round(drainMs)} ms after the faults`);
      expect(outcomes.flatMap((o) => o.failures)).toEqual([]);
      expect(total.acknowledged).toBeGreaterThan(100);
      expect(total.rolledBack).toBeGreaterThan(0);
      expect((await outboxCounts(source.knex)).dead).toBe(0);
      await expectConverged(source, target, outcomes);
    }, 90_000);

    it('Tandem SIGKILLed twice under wire and /v1/sql writes: no acknowledged write lost, the target converges', async () => {
      const source = await createTestDatabase(pair.source, 'sqlkilsrc');
      cleanups.push(() => source.drop());
      const target = await createTestDatabase(pair.target, 'sqlkiltgt');
      cleanups.push(() => target.drop());
      await createTestTables(source.knex, target.knex);
      // Generated ids above the explicit ones (1..KEYS) the units upsert.
      await source.knex.raw(`SELECT setval('people_id_seq', 1000)`);
      const flags = { version: 2, features: ['people', 'kv'].map((t) => ({ name: `tandem.${t}.dual-write`, enabled: true, strategies: [{ name: 'default' }] })) };
      // Rows a killed worker had claimed come back within the test's time.
      const base = childTandemEnv({ prefix: 'tandem-sqlkill-', source, target, flags, config: 'outbox:\n  leaseMs: 3000\n' });
      const sqlPort = await freePort();
      const env = { ...base.env, TANDEM_SQL_PORT: String(sqlPort) };
      let child: TandemChild | undefined;
      cleanups.push(async () => {
        if (child && child.process.exitCode === null && child.process.signalCode === null) {
          child.process.kill('SIGKILL');
          await child.exited;
        }
      });
      const seed = Number(process.env['TANDEM_TEST_SEED'] ?? Date.now() % 1_000_000);
      const counter = { v: 0 };
      const outcomes: Outcome[] = [];
      for (let phase = 1; phase <= 3; phase++) {
        child = await spawnTandem(['serve'], env);
        const running = child;
        let sending = true;
        const phaseOutcomes = Array.from({ length: 6 }, newOutcome);
        outcomes.push(...phaseOutcomes);
        const url = `postgres://app@127.0.0.1:${sqlPort}/app`;
        const clients = Promise.all(
          phaseOutcomes.map((o, n) =>
            n < 4 ? wireClient(url, seededRandom(seed * 1000 + phase * 10 + n), counter, () => sending, o, `k${phase}w${n}`) : httpClient(running.url, seededRandom(seed * 1000 + phase * 10 + n), counter, () => sending, o, `k${phase}h${n}`),
          ),
        );
        await sleep(1_500);
        if (phase < 3) {
          running.process.kill('SIGKILL');
          await running.exited;
        }
        sending = false;
        await clients;
      }
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { timeoutMs: 40_000, what: 'the outbox to drain after the restarts' });
      console.log(`[sql kill -9 ${pair.name}] seed=${seed} ${summary({ ...outcomes.reduce((a, o) => ({ ...a, acknowledged: a.acknowledged + o.acknowledged, rolledBack: a.rolledBack + o.rolledBack, retryable: a.retryable + o.retryable }), newOutcome()), failures: outcomes.flatMap((o) => o.failures) })}`);
      expect(outcomes.flatMap((o) => o.failures)).toEqual([]);
      expect(outcomes.reduce((n, o) => n + o.acknowledged, 0)).toBeGreaterThan(50);
      expect((await outboxCounts(source.knex)).dead).toBe(0);
      await expectConverged(source, target, outcomes);
    }, 120_000);
  });
}
