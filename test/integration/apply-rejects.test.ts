import { beforeAll, expect, it } from 'vitest';
import type { TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { createTestTables } from '../helpers/schema.js';
import { outboxCounts, waitFor, type TandemHarness } from '../helpers/tandem.js';

/**
 * A row the target rejects (here: a unique index only the target has) must not hold back
 * the rows applied with it: the whole apply rolls back, the worker isolates the bad key,
 * the others land, the bad one goes dead after maxAttempts, and the secondary's
 * connections stay usable (a failed multi-statement apply on MySQL must not leave its
 * transaction open on a pooled connection).
 */
/** Transactions open on other connections to the test database (idle in a transaction). */
async function openTransactions(db: TestDatabase): Promise<number> {
  if (db.dialect === 'pg') {
    const { rows } = (await db.knex.raw(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`,
    )) as { rows: Array<{ n: number }> };
    return rows[0]?.n ?? -1;
  }
  if (db.dialect === 'mysql') {
    const [rows] = (await db.knex.raw(
      `SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
        WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID()`,
    )) as [Array<{ n: number | string }>];
    return Number(rows[0]?.n ?? -1);
  }
  return 0; // SQLite: one connection, nothing pooled to leak a transaction into
}

describeEachPair(
  'a row the target rejects',
  {
    label: 'rej',
    schema: async (source, target) => {
      await createTestTables(source.knex, target.knex);
      await target.knex.schema.alterTable('app_people', (t) => t.unique(['name'], { indexName: 'app_people_name_unique' }));
    },
    tandem: () => ({ overrides: { outbox: { maxAttempts: 2, housekeepingIntervalMs: 600_000 } } }),
  },
  (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    beforeAll(() => ({ source, target, tandem } = suite));

    it('isolates the rejected key; the rows applied with it land and later writes apply inline', async () => {
      await tandem.request.post('/v1/tables/people/rows').send({ values: { email: 'first@example.com', full_name: 'Same Name' } }).expect(201);
      const batch = await tandem.request
        .post('/v1/batch')
        .send({
          ops: [
            { op: 'insert', table: 'people', values: { email: 'a@example.com', full_name: 'Alice' } },
            { op: 'insert', table: 'people', values: { email: 'dup@example.com', full_name: 'Same Name' } },
            { op: 'insert', table: 'people', values: { email: 'b@example.com', full_name: 'Bob' } },
          ],
        })
        .expect(200);
      // One transaction on the target for the group: the duplicate fails it, so all three wait for the worker.
      expect(batch.headers['tandem-write']).toBe('queued');
      const dupId = batch.body.results[1].row.id as number;

      await waitFor(async () => (await outboxCounts(source.knex)).dead === 1 && (await outboxCounts(source.knex)).pending === 0, {
        what: 'the worker to isolate the rejected key and give up on it',
        timeoutMs: 15_000,
      });
      const dead = (await source.knex('tandem_outbox').where({ status: 'dead' })) as Array<{ row_key: string; last_error: string }>;
      expect(dead.map((d) => d.row_key)).toEqual([String(dupId)]);
      const names = ((await target.knex('app_people').orderBy('id')) as Array<{ name: string }>).map((r) => r.name);
      expect(names).toEqual(['Same Name', 'Alice', 'Bob']);

      // No pooled connection of the secondary sits in the failed transaction (holding its locks).
      expect(await openTransactions(target)).toBe(0);
      // The secondary's pool still works.
      for (let i = 0; i < 12; i++) {
        const res = await tandem.request.post('/v1/tables/people/rows').send({ values: { email: `later${i}@example.com`, full_name: `Later ${i}` } }).expect(201);
        expect(res.headers['tandem-write']).toBe('applied');
      }
      expect(Number(((await target.knex('app_people').count({ n: '*' })) as Array<{ n: unknown }>)[0]?.n)).toBe(15);
    });
  },
);
