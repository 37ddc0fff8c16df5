import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const run = promisify(execFile);
const HAS_TOOL = spawnSync('psql', ['--version']).status === 0;
if (!HAS_TOOL) console.warn('[tandem tests] SKIPPING the psql test: psql is not installed (Debian: postgresql-client)');
const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

for (const pair of PG_SOURCE) {
  describe(`SQL front: psql and node-postgres through Tandem (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let url: string;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlsrc');
      target = await createTestDatabase(pair.target, 'sqltgt');
      await createTestTables(source.knex, target.knex);
      await source.knex.raw('CREATE TABLE notes (id serial PRIMARY KEY, body text)');
      tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies(), overrides: { sql: { port: 0 } } });
      const { port } = tandem.app.sqlAddress();
      url = `postgres://app@127.0.0.1:${port}/app`;
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    it.skipIf(!HAS_TOOL)('psql: writes on policy tables are replicated, results and tags are PostgreSQL\'s', async () => {
      const { stdout } = await run('psql', [url, '-X', '-v', 'ON_ERROR_STOP=1', '-c', "INSERT INTO people (email, full_name, age) VALUES ('a@x', 'Ann', 30), ('b@x', 'Bob', 40)", '-c', 'UPDATE people SET age = age + 1 WHERE age > 0', '-c', "INSERT INTO people (email, full_name) VALUES ('c@x', 'Cy') RETURNING id, upper(full_name) AS shout, *", '-c', "DELETE FROM people WHERE email = 'b@x'", '-c', 'SELECT email, age FROM people ORDER BY id', '-c', "INSERT INTO notes (body) VALUES ('n1')"]);
      expect(stdout).toContain('INSERT 0 2');
      expect(stdout).toContain('UPDATE 2');
      expect(stdout).toMatch(/id \| shout \| id \| email \| full_name \| age \| active \| note \| legacy/);
      expect(stdout).toMatch(/3 \| CY\s+\|\s+3 \| c@x/);
      expect(stdout).toContain('INSERT 0 1');
      expect(stdout).toContain('DELETE 1');
      expect(stdout).toMatch(/a@x\s+\|\s+31/);
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
      const state = await convergence(source.knex, target.knex);
      expect(state.people.actual).toEqual(state.people.expected);
      expect(state.people.actual.length).toBe(2);
    });

    it('node-postgres: parameterised, named statements, transactions, errors inside a transaction', async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        // Parameterised (extended protocol, unnamed statement); text keys with characters formatKey encodes.
        const tenants = ['acme', 'a b/c', 'zoë,1'];
        for (const [i, tenant] of tenants.entries()) {
          const r = await client.query('INSERT INTO kv (tenant, k, val) VALUES ($1, $2, $3)', [tenant, i, i * 10]);
          expect(r.command).toBe('INSERT');
          expect(r.rowCount).toBe(1);
          expect(r.rows).toEqual([]);
        }
        // Named statement, run several times (prepared once per pooled connection).
        for (let i = 0; i < 5; i++) {
          const r = await client.query({ name: 'bump', text: 'UPDATE kv SET val = val + $1 WHERE tenant = $2 RETURNING k, val', values: [1, 'acme'] });
          expect(r.command).toBe('UPDATE');
          expect(r.rowCount).toBe(1);
          expect(r.rows).toEqual([{ k: 0, val: i + 1 }]);
          expect(r.fields.map((f) => [f.name, f.dataTypeID])).toEqual([['k', 23], ['val', 23]]);
        }
        // A transaction: nothing is replicated before COMMIT; ROLLBACK leaves nothing behind.
        await client.query('BEGIN');
        await client.query('INSERT INTO kv (tenant, k, val) VALUES ($1, 10, 1), ($1, 11, 2)', ['tx']);
        const inside = await client.query("SELECT count(*)::int AS n FROM kv WHERE tenant = 'tx'");
        expect(inside.rows[0].n).toBe(2);
        await client.query('COMMIT');
        await client.query('BEGIN');
        await client.query("INSERT INTO kv (tenant, k, val) VALUES ('rolled', 1, 1)");
        await expect(client.query('INSERT INTO kv (tenant, k, val) VALUES ($1, $2, 1)', ['tx', 10])).rejects.toMatchObject({ code: '23505' });
        await expect(client.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
        await client.query('ROLLBACK');
        // Savepoints pass through.
        await client.query('BEGIN');
        await client.query("INSERT INTO kv (tenant, k, val) VALUES ('sp', 1, 1)");
        await client.query('SAVEPOINT s1');
        await client.query("INSERT INTO kv (tenant, k, val) VALUES ('sp', 2, 2)");
        await client.query('ROLLBACK TO SAVEPOINT s1');
        await client.query('COMMIT');
        const sp = await client.query("SELECT k FROM kv WHERE tenant = 'sp' ORDER BY k");
        expect(sp.rows).toEqual([{ k: 1 }]);
        // DELETE with a CTE, ON CONFLICT upsert, RETURNING *.
        const up = await client.query("INSERT INTO kv (tenant, k, val) VALUES ('acme', 0, 100) ON CONFLICT (tenant, k) DO UPDATE SET val = excluded.val + kv.val RETURNING *");
        expect(up.rows).toEqual([{ tenant: 'acme', k: 0, val: 105, note: null }]);
        const del = await client.query("WITH doomed AS (SELECT k FROM kv WHERE tenant = 'tx') DELETE FROM kv WHERE tenant = 'tx' AND k IN (SELECT k FROM doomed)");
        expect(del.command).toBe('DELETE');
        expect(del.rowCount).toBe(2);
        const rolled = await source.knex('kv').where({ tenant: 'rolled' });
        expect(rolled).toEqual([]);
      } finally {
        await client.end();
      }
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
      const state = await convergence(source.knex, target.knex);
      expect(state.kv.actual).toEqual(state.kv.expected);
      expect(state.kv.actual.length).toBe(4);
      for (const table of ['people', 'kv']) {
        const report = await tandem.app.verify(table);
        expect(report.clean).toBe(true);
      }
    });

    it('session SETs outside a transaction follow the session across pooled connections and never leak into another', async () => {
      const a = new pg.Client({ connectionString: url });
      const b = new pg.Client({ connectionString: url });
      await a.connect();
      await b.connect();
      try {
        const zone = async (c: pg.Client) => ((await c.query('SHOW TimeZone')).rows[0] as { TimeZone: string }).TimeZone;
        const defaultZone = await zone(b);
        expect(defaultZone).not.toBe('Asia/Tokyo');
        await a.query("SET TIME ZONE 'Asia/Tokyo'");
        for (let i = 0; i < 5; i++) {
          expect(await zone(a)).toBe('Asia/Tokyo');
          expect(await zone(b)).toBe(defaultZone);
        }
        await a.query('RESET ALL');
        expect(await zone(a)).toBe(defaultZone);
      } finally {
        await a.end();
        await b.end();
      }
    });

    it('node-postgres: a running statement is cancelled (57014) and the session goes on', async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const slow = client.query('SELECT pg_sleep(5)');
        await new Promise((r) => setTimeout(r, 300));
        const canceller = new pg.Client({ connectionString: url });
        // node-postgres sends a CancelRequest with the BackendKeyData it was given.
        await (canceller as unknown as { cancel(c: pg.Client, q: unknown): void }).cancel(client, (client as unknown as { activeQuery: unknown }).activeQuery);
        await expect(slow).rejects.toMatchObject({ code: '57014' });
        const after = await client.query('SELECT 41 + 1 AS n');
        expect(after.rows).toEqual([{ n: 42 }]);
      } finally {
        await client.end();
      }
    });
  });
}
