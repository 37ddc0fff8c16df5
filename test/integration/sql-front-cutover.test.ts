/**
 * Issue 12, "After cutover": once a table's primary moved to the target, the SQL front
 * writes it there when the target speaks PostgreSQL — the policy's renames applied, the
 * client's RETURNING list under its own names, simple and extended protocol, a statement
 * prepared before the cutover, POST /v1/sql — and the source follows by reverse
 * replication. What the target cannot take (TRUNCATE, a column it does not have, a write
 * inside a transaction, which runs on the source's connection), and every write when the
 * target is another engine, is refused before it runs with SQLSTATE 0A000 and a message that
 * says why and what to do; nothing changes in either store, the refusal is counted, the row
 * API still writes, and rolling the cutover back makes SQL-front writes go to the source
 * again. After retire-source the source is stale: reads that would run there are refused,
 * reads the target answers still work.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { sleep } from '../helpers/http-client.js';
import { convergence, createTestTables, snapshot, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front after a cutover (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

/** The table's primary as /admin/status shows it; null while a switch is under way. */
async function primaryOfTable(tandem: TandemHarness, table: string): Promise<string | null> {
  const res = await tandem.request.get('/admin/status').expect(200);
  const row = (res.body as { tables: Array<{ table: string; primary: string | null; switch: unknown }> }).tables.find((t) => t.table === table);
  return row && row.switch === null ? row.primary : null;
}

const on = (name: string): Feature => ({ name, enabled: true, strategies: [{ name: 'default' }] });
const CUT_OVER: Feature[] = [...DUAL_WRITE_ALL, on('tandem.people.target-primary'), on('tandem.kv.target-primary')];

