import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const run = promisify(execFile);
const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');

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

    it('psql: writes on policy tables are replicated, results and tags are PostgreSQL\'s', async () => {
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
  });
}
