import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('POST /v1/sql (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

const TOKEN = 'sql-http-token-1';

for (const pair of PG_SOURCE) {
  describe(`POST /v1/sql through the same classifier and write path (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    const post = (body: unknown) => tandem.request.post('/v1/sql').set('authorization', `Bearer ${TOKEN}`).send(body as object);

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlhttpsrc');
      target = await createTestDatabase(pair.target, 'sqlhttptgt');
      await createTestTables(source.knex, target.knex);
      tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies(), env: { TANDEM_API_TOKENS: TOKEN } });
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    it('runs statements with bound parameters, replicates writes, answers PostgreSQL-shaped results', async () => {
      await tandem.request.post('/v1/sql').send({ sql: 'SELECT 1' }).expect(401);
      const ins = await post({ sql: 'INSERT INTO people (email, full_name, age) VALUES ($1, $2, $3), ($4, $5, $6) RETURNING id, email', params: ['h1@x', 'H One', 1, 'h2@x', 'H Two', 2] }).expect(200);
      expect(ins.body).toMatchObject({ command: 'INSERT', rowCount: 2, fields: [{ name: 'id', dataTypeID: 23 }, { name: 'email', dataTypeID: 1043 }] });
      expect(ins.body.rows.map((r: { email: string }) => r.email)).toEqual(['h1@x', 'h2@x']);
      const upd = await post({ sql: 'UPDATE people SET age = age + $1', params: [10] }).expect(200);
      expect(upd.body).toEqual({ command: 'UPDATE', rowCount: 2, fields: [], rows: [] });
      const many = await post({
        statements: [
          { sql: 'INSERT INTO kv (tenant, k, val) VALUES ($1, 1, 1), ($1, 2, 2)', params: ['h t'] },
          { sql: 'DELETE FROM kv WHERE tenant = $1 AND k = 2', params: ['h t'] },
          { sql: 'SELECT tenant, k, val FROM kv ORDER BY k' },
        ],
      }).expect(200);
      expect(many.body.results.map((r: { command: string; rowCount: number }) => [r.command, r.rowCount])).toEqual([['INSERT', 2], ['DELETE', 1], ['SELECT', 1]]);
      expect(many.body.results[2].rows).toEqual([{ tenant: 'h t', k: 1, val: 1 }]);
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
      const state = await convergence(source.knex, target.knex);
      expect(state.people.actual).toEqual(state.people.expected);
      expect(state.kv.actual).toEqual(state.kv.expected);
      expect(state.people.actual.length).toBe(2);
    });

    it('errors are problem+json with the SQLSTATE; a failed statement rolls the whole list back', async () => {
      const syntax = await post({ sql: 'SELEC 1' }).expect(400);
      expect(syntax.headers['content-type']).toContain('application/problem+json');
      expect(syntax.body).toMatchObject({ code: 'sql_error', sqlstate: '42601', position: 1 });
      const refused = await post({ sql: 'TRUNCATE people' }).expect(422);
      expect(refused.body).toMatchObject({ code: 'sql_refused', sqlstate: '0A000' });
      const dup = await post({ statements: [{ sql: "INSERT INTO kv (tenant, k) VALUES ('rb', 1)" }, { sql: "INSERT INTO people (email) VALUES ('h1@x')" }] }).expect(409);
      expect(dup.body).toMatchObject({ sqlstate: '23505', statement: 1 });
      expect(await source.knex('kv').where({ tenant: 'rb' })).toEqual([]);
      await post({ sql: 42 }).expect(400);
      await post({ sql: 'SELECT $1::int', params: 'x' }).expect(400);
      const unknown = await post({ sql: 'SELECT * FROM nope' }).expect(400);
      expect(unknown.body).toMatchObject({ sqlstate: '42P01' });
    });
  });
}
