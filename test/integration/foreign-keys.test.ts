/**
 * Issue 14 item 7: the target has the same foreign keys as the source. A batch that inserts
 * an order and its lines is applied table by table in name order (`order_lines` before
 * `orders`); the target's sessions are replication sessions with FK checks off (the source
 * already enforced them), so the child landing first is no error and nothing queues.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { foreignKeyOrder } from '../../src/db/foreign-key-order.js';
import { destroyStore, makeStore } from '../../src/db/store.js';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';
import { runCli, toolEnv } from '../helpers/tools.js';

/** An order table and its lines, the lines referencing the order (on both stores, as Chinook has them). */
async function createOrderTables(db: TestDatabase): Promise<void> {
  await db.knex.schema.createTable('orders', (t) => {
    t.integer('id').primary();
    t.string('note', 40);
  });
  await db.knex.schema.createTable('order_lines', (t) => {
    t.integer('id').primary();
    t.integer('order_id').notNullable().references('id').inTable('orders');
    t.integer('qty');
  });
}

for (const pair of runnablePairs()) {
  describe(`foreign keys on the target (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let policiesDir: string;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'fksrc');
      target = await createTestDatabase(pair.target, 'fktgt');
      await createTestTables(source.knex, target.knex);
      for (const db of [source, target]) await createOrderTables(db);
      policiesDir = writeTestPolicies({ 'orders.yaml': 'table: orders\nprimaryKey: [id]\n', 'order_lines.yaml': 'table: order_lines\nprimaryKey: [id]\n' });
      tandem = await startTandem({
        source: source.url,
        target: target.url,
        policiesDir,
        flags: ['people', 'kv', 'orders', 'order_lines'].map((t) => ({ name: `tandem.${t}.dual-write`, enabled: true, strategies: [{ name: 'default' }] })),
      });
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    it('an order and its lines in one batch reach the target at once; the target sessions have FK checks off', async () => {
      const res = await tandem.request.post('/v1/batch').send({
        ops: [
          { op: 'insert', table: 'orders', values: { id: 1, note: 'first' } },
          { op: 'insert', table: 'order_lines', values: { id: 10, order_id: 1, qty: 2 } },
          { op: 'insert', table: 'order_lines', values: { id: 11, order_id: 1, qty: 3 } },
        ],
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.headers['tandem-write']).toBe('applied');
      expect((await target.knex('order_lines').orderBy('id')).map((r: { id: number | string }) => Number(r.id))).toEqual([10, 11]);
      expect(await target.knex('orders').where({ id: 1 }).first()).toBeTruthy();
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'no pending rows' });
      expect((await outboxCounts(source.knex)).dead).toBe(0);
      const status = await tandem.request.get('/admin/status');
      expect(status.body.stores.target.foreignKeyChecks).toBe('off');
      // A delete of a parent with its children, in one batch: also applied at once.
      const del = await tandem.request.post('/v1/batch').send({
        ops: [
          { op: 'delete', table: 'order_lines', key: 10 },
          { op: 'delete', table: 'order_lines', key: 11 },
          { op: 'delete', table: 'orders', key: 1 },
        ],
      });
      expect(del.status, JSON.stringify(del.body)).toBe(200);
      expect(del.headers['tandem-write']).toBe('applied');
      expect(await target.knex('orders').where({ id: 1 }).first()).toBeUndefined();
    });

    it('`tandem backfill` with no table copies parents first: the foreign-key order of the source', async () => {
      const store = makeStore('source', source.url, { statementTimeoutMs: 5_000, poolMax: 1, acquireTimeoutMs: 5_000, connectTimeoutMs: 3_000 });
      try {
        expect(await foreignKeyOrder(store, ['people', 'order_lines', 'kv', 'orders'])).toEqual(['kv', 'orders', 'order_lines', 'people']);
      } finally {
        await destroyStore(store);
      }
    });

    it('`tandem backfill` of every table under live writes of parents and children succeeds on the first run: nothing dead, no brake, target equal', async () => {
      // Rows written behind Tandem's back: the target has none of them until the backfill.
      const ORDERS = 150;
      await source.knex.batchInsert('orders', Array.from({ length: ORDERS }, (_, i) => ({ id: 1_000 + i, note: `seed ${i}` })), 100);
      await source.knex.batchInsert('order_lines', Array.from({ length: ORDERS * 3 }, (_, i) => ({ id: 10_000 + i, order_id: 1_000 + Math.floor(i / 3), qty: 1 })), 100);
      let stop = false;
      let writes = 0;
      const failures: string[] = [];
      const live = (async () => {
        for (let i = 0; !stop; i++) {
          // A new order with its lines (children in the same batch), and an update of a seeded
          // line whose parent the backfill may not have copied yet.
          const batch = await tandem.request.post('/v1/batch').send({
            ops: [
              { op: 'insert', table: 'orders', values: { id: 50_000 + i, note: `live ${i}` } },
              { op: 'insert', table: 'order_lines', values: { id: 500_000 + i * 2, order_id: 50_000 + i, qty: i } },
              { op: 'insert', table: 'order_lines', values: { id: 500_001 + i * 2, order_id: 50_000 + i, qty: i } },
            ],
          });
          const patch = await tandem.request.patch(`/v1/tables/order_lines/rows/${10_000 + ((i * 7) % (ORDERS * 3))}`).send({ values: { qty: 100 + i } });
          for (const res of [batch, patch]) if (res.status >= 300) failures.push(`${res.status} ${JSON.stringify(res.body)}`);
          writes += 2;
        }
      })();
      let cli;
      try {
        cli = await runCli(['backfill', '--chunk', '40', '--json'], toolEnv({ source: source.url, target: target.url, policiesDir, flagsFile: tandem.flagsFile }), 90_000);
      } finally {
        stop = true;
        await live;
      }
      expect(cli.code, cli.stderr).toBe(0);
      expect(failures).toEqual([]);
      expect(writes).toBeGreaterThan(0);
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'the outbox to drain', timeoutMs: 30_000 });
      expect((await outboxCounts(source.knex)).dead).toBe(0);
      for (const table of ['orders', 'order_lines']) {
        const rows = async (db: TestDatabase) => ((await db.knex(table).select('*').orderBy('id')) as Array<Record<string, unknown>>).map((r) => JSON.stringify(Object.values(r).map(String)));
        expect(await rows(target), table).toEqual(await rows(source));
      }
      // Ordering rejections must not count as target errors for the brake (a brake on write
      // latency would be the machine's load, not this test's subject).
      const status = await tandem.request.get('/admin/status').expect(200);
      for (const t of (status.body.tables as Array<{ table: string; brake: { active: boolean; signal: string | null } | null }>).filter((x) => x.table.startsWith('order'))) {
        expect(t.brake?.active === true && t.brake.signal === 'error_rate', `brake on ${t.table}: ${JSON.stringify(t.brake)}`).toBe(false);
      }
      console.log(`[foreign keys ${pair.name}] backfill of ${ORDERS} orders + ${ORDERS * 3} lines beside ${writes} live writes: exit ${cli.code}`);
    });

    it('only replication sessions skip foreign-key checks: client sessions of the same store still refuse an orphan (the target after a cutover is a primary)', async () => {
      const store = makeStore('target', target.url, { statementTimeoutMs: 5_000, poolMax: 1, acquireTimeoutMs: 5_000, connectTimeoutMs: 3_000 });
      try {
        if (store.adapter.inProcess) {
          // SQLite: one in-process pool, foreign keys off as SQLite's default; nothing to separate.
          expect(store.replica).toBe(store.knex);
        } else {
          expect(store.replica).not.toBe(store.knex);
          await expect(store.knex('order_lines').insert({ id: 90, order_id: 9_999, qty: 1 })).rejects.toThrow();
          expect(await target.knex('order_lines').where({ id: 90 }).first()).toBeUndefined();
          await store.replica('order_lines').insert({ id: 91, order_id: 9_999, qty: 1 });
          expect(store.session.foreignKeyChecks).toBe('off');
          expect(await target.knex('order_lines').where({ id: 91 }).first()).toBeTruthy();
          await target.knex('order_lines').where({ id: 91 }).del();
        }
      } finally {
        await destroyStore(store);
      }
    });
  });
}

/**
 * A PostgreSQL target whose role may not set session_replication_role (not superuser, no
 * GRANT SET ON PARAMETER): foreign-key checks stay on in its replication sessions. Status says
 * so and why; an order and its lines, applied child-first in one batch, still reach the
 * target (the rejected child heals on retry), nothing goes dead and the brake stays off. With
 * the grant, the next start turns checks off.
 */
const PG_TARGET = runnablePairs().filter((p) => p.target === 'pg' && p.source === 'pg');
for (const pair of PG_TARGET) {
  describe(`foreign keys on a PostgreSQL target whose role is not superuser (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness | undefined;
    const role = `tandem_fk_${process.pid}_${Date.now() % 100_000}`;
    let roleUrl: string;
    let policiesDir: string;
    const flags = ['people', 'kv', 'orders', 'order_lines'].map((t) => ({ name: `tandem.${t}.dual-write`, enabled: true, strategies: [{ name: 'default' }] }));

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'fkrsrc');
      target = await createTestDatabase(pair.target, 'fkrtgt');
      await createTestTables(source.knex, target.knex);
      for (const db of [source, target]) await createOrderTables(db);
      await target.knex.raw(`CREATE ROLE ${role} LOGIN NOSUPERUSER`);
      await target.knex.raw(`GRANT USAGE, CREATE ON SCHEMA public TO ${role}`);
      await target.knex.raw(`GRANT ALL ON ALL TABLES IN SCHEMA public TO ${role}`);
      await target.knex.raw(`GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
      const url = new URL(target.url);
      url.username = role;
      url.password = '';
      roleUrl = url.toString();
      policiesDir = writeTestPolicies({ 'orders.yaml': 'table: orders\nprimaryKey: [id]\n', 'order_lines.yaml': 'table: order_lines\nprimaryKey: [id]\n' });
      tandem = await startTandem({ source: source.url, target: roleUrl, policiesDir, flags });
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
      // The role's objects went with the database; what is left is the parameter grant.
      const admin = await createTestDatabase('pg', 'fkrdrop');
      try {
        await admin.knex.raw(`REVOKE SET ON PARAMETER session_replication_role FROM ${role}`).catch(() => undefined);
        await admin.knex.raw(`DROP ROLE IF EXISTS ${role}`);
      } finally {
        await admin.drop();
      }
    });

    it('status says checks stay on and why; an order and its lines still reach the target, nothing dead, no brake', async () => {
      const res = await tandem!.request.post('/v1/batch').send({
        ops: [
          { op: 'insert', table: 'orders', values: { id: 1, note: 'first' } },
          { op: 'insert', table: 'order_lines', values: { id: 10, order_id: 1, qty: 2 } },
        ],
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const status = await tandem!.request.get('/admin/status').expect(200);
      expect(status.body.stores.target.foreignKeyChecks).toBe('on');
      expect(status.body.stores.target.foreignKeyNote).toMatch(/session_replication_role/);
      await waitFor(async () => (await target.knex('order_lines').where({ id: 10 }).first()) !== undefined && (await outboxCounts(source.knex)).pending === 0, {
        what: 'the line to reach the target',
        timeoutMs: 30_000,
      });
      expect((await outboxCounts(source.knex)).dead).toBe(0);
      const after = await tandem!.request.get('/admin/status').expect(200);
      for (const t of (after.body.tables as Array<{ table: string; brake: { active: boolean; signal: string | null } | null }>).filter((x) => x.table.startsWith('order'))) {
        expect(t.brake?.active === true && t.brake.signal === 'error_rate', `brake on ${t.table}: ${JSON.stringify(t.brake)}`).toBe(false);
      }
    });

    it('with GRANT SET ON PARAMETER session_replication_role, the next start turns checks off', async () => {
      await target.knex.raw(`GRANT SET ON PARAMETER session_replication_role TO ${role}`);
      await tandem!.stop();
      tandem = await startTandem({ source: source.url, target: roleUrl, policiesDir, flags });
      // The session state is known once a replication session has been opened.
      await tandem.request.post('/v1/tables/orders/rows').send({ values: { id: 2, note: 'second' } }).expect(201);
      const status = await tandem.request.get('/admin/status').expect(200);
      expect(status.body.stores.target.foreignKeyChecks).toBe('off');
    });
  });
}
