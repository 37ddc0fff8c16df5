import { Kysely, PostgresDialect, sql as ksql, type Generated } from 'kysely';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front clients (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

interface Database {
  people: { id: Generated<number>; email: string; full_name: string | null; age: number | null; active: boolean | null; note: string | null; legacy: string | null };
  kv: { tenant: string; k: number; val: number | null; note: string | null };
}

for (const pair of PG_SOURCE) {
  describe(`SQL front: postgres.js and Kysely through Tandem (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let url: string;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlclisrc');
      target = await createTestDatabase(pair.target, 'sqlclitgt');
      await createTestTables(source.knex, target.knex);
      tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies(), overrides: { sql: { port: 0, users: [{ name: 'app', password: 'app-password' }] } } });
      url = `postgres://app:app-password@127.0.0.1:${tandem.app.sqlAddress().port}/app`;
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    async function converged(): Promise<void> {
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
      const state = await convergence(source.knex, target.knex);
      expect(state.people.actual).toEqual(state.people.expected);
      expect(state.kv.actual).toEqual(state.kv.expected);
      for (const table of ['people', 'kv']) expect((await tandem.app.verify(table)).clean).toBe(true);
    }

    it('postgres.js: prepared statements, a transaction, RETURNING, an error', async () => {
      const sql = postgres(url, { max: 2, onnotice: () => undefined });
      try {
        const [row] = await sql`INSERT INTO people ${sql({ email: 'pj@x', full_name: 'PJ', age: 20 })} RETURNING id, email`;
        expect(row).toMatchObject({ email: 'pj@x' });
        for (let i = 0; i < 5; i++) await sql`INSERT INTO kv (tenant, k, val) VALUES (${'pj'}, ${i}, ${i})`;
        const updated = await sql`UPDATE kv SET val = val * 10 WHERE tenant = ${'pj'} AND k >= ${2}`;
        expect(updated.count).toBe(3);
        expect(updated.command).toBe('UPDATE');
        const rows = await sql`SELECT k, val FROM kv WHERE tenant = ${'pj'} ORDER BY k`;
        expect(rows.map((r) => [r['k'], r['val']])).toEqual([[0, 0], [1, 1], [2, 20], [3, 30], [4, 40]]);
        await sql.begin(async (tx) => {
          await tx`DELETE FROM kv WHERE tenant = ${'pj'} AND k = ${0}`;
          await tx`UPDATE people SET age = ${21} WHERE email = ${'pj@x'}`;
        });
        await expect(sql`INSERT INTO people (email) VALUES (${'pj@x'})`).rejects.toMatchObject({ code: '23505' });
        await expect(
          sql.begin(async (tx) => {
            await tx`INSERT INTO kv (tenant, k, val) VALUES (${'pj'}, ${100}, ${1})`;
            await tx`SELECT 1/0`;
          }),
        ).rejects.toMatchObject({ code: '22012' });
        expect((await sql`SELECT count(*)::int AS n FROM kv WHERE k = 100`)[0]?.['n']).toBe(0);
      } finally {
        await sql.end();
      }
      await converged();
    });

    it('Kysely (pg dialect): CRUD in and out of transactions', async () => {
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 3 }) }) });
      try {
        const inserted = await db.insertInto('people').values({ email: 'ky@x', full_name: 'Ky', age: 5, active: true }).returningAll().executeTakeFirstOrThrow();
        expect(inserted).toMatchObject({ email: 'ky@x', full_name: 'Ky', age: 5, active: true });
        const updated = await db.updateTable('people').set({ age: 6 }).where('email', '=', 'ky@x').executeTakeFirst();
        expect(updated.numUpdatedRows).toBe(1n);
        await db.transaction().execute(async (trx) => {
          await trx.insertInto('kv').values([{ tenant: 'ky', k: 1, val: 1 }, { tenant: 'ky', k: 2, val: 2 }]).execute();
          await trx.updateTable('kv').set({ note: 'in tx' }).where('tenant', '=', 'ky').execute();
        });
        await db.insertInto('kv').values({ tenant: 'ky', k: 2, val: 9 }).onConflict((oc) => oc.columns(['tenant', 'k']).doUpdateSet({ val: (eb) => eb.ref('excluded.val') })).execute();
        const deleted = await db.deleteFrom('kv').where('tenant', '=', 'ky').where('k', '=', 1).executeTakeFirst();
        expect(deleted.numDeletedRows).toBe(1n);
        const rows = await db.selectFrom('kv').select(['k', 'val', 'note']).where('tenant', '=', 'ky').execute();
        expect(rows).toEqual([{ k: 2, val: 9, note: 'in tx' }]);
        const count = await ksql<{ n: number }>`SELECT count(*)::int AS n FROM people`.execute(db);
        expect(count.rows[0]?.n).toBe(2);
      } finally {
        await db.destroy();
      }
      await converged();
    });
  });
}