for (const pair of PG_SOURCE) {
  describe(`SQL front after a cutover (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let client: pg.Client;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlcutsrc');
      target = await createTestDatabase(pair.target, 'sqlcuttgt');
      await createTestTables(source.knex, target.knex);
      tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies(), overrides: { sql: { port: 0 } } });
      client = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${tandem.app.sqlAddress().port}/app` });
      await client.connect();
    });

    afterAll(async () => {
      await client?.end();
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    const primaryOf = (table: string) => primaryOfTable(tandem, table);
    const stageOf = async (table: string): Promise<string | undefined> => {
      const res = await tandem.request.get('/admin/status').expect(200);
      return (res.body as { tables: Array<{ table: string; stage: string }> }).tables.find((t) => t.table === table)?.stage;
    };
    const refusedCount = async (reason = 'target_primary'): Promise<number> => {
      const res = await tandem.request.get('/metrics').expect(200);
      const m = new RegExp(`^tandem_sql_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(res.text);
      return m ? Number(m[1]) : 0;
    };
    const drained = async () => {
      const [s, t] = await Promise.all([outboxCounts(source.knex), outboxCounts(target.knex)]);
      return s.pending === 0 && t.pending === 0 && s.dead === 0 && t.dead === 0;
    };
    const bothStores = async () => ({
      source: { people: await snapshot(source.knex, 'people', ['id']), kv: await snapshot(source.knex, 'kv', ['tenant', 'k']) },
      target: { people: await snapshot(target.knex, 'app_people', ['id']), kv: await snapshot(target.knex, 'kv', ['tenant', 'k']) },
    });
    const expectRefused = (e: { code?: string; message: string }, table: string, why = 'the SQL front speaks PostgreSQL and writes only to a PostgreSQL primary') => {
      expect(e.code).toBe('0A000');
      expect(e.message).toContain(`${table} is not writable through the SQL front here: its primary moved to the target (${pair.target}) at cutover and ${why}`);
      expect(e.message).toContain(`write it through the HTTP API (/v1/tables/${table}/rows) or roll the cutover back`);
    };
    const statementsOnTarget = async (kind: string, table: string): Promise<number> => {
      const res = await tandem.request.get('/metrics').expect(200);
      const m = new RegExp(`^tandem_sql_statements_total\\{kind="${kind}",table="${table}",store="target",result="ok"\\} (\\d+)$`, 'm').exec(res.text);
      return m ? Number(m[1]) : 0;
    };
    const expectStale = (e: { code?: string; message: string }) => {
      expect(e.code).toBe('0A000');
      expect(e.message).toContain(`people cannot be read here: its primary moved to the target (${pair.target}) at cutover and the source, where the SQL front would run this read, is stale`);
    };
    /** The error a statement answers (it must fail). */
    const failure = async (run: Promise<unknown>): Promise<{ code?: string; message: string }> => {
      try {
        await run;
      } catch (error) {
        return error as { code?: string; message: string };
      }
      throw new Error('the statement succeeded');
    };

    it.runIf(pair.target !== 'pg')('refuses writes to a table whose primary moved to another engine, changes nothing, counts them; the row API writes; rollback restores SQL writes', async () => {
      // Before the cutover: SQL-front writes work (and one named statement is prepared now).
      await client.query("INSERT INTO people (id, email, full_name, age) VALUES (1, 'a@x', 'Ann', 30)");
      await client.query('INSERT INTO kv (tenant, k, val) VALUES ($1, $2, $3), ($1, 2, 20)', ['t', 1, 10]);
      const del = { name: 'del-kv', text: 'DELETE FROM kv WHERE tenant = $1 AND k = $2', values: ['t', 99] };
      expect((await client.query(del)).rowCount).toBe(0);
      await waitFor(drained, { what: 'outbox drained' });
      expect(await refusedCount()).toBe(0);

      tandem.setFlags(CUT_OVER);
      await waitFor(async () => (await primaryOf('people')) === 'target' && (await primaryOf('kv')) === 'target', { timeoutMs: 30_000, what: 'people and kv primary on the target' });
      const before = await bothStores();
      expect(before.source.people).toHaveLength(1);
      expect(before.source.kv).toHaveLength(2);

      // Simple protocol.
      expectRefused(await failure(client.query("INSERT INTO people (id, email, full_name) VALUES (2, 'b@x', 'Bob')")), 'people');
      // Extended protocol: parameterised (unnamed statement), and a named statement prepared before the cutover.
      expectRefused(await failure(client.query('UPDATE people SET age = $1 WHERE id = $2', [31, 1])), 'people');
      expectRefused(await failure(client.query({ ...del, values: ['t', 1] })), 'kv');
      // Guarded statements too (not "while it is dual-writing": the source is a secondary now).
      expectRefused(await failure(client.query('TRUNCATE kv')), 'kv');
      // Inside a transaction: reads are served by the source; the refusal fails the transaction.
      await client.query('BEGIN');
      expect((await client.query('SELECT count(*)::int AS n FROM people')).rows).toEqual([{ n: 1 }]);
      expectRefused(await failure(client.query("DELETE FROM kv WHERE tenant = 't'")), 'kv');
      expect((await failure(client.query('SELECT 1'))).code).toBe('25P02');
      await client.query('ROLLBACK');
      // The session is usable afterwards; reads outside a transaction still answer.
      expect((await client.query('SELECT email FROM people ORDER BY id')).rows).toEqual([{ email: 'a@x' }]);

      // POST /v1/sql: one statement, and a list (refused before any of it runs).
      const one = await tandem.request.post('/v1/sql').send({ sql: 'UPDATE kv SET val = $1', params: [7] }).expect(422);
      expect(one.body).toMatchObject({ code: 'sql_refused', sqlstate: '0A000', statement: 0 });
      expect(one.body.detail).toContain('kv is not writable through the SQL front');
      const list = await tandem.request
        .post('/v1/sql')
        .send({ statements: [{ sql: 'SELECT 1' }, { sql: 'DELETE FROM people WHERE id = $1', params: [1] }] })
        .expect(422);
      expect(list.body).toMatchObject({ code: 'sql_refused', sqlstate: '0A000', statement: 1 });

      expect(await refusedCount()).toBe(7);
      expect(await bothStores()).toEqual(before);

      // The row API writes to the new primary (and the source follows by reverse replication).
      await tandem.request.post('/v1/tables/people/rows').send({ values: { id: 3, email: 'c@x', full_name: 'Cy' } }).expect(201);
      expect(await target.knex('app_people').where({ id: 3 }).first()).toMatchObject({ email: 'c@x', name: 'Cy' });
      await waitFor(async () => (await source.knex('people').where({ id: 3 }).first()) !== undefined, { what: 'reverse replication of the row API write' });

      // Rollback: the source is primary again and the SQL front writes (and replicates) as before.
      tandem.setFlags(DUAL_WRITE_ALL);
      await waitFor(async () => (await primaryOf('people')) === 'source' && (await primaryOf('kv')) === 'source', { timeoutMs: 30_000, what: 'people and kv primary on the source again' });
      expect((await client.query('UPDATE people SET age = $1 WHERE id = $2', [32, 1])).rowCount).toBe(1);
      expect((await client.query({ ...del, values: ['t', 2] })).rowCount).toBe(1);
      expect((await client.query("INSERT INTO people (id, email, full_name) VALUES (4, 'd@x', 'Di')")).rowCount).toBe(1);
      await tandem.request.post('/v1/sql').send({ sql: 'UPDATE kv SET val = $1 WHERE k = 1', params: [11] }).expect(200);
      await waitFor(drained, { what: 'both outboxes drained' });
      const after = await convergence(source.knex, target.knex);
      expect(after.people.actual).toEqual(after.people.expected);
      expect(after.kv.actual).toEqual(after.kv.expected);
      expect(after.people.actual.map((r) => [r['id'], r['age']])).toEqual([[1, 32], [3, null], [4, null]]);
      expect(after.kv.actual.map((r) => [r['k'], r['val']])).toEqual([[1, 11]]);
      expect(await refusedCount()).toBe(7);
    }, 120_000);

    it.runIf(pair.target === 'pg')('writes to a table whose primary moved run on the PostgreSQL target, renamed, and replicate back; what it cannot take is refused; rollback restores', async () => {
      // Before the cutover (and one named statement is prepared now).
      await client.query("INSERT INTO people (id, email, full_name, age) VALUES (1, 'a@x', 'Ann', 30)");
      await client.query('INSERT INTO kv (tenant, k, val) VALUES ($1, $2, $3), ($1, 2, 20)', ['t', 1, 10]);
      const del = { name: 'del-kv', text: 'DELETE FROM kv WHERE tenant = $1 AND k = $2', values: ['t', 99] };
      expect((await client.query(del)).rowCount).toBe(0);
      await waitFor(drained, { what: 'outbox drained' });

      tandem.setFlags(CUT_OVER);
      await waitFor(async () => (await primaryOf('people')) === 'target' && (await primaryOf('kv')) === 'target', { timeoutMs: 30_000, what: 'people and kv primary on the target' });

      // Simple protocol: the renamed column under the client's name in RETURNING.
      const inserted = await client.query("INSERT INTO people (id, email, full_name, age) VALUES (2, 'b@x', 'Bob', 40) RETURNING id, full_name AS who");
      expect([inserted.command, inserted.rowCount, inserted.rows]).toEqual(['INSERT', 1, [{ id: 2, who: 'Bob' }]]);
      // Extended protocol: parameterised (unnamed statement), and a named statement prepared before the cutover.
      expect((await client.query('UPDATE people SET age = $1, full_name = upper(full_name) WHERE id = $2', [31, 1])).rowCount).toBe(1);
      expect((await client.query({ ...del, values: ['t', 2] })).rowCount).toBe(1);
      // Without a column list the values follow the source's columns; ON CONFLICT names the renamed column.
      expect((await client.query("INSERT INTO kv VALUES ('t', 3, 30, 'n')")).rowCount).toBe(1);
      await client.query("INSERT INTO people (id, email, full_name) VALUES (2, 'b@x', 'Bobby') ON CONFLICT (id) DO UPDATE SET full_name = excluded.full_name");
      // POST /v1/sql: one statement, and a list run in one transaction on the target.
      await tandem.request.post('/v1/sql').send({ sql: 'UPDATE kv SET val = $1 WHERE k = 1', params: [11] }).expect(200);
      const list = await tandem.request
        .post('/v1/sql')
        .send({ statements: [{ sql: 'DELETE FROM kv WHERE k = $1', params: [3] }, { sql: "UPDATE people SET note = 'n' WHERE id = 2 RETURNING full_name" }] })
        .expect(200);
      expect(list.body.results.map((r: { command: string; rowCount: number }) => [r.command, r.rowCount])).toEqual([['DELETE', 1], ['UPDATE', 1]]);
      expect(list.body.results[1].rows).toEqual([{ full_name: 'Bobby' }]);
      expect(await statementsOnTarget('insert', 'people')).toBe(2);
      expect(await statementsOnTarget('update', 'kv')).toBe(1);

      // The target has the writes under its names; the source follows by reverse replication.
      expect(await target.knex('app_people').orderBy('id').select('id', 'name', 'age', 'note')).toEqual([
        { id: 1, name: 'ANN', age: 31, note: null },
        { id: 2, name: 'Bobby', age: 40, note: 'n' },
      ]);
      await waitFor(drained, { what: 'both outboxes drained' });
      expect(await source.knex('people').orderBy('id').select('id', 'full_name', 'age', 'note')).toEqual([
        { id: 1, full_name: 'ANN', age: 31, note: null },
        { id: 2, full_name: 'Bobby', age: 40, note: 'n' },
      ]);
      const converged = await convergence(source.knex, target.knex);
      expect(converged.people.actual).toEqual(converged.people.expected);
      expect(converged.kv.actual).toEqual(converged.kv.expected);
      expect(converged.kv.actual.map((r) => [r['k'], r['val']])).toEqual([[1, 11]]);

      // A transaction whose first statement names a moved table opens on the target: its
      // reads and writes of moved tables run there renamed, and commit (or roll back) together.
      await client.query('BEGIN');
      expect((await client.query('UPDATE people SET age = age + $1 WHERE id = $2 RETURNING full_name, age', [1, 2])).rows).toEqual([{ full_name: 'Bobby', age: 41 }]);
      expect((await client.query('SELECT full_name, age FROM people WHERE id = 2')).rows).toEqual([{ full_name: 'Bobby', age: 41 }]);
      await client.query("INSERT INTO kv (tenant, k, val) VALUES ('t', 5, 50)");
      await client.query('COMMIT');
      await client.query('BEGIN');
      await client.query('DELETE FROM people WHERE id = $1', [1]);
      await client.query("INSERT INTO kv (tenant, k, val) VALUES ('t', 6, 60)");
      await client.query('ROLLBACK');
      // BEGIN … COMMIT with nothing in between is answered by Tandem.
      await client.query('BEGIN');
      await client.query('COMMIT');
      expect(await target.knex('kv').orderBy('k').pluck('k')).toEqual([1, 5]);
      expect(await target.knex('app_people').orderBy('id').pluck('id')).toEqual([1, 2]);
      await client.query("DELETE FROM kv WHERE k = 5");
      await waitFor(drained, { what: 'both outboxes drained' });
      expect(await source.knex('people').where({ id: 2 }).first()).toMatchObject({ age: 41 });

      // What the target cannot take is refused before it runs, and changes nothing.
      const before = await bothStores();
      expectRefused(await failure(client.query('TRUNCATE kv')), 'kv', 'the SQL front writes there only INSERT, UPDATE and DELETE (not TRUNCATE)');
      expectRefused(await failure(client.query('UPDATE people SET legacy = $1', ['x'])), 'people', 'the SQL front cannot write this statement there: column legacy is not copied to the target');
      // A transaction whose first statement needed the source (it names no moved table) stays
      // there: the write fails the transaction. So does a query string that mixes them.
      const onSource = 'the SQL front runs a transaction (or a query string of several statements) on one server, here the source';
      await client.query('BEGIN');
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expectRefused(await failure(client.query("DELETE FROM kv WHERE tenant = 't'")), 'kv', onSource);
      expect((await failure(client.query('SELECT 1'))).code).toBe('25P02');
      await client.query('ROLLBACK');
      expectRefused(await failure(client.query('SELECT 1; DELETE FROM kv WHERE k = 1')), 'kv', onSource);
      // A transaction opened on the target (its first statement wrote a moved table) refuses what it cannot rename.
      await client.query('BEGIN');
      await client.query("DELETE FROM kv WHERE tenant = 't' AND k = 1");
      expectRefused(await failure(client.query("UPDATE people SET legacy = 'x'")), 'people', 'the SQL front cannot write this statement there: column legacy is not copied to the target');
      await client.query('ROLLBACK');
      expect(await refusedCount()).toBe(5);
      expect(await bothStores()).toEqual(before);

      // Rollback: the source is primary again and SQL-front writes go there (and replicate forward).
      tandem.setFlags(DUAL_WRITE_ALL);
      await waitFor(async () => (await primaryOf('people')) === 'source' && (await primaryOf('kv')) === 'source', { timeoutMs: 30_000, what: 'people and kv primary on the source again' });
      expect((await client.query('UPDATE people SET age = $1 WHERE id = $2', [32, 1])).rowCount).toBe(1);
      await waitFor(drained, { what: 'both outboxes drained' });
      const after = await convergence(source.knex, target.knex);
      expect(after.people.actual).toEqual(after.people.expected);
      expect(after.people.actual.map((r) => [r['id'], r['age']])).toEqual([[1, 32], [2, 41]]);
      expect(await statementsOnTarget('update', 'people')).toBe(3);
    }, 120_000);

    it('after retire-source, reads the stale source would serve are refused; reads the target answers still work', async () => {
      tandem.setFlags([...CUT_OVER, on('tandem.people.retire-source')]);
      await waitFor(async () => (await stageOf('people')) === 'target-only' && (await stageOf('kv')) === 'target-primary', { timeoutMs: 30_000, what: 'people target-only, kv target-primary' });
      // Only the target gets this row now: the source misses it.
      await tandem.request.post('/v1/tables/people/rows').send({ values: { id: 5, email: 'e@x', full_name: 'Eve' } }).expect(201);
      expect(await source.knex('people').where({ id: 5 }).first()).toBeUndefined();
      const before = await refusedCount('source_stale');

      // A single-table read outside a transaction is answered by the target (it has the new row).
      expect((await client.query('SELECT id, email FROM people WHERE id = 5')).rows).toEqual([{ id: 5, email: 'e@x' }]);
      // A parameterised read is answered by the target too (another engine: its translated subset).
      expect((await client.query('SELECT email FROM people WHERE id = $1', [5])).rows).toEqual([{ email: 'e@x' }]);
      // What would run on the source is refused: a join, a read in a transaction, /v1/sql.
      expectStale(await failure(client.query('SELECT p.id FROM people p JOIN kv ON kv.k = p.id')));
      await client.query('BEGIN');
      // On a PostgreSQL target the transaction opens there (its first statement reads a table
      // whose primary moved), and reads people there too. On another engine it runs on the
      // source: kv's is kept current by reverse replication, people's is stale.
      expect((await client.query('SELECT count(*)::int AS n FROM kv')).rows).toEqual([{ n: 1 }]);
      if (pair.target === 'pg') {
        expect((await client.query('SELECT count(*)::int AS n FROM people WHERE id = 5')).rows).toEqual([{ n: 1 }]);
        await client.query('COMMIT');
      } else {
        expectStale(await failure(client.query('SELECT count(*) FROM people')));
        expect((await failure(client.query('SELECT 1'))).code).toBe('25P02');
        await client.query('ROLLBACK');
      }
      const http = await tandem.request.post('/v1/sql').send({ sql: 'SELECT id FROM people' }).expect(422);
      expect(http.body).toMatchObject({ code: 'sql_refused', sqlstate: '0A000' });
      expect(await refusedCount('source_stale')).toBe(before + (pair.target === 'pg' ? 2 : 3));
    }, 120_000);
  });
}

/** Errors a SQL-front write could get while a table's primary moves, if it did not wait: a frozen or secondary state row, a transaction left on the old primary, the rest of that transaction. */
const SWITCH_ERRORS = new Set(['22P02', '0A000', '25P02']);

for (const pair of PG_SOURCE.filter((p) => p.target === 'pg')) {
  describe(`SQL front writes while the primary moves back and forth (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlswsrc');
      target = await createTestDatabase(pair.target, 'sqlswtgt');
      await createTestTables(source.knex, target.knex);
      // A generous hold: on a loaded machine a switch (its drain) may take longer than the default 5 s.
      tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies(), overrides: { sql: { port: 0 }, cutover: { holdMs: 30_000 } } });
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    const primaryOf = (table: string) => primaryOfTable(tandem, table);

    /** SQL-front statements on kv that ran on the target (any kind). */
    const statementsOnTarget = async (): Promise<number> => {
      const res = await tandem.request.get('/metrics').expect(200);
      let n = 0;
      for (const m of res.text.matchAll(/^tandem_sql_statements_total\{kind="(?:insert|update|delete)",table="kv",store="target",result="ok"\} (\d+)$/gm)) n += Number(m[1]);
      return n;
    };

    it('loses no acknowledged write and answers no switch error: autocommit and transactions, on the source and on the target, through two cutovers and rollbacks', async () => {
      // Each writer owns its keys and runs one unit at a time, so the last acknowledged value of a key is its value.
      const expected = new Map<number, number | null>();
      const errors = new Map<string, number>();
      let stop = false;
      let acknowledged = 0;
      const writer = async (w: number) => {
        const client = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${tandem.app.sqlAddress().port}/app` });
        await client.connect();
        const mine: number[] = [];
        let next = w * 100_000;
        let v = 0;
        try {
          while (!stop) {
            v++;
            const roll = v % 5;
            const existing = mine.length > 0 ? (mine[v % mine.length] as number) : undefined;
            try {
              if (roll === 0 && existing !== undefined) {
                await client.query('DELETE FROM kv WHERE tenant = $1 AND k = $2', ['w', existing]);
                expected.set(existing, null);
                mine.splice(mine.indexOf(existing), 1);
              } else if (roll === 1 && existing !== undefined) {
                await client.query(`UPDATE kv SET val = ${v} WHERE tenant = 'w' AND k = ${existing}`);
                expected.set(existing, v);
              } else if (roll === 2) {
                const k = ++next;
                await client.query('BEGIN');
                try {
                  await client.query('INSERT INTO kv (tenant, k, val) VALUES ($1, $2, $3)', ['w', k, v]);
                  if (existing !== undefined) await client.query('UPDATE kv SET val = $1 WHERE tenant = $2 AND k = $3', [v, 'w', existing]);
                  await client.query('COMMIT');
                } catch (error) {
                  await client.query('ROLLBACK');
                  throw error;
                }
                expected.set(k, v);
                mine.push(k);
                if (existing !== undefined) expected.set(existing, v);
              } else {
                const k = ++next;
                await client.query('INSERT INTO kv (tenant, k, val) VALUES ($1, $2, $3)', ['w', k, v]);
                expected.set(k, v);
                mine.push(k);
              }
              acknowledged++;
            } catch (error) {
              const code = (error as { code?: string }).code ?? 'none';
              errors.set(code, (errors.get(code) ?? 0) + 1);
              if (!SWITCH_ERRORS.has(code)) throw error;
              await sleep(20);
            }
          }
        } finally {
          await client.end();
        }
      };
      const writers = [0, 1, 2, 3].map((w) => writer(w + 1));
      const onTargetBefore = await statementsOnTarget();
      for (let round = 0; round < 2; round++) {
        await sleep(400);
        tandem.setFlags(CUT_OVER);
        await waitFor(async () => (await primaryOf('kv')) === 'target', { timeoutMs: 30_000, what: 'kv primary on the target' });
        await sleep(400);
        tandem.setFlags(DUAL_WRITE_ALL);
        await waitFor(async () => (await primaryOf('kv')) === 'source', { timeoutMs: 30_000, what: 'kv primary on the source again' });
      }
      await sleep(300);
      stop = true;
      await Promise.all(writers);
      await waitFor(async () => {
        const [s, t] = await Promise.all([outboxCounts(source.knex), outboxCounts(target.knex)]);
        return s.pending === 0 && t.pending === 0 && s.dead === 0 && t.dead === 0;
      }, { what: 'both outboxes drained' });

      expect(acknowledged).toBeGreaterThan(50);
      // Some of them ran on the target while it was primary.
      expect(await statementsOnTarget()).toBeGreaterThan(onTargetBefore);
      const rows = new Map((await source.knex('kv').where({ tenant: 'w' }).select('k', 'val')).map((r: { k: number; val: number }) => [r.k, r.val]));
      const want = new Map([...expected].filter((e): e is [number, number] => e[1] !== null));
      expect(rows).toEqual(want);
      const after = await convergence(source.knex, target.knex);
      expect(after.kv.actual).toEqual(after.kv.expected);
      // No client saw a switch: autocommit writes and a transaction's first statement wait it
      // out (within cutover.holdMs) and run on the primary it ends with.
      expect(Object.fromEntries(errors)).toEqual({});
    }, 180_000);
  });
}
