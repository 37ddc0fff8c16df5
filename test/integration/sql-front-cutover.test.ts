/**
 * Issue 12, "After cutover": once a table's primary moved to the target, the SQL front (its
 * connections point at the source) refuses writes to it before they run — simple and
 * extended protocol, a statement prepared before the cutover, inside a transaction, and
 * POST /v1/sql — with SQLSTATE 0A000 and a message that says why and what to do; nothing
 * changes in either store, the refusal is counted, the row API still writes, and rolling
 * the cutover back makes SQL-front writes work again. After retire-source the source is stale:
 * reads that would run there are refused, reads the target answers still work.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { convergence, createTestTables, snapshot, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front after a cutover (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
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

    const primaryOf = async (table: string): Promise<string | null> => {
      const res = await tandem.request.get('/admin/status').expect(200);
      const row = (res.body as { tables: Array<{ table: string; primary: string | null; switch: unknown }> }).tables.find((t) => t.table === table);
      return row && row.switch === null ? row.primary : null;
    };
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
    const expectRefused = (e: { code?: string; message: string }, table: string) => {
      expect(e.code).toBe('0A000');
      expect(e.message).toContain(`${table} is not writable through the SQL front: its primary moved to the target (${pair.target}) at cutover`);
      expect(e.message).toContain(pair.target === 'pg' ? 'the SQL front does not route writes to the target yet' : 'the SQL front speaks PostgreSQL and writes only to a PostgreSQL primary');
      expect(e.message).toContain(`write it through the HTTP API (/v1/tables/${table}/rows) or roll the cutover back`);
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

    it('refuses writes to a table whose primary moved, changes nothing, counts them; the row API writes; rollback restores SQL writes', async () => {
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
      // kv's source is kept current by reverse replication: it serves reads in a transaction.
      expect((await client.query('SELECT count(*)::int AS n FROM kv')).rows).toEqual([{ n: 1 }]);
      expectStale(await failure(client.query('SELECT count(*) FROM people')));
      expect((await failure(client.query('SELECT 1'))).code).toBe('25P02');
      await client.query('ROLLBACK');
      const http = await tandem.request.post('/v1/sql').send({ sql: 'SELECT id FROM people' }).expect(422);
      expect(http.body).toMatchObject({ code: 'sql_refused', sqlstate: '0A000' });
      expect(await refusedCount('source_stale')).toBe(before + 3);
    }, 120_000);
  });
}
