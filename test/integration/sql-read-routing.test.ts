import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front read routing (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

const READ_TARGET_ALL = [...DUAL_WRITE_ALL, { name: 'tandem.people.read-target', enabled: true, strategies: [{ name: 'default' }] }];

for (const pair of PG_SOURCE) {
  describe(`SQL front: reads of policy tables outside a transaction (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let client: pg.Client;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlrdsrc');
      target = await createTestDatabase(pair.target, 'sqlrdtgt');
      await createTestTables(source.knex, target.knex);
      tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies(), flags: READ_TARGET_ALL, overrides: { sql: { port: 0 } } });
      client = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${tandem.app.sqlAddress().port}/app` });
      await client.connect();
      await client.query("INSERT INTO people (email, full_name, age, legacy) VALUES ('r1@x', 'Reader One', 30, 'L1'), ('r2@x', 'Reader Two', 40, 'L2')");
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
    });

    afterAll(async () => {
      await client?.end();
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    async function routes(store: string): Promise<number> {
      const text = await tandem.app.metrics.registry.getSingleMetricAsString('tandem_sql_read_routes_total');
      let n = 0;
      for (const line of text.split('\n')) if (line.includes(`store="${store}"`) && line.includes('table="people"')) n += Number(line.split(' ').pop());
      return n;
    }

    it('with read-target at 100 %, a single-table SELECT is answered as the source would (same names), by the target where it is PostgreSQL', async () => {
      const sql = 'SELECT id, full_name, upper(email) AS mail FROM people WHERE age >= 30 ORDER BY full_name';
      const before = { target: await routes('target'), source: await routes('source') };
      const viaTandem = await client.query(sql);
      const direct = await source.knex.raw(sql);
      expect(viaTandem.rows).toEqual(direct.rows);
      expect(viaTandem.fields.map((f) => f.name)).toEqual(['id', 'full_name', 'mail']);
      const star = await client.query('SELECT * FROM people WHERE id = 1');
      if (pair.target === 'pg') {
        expect(await routes('target')).toBe(before.target + 1);
        expect(await routes('source')).toBe(before.source + 1);
        // `*` names the source's columns; the excluded column cannot come from the target, so that read went to the source.
        expect(star.rows[0]).toMatchObject({ id: 1, email: 'r1@x', full_name: 'Reader One', legacy: 'L1' });
        // Proof of where it was served: a value changed behind Tandem's back on the target only.
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Only On Target' });
        const served = await client.query('SELECT full_name FROM people WHERE id = 2');
        expect(served.rows).toEqual([{ full_name: 'Only On Target' }]);
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Reader Two' });
        // Inside a transaction every statement goes to the primary.
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Only On Target' });
        await client.query('BEGIN');
        const inTx = await client.query('SELECT full_name FROM people WHERE id = 2');
        await client.query('COMMIT');
        expect(inTx.rows).toEqual([{ full_name: 'Reader Two' }]);
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Reader Two' });
      } else {
        // Another engine: the upper() read and `*` (it names the excluded column) stay on the source.
        expect(star.rows[0]).toMatchObject({ id: 1, legacy: 'L1' });
        expect(await routes('source')).toBe(before.source + 2);
        expect(await routes('target')).toBe(before.target);
      }
    });

    it('parameterised reads (the extended protocol: unnamed and named statements) are routed too; a failed target read is answered by the source', async () => {
      const byId = 'SELECT id, full_name FROM people WHERE id = $1';
      const before = { target: await routes('target'), source: await routes('source') };
      if (pair.target !== 'pg') {
        // Another engine: the extended protocol's answers are the primary's (counted, with the reason).
        expect((await client.query(byId, [2])).rows).toEqual([{ id: 2, full_name: 'Reader Two' }]);
        expect(await routes('source')).toBe(before.source + 1);
        expect(await routes('target')).toBe(before.target);
        return;
      }
      await target.knex('app_people').where({ id: 2 }).update({ name: 'Only On Target' });
      try {
        expect((await client.query(byId, [2])).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
        const named = { name: 'people-by-id', text: byId, values: [2] };
        expect((await client.query(named)).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
        expect((await client.query(named)).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
        expect(await routes('target')).toBe(before.target + 3);
        // Naming the excluded column: the target cannot answer it, the source does.
        expect((await client.query('SELECT legacy FROM people WHERE id = $1', [2])).rows).toEqual([{ legacy: 'L2' }]);
        expect(await routes('source')).toBe(before.source + 1);
        // Inside a transaction every statement goes to the primary.
        await client.query('BEGIN');
        const inTx = await client.query(named);
        await client.query('COMMIT');
        expect(inTx.rows).toEqual([{ id: 2, full_name: 'Reader Two' }]);
        // The target fails the read (its table renamed away): the client gets the source's answer, not the error.
        await target.knex.raw('ALTER TABLE app_people RENAME TO app_people_away');
        try {
          expect((await client.query(byId, [2])).rows).toEqual([{ id: 2, full_name: 'Reader Two' }]);
          expect((await client.query(named)).rows).toEqual([{ id: 2, full_name: 'Reader Two' }]);
        } finally {
          await target.knex.raw('ALTER TABLE app_people_away RENAME TO app_people');
        }
        expect(await routes('source')).toBe(before.source + 3);
        // And the statement still works on the target afterwards.
        expect((await client.query(named)).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
      } finally {
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Reader Two' });
      }
    });

    it('the translated subset returns the same rows as the source, served by a target of another engine', async () => {
      await client.query("INSERT INTO people (email, full_name, age, active) VALUES ('R3@x', NULL, 50, true), ('r4@x', 'Four', NULL, false)");
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
      const queries = [
        "SELECT id, full_name, age, active FROM people WHERE age >= 30 AND (email = 'r1@x' OR email IN ('r2@x', 'R3@x')) ORDER BY id",
        "SELECT id, email FROM people WHERE email = 'r3@x'",
        'SELECT id AS key, full_name FROM people WHERE NOT (age < 35) OR age IS NULL ORDER BY id DESC LIMIT 2 OFFSET 1',
        'SELECT id, active FROM people WHERE full_name IS NOT NULL AND active = false',
      ];
      const before = await routes('target');
      for (const sql of queries) {
        const viaTandem = await client.query(sql);
        const direct = await source.knex.raw(sql);
        expect(viaTandem.rows, sql).toEqual(direct.rows);
        expect(viaTandem.fields.map((f) => f.name)).toEqual(direct.fields.map((f: { name: string }) => f.name));
      }
      expect(await routes('target')).toBe(before + queries.length);
      // Byte-for-byte text comparison: MariaDB's case-insensitive collation would have matched R3@x.
      expect((await client.query("SELECT id FROM people WHERE email = 'r3@x'")).rows).toEqual([]);
    });
  });
}
