/**
 * Issue 12: SELECTs the SQL front routes are shadowed like the HTTP API's reads — for the
 * `shadow-read` share, the same read runs on the other store off the response path and the
 * answers are compared (as multisets of rows in PostgreSQL's text forms). Matches and
 * mismatches count in tandem_shadow_reads_total and the consistency ratio; a mismatch is
 * logged with the statement's fingerprint. Either store may serve: the source (shadow on
 * the target: its renamed form, or the knex translation for another engine) or the target.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front shadow reads (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

const on = (name: string): Feature => ({ name, enabled: true, strategies: [{ name: 'default' }] });
const SHADOW_ALL = [...DUAL_WRITE_ALL, on('tandem.people.shadow-read')];

for (const pair of PG_SOURCE) {
  describe(`SQL front shadow reads (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let client: pg.Client;
    const logLines: string[] = [];

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlshsrc');
      target = await createTestDatabase(pair.target, 'sqlshtgt');
      await createTestTables(source.knex, target.knex);
      tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies(), flags: SHADOW_ALL, overrides: { sql: { port: 0 } }, logLines });
      client = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${tandem.app.sqlAddress().port}/app` });
      await client.connect();
      await client.query("INSERT INTO people (id, email, full_name, age) VALUES (1, 'a@x', 'Ann', 30), (2, 'b@x', 'Bob', 40), (3, 'c@x', 'Cy', 50)");
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
    });

    afterAll(async () => {
      await client?.end();
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    const shadows = async (): Promise<{ match: number; mismatch: number; error: number }> => {
      const text = await tandem.app.metrics.registry.getSingleMetricAsString('tandem_shadow_reads_total');
      const count = (result: string) => Number(new RegExp(`table="people",result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
      return { match: count('match'), mismatch: count('mismatch'), error: count('error') };
    };
    const consistency = async (): Promise<{ ratio: number; samples: number }> => {
      const res = await tandem.request.get('/admin/status').expect(200);
      return (res.body as { tables: Array<{ table: string; consistency: { ratio: number; samples: number } }> }).tables.find((t) => t.table === 'people')?.consistency ?? { ratio: -1, samples: -1 };
    };
    const served = async (): Promise<{ source: number; target: number }> => {
      const text = await tandem.app.metrics.registry.getSingleMetricAsString('tandem_sql_read_routes_total');
      let source = 0;
      let target = 0;
      for (const line of text.split('\n')) {
        if (!line.includes('table="people"')) continue;
        if (line.includes('store="source"')) source += Number(line.split(' ').pop());
        if (line.includes('store="target"')) target += Number(line.split(' ').pop());
      }
      return { source, target };
    };

    it('reads served by the source are compared with the target: equal answers match, a drifted row is a mismatch', async () => {
      const before = await shadows();
      expect((await client.query('SELECT id, full_name, age FROM people WHERE age >= 30 ORDER BY id')).rows).toHaveLength(3);
      expect((await client.query("SELECT full_name FROM people WHERE email IN ('a@x', 'b@x')")).rows).toHaveLength(2);
      await waitFor(async () => (await shadows()).match === before.match + 2, { what: 'two shadow matches' });
      // A LIMIT without ORDER BY may pick different rows on each store: not compared.
      await client.query('SELECT full_name FROM people LIMIT 1');

      // A row changed behind Tandem's back on the target: the answer differs, and still does when read again.
      await target.knex('app_people').where({ id: 2 }).update({ name: 'Drifted' });
      expect((await client.query('SELECT full_name FROM people WHERE id = 2')).rows).toEqual([{ full_name: 'Bob' }]);
      await waitFor(async () => (await shadows()).mismatch === before.mismatch + 1, { what: 'one shadow mismatch', timeoutMs: 10_000 });
      expect(await shadows()).toEqual({ ...before, match: before.match + 2, mismatch: before.mismatch + 1 });
      const c = await consistency();
      expect(c.samples).toBe(3);
      expect(c.ratio).toBeCloseTo(2 / 3, 5);
      const line = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'shadow read mismatch');
      expect(line).toMatchObject({ table: 'people', shadowStore: 'target' });
      expect(String(line?.['key'])).toMatch(/^sql:[0-9a-f]{16}$/);
      // Every read was served by the source.
      expect((await served()).target).toBe(0);
    });

    it('reads served by the target are compared with the source', async () => {
      tandem.setFlags([...SHADOW_ALL, on('tandem.people.read-target')]);
      await waitFor(async () => {
        await client.query('SELECT full_name FROM people WHERE id = 3');
        return (await served()).target > 0;
      }, { what: 'reads served by the target' });
      await waitFor(async () => (await shadows()).match >= 3, { what: 'the target-served read matched' });
      const before = await shadows();
      // The drifted row is served by the target now, and differs from the source.
      expect((await client.query('SELECT full_name FROM people WHERE id = 2')).rows).toEqual([{ full_name: 'Drifted' }]);
      await waitFor(async () => (await shadows()).mismatch === before.mismatch + 1, { what: 'a mismatch of the target-served read', timeoutMs: 10_000 });
      // Repaired: the same read matches again.
      await target.knex('app_people').where({ id: 2 }).update({ name: 'Bob' });
      expect((await client.query('SELECT full_name FROM people WHERE id = 2')).rows).toEqual([{ full_name: 'Bob' }]);
      await waitFor(async () => (await shadows()).match === before.match + 1, { what: 'a match after the repair' });
      expect((await shadows()).error).toBe(0);
    });

    it('parameterised reads (the extended protocol) are shadowed too, served by either store', async () => {
      // read-target is still on: the target serves them, the source is the shadow.
      const before = await shadows();
      expect((await client.query('SELECT full_name, age FROM people WHERE id = $1', [1])).rows).toEqual([{ full_name: 'Ann', age: 30 }]);
      await waitFor(async () => (await shadows()).match === before.match + 1, { what: 'a parameterised read matched' });
      await target.knex('app_people').where({ id: 3 }).update({ name: 'Drifted' });
      const byId = { name: 'by-id', text: 'SELECT full_name FROM people WHERE id = $1', values: [3] };
      expect((await client.query(byId)).rows).toEqual([{ full_name: 'Drifted' }]);
      await waitFor(async () => (await shadows()).mismatch === before.mismatch + 1, { what: 'a mismatch of the target-served parameterised read', timeoutMs: 10_000 });

      // read-target off: the source serves them, the target is the shadow (the named statement, again).
      tandem.setFlags(SHADOW_ALL);
      const routed = (await served()).source;
      await waitFor(async () => {
        await client.query('SELECT id FROM people WHERE id = $1 AND age > $2', [1, 100]);
        return (await served()).source > routed;
      }, { what: 'reads served by the source again' });
      // (Each read of that loop was shadowed too, on whichever store served it: all empty answers, all matches.)
      await waitFor(async () => (await shadows()).match >= before.match + 2, { what: 'the empty answers matched' });
      expect((await client.query(byId)).rows).toEqual([{ full_name: 'Cy' }]);
      await waitFor(async () => (await shadows()).mismatch === before.mismatch + 2, { what: 'a mismatch of the source-served parameterised read', timeoutMs: 10_000 });
      await target.knex('app_people').where({ id: 3 }).update({ name: 'Cy' });
      const repaired = await shadows();
      expect((await client.query('SELECT id, full_name FROM people WHERE id IN ($1, $2) ORDER BY id', [1, 3])).rows).toHaveLength(2);
      await waitFor(async () => (await shadows()).match > repaired.match, { what: 'a match after the repair' });
      expect((await shadows()).mismatch).toBe(before.mismatch + 2);
      expect((await shadows()).error).toBe(0);
    });
  });
}
