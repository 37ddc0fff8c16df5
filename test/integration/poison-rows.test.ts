/**
 * Issue 14 items 5, 6, 9, 12 and 13: rows that cannot be applied never hold back the rows
 * claimed with them. An undecodable image and a CHECK violation go dead at once with the
 * reason (no row values in it); rows of a table whose policy is gone are set aside and shown;
 * a table whose target schema is not ready waits (not dead) while the others flow; bad input
 * (deep JSON, lone surrogates) is refused at the door; replay takes JSON only and exact ids.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const EXTRA_POLICY = `table: extra
primaryKey: [id]
`;

/** A table keyed by a column the policy redacts: its keys must not leave the databases either. */
const SECRETS_POLICY = `table: secrets
primaryKey: [email]
redact: [email]
`;

interface OutboxRow {
  id: number | string;
  tbl: string;
  status: string;
  attempts: number | string;
  last_error: string | null;
}

for (const pair of runnablePairs()) {
  describe(`rows that cannot be applied do not hold back the others (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    const logLines: string[] = [];

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'poisonsrc');
      target = await createTestDatabase(pair.target, 'poisontgt');
      await createTestTables(source.knex, target.knex);
      // The target refuses large values (a CHECK only it has).
      await target.knex.schema.dropTable('kv');
      await target.knex.raw(
        'CREATE TABLE kv (tenant varchar(20) NOT NULL, k integer NOT NULL, val integer, note varchar(50), PRIMARY KEY (tenant, k), CONSTRAINT kv_val_small CHECK (val < 1000))',
      );
      for (const db of [source, target]) {
        await db.knex.schema.createTable('extra', (t) => {
          t.integer('id').primary();
          t.string('v', 40);
        });
      }
      await source.knex.schema.createTable('secrets', (t) => {
        t.string('email', 80).primary();
        t.integer('val');
      });
      await target.knex.raw('CREATE TABLE secrets (email varchar(80) NOT NULL PRIMARY KEY, val integer, CONSTRAINT secrets_val_small CHECK (val < 1000))');
      tandem = await startTandem({
        source: source.url,
        target: target.url,
        policiesDir: writeTestPolicies({ 'extra.yaml': EXTRA_POLICY, 'secrets.yaml': SECRETS_POLICY }),
        logLines,
        flags: ['people', 'kv', 'extra', 'secrets'].map((t) => ({ name: `tandem.${t}.dual-write`, enabled: true, strategies: [{ name: 'default' }] })),
        overrides: { outbox: { maxAttempts: 20 } },
      });
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    const outbox = async () => (await source.knex('tandem_outbox').select('id', 'tbl', 'status', 'attempts', 'last_error').orderBy('id')) as OutboxRow[];

    it('a CHECK violation on the target is dead at once with the reason and no values; the rows written with it land', async () => {
      const res = await tandem.request.post('/v1/batch').send({
        ops: [
          { op: 'upsert', table: 'kv', key: 't,1', values: { val: 5000, note: 'secret-5000' } },
          { op: 'upsert', table: 'kv', key: 't,2', values: { val: 2 } },
          { op: 'insert', table: 'people', values: { email: 'ok@example.com', full_name: 'Ok' } },
        ],
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      let last: OutboxRow[] = [];
      await waitFor(
        async () => {
          last = await outbox();
          return last.length === 1 && last[0]?.status === 'dead';
        },
        { timeoutMs: 10_000, what: 'the refused row to be dead and the others applied' },
      ).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}; outbox: ${JSON.stringify(last)}`);
      });
      const dead = (await outbox()).filter((r) => r.status === 'dead');
      expect(dead).toHaveLength(1);
      expect(Number(dead[0]?.attempts)).toBe(1);
      expect(dead[0]?.last_error).toMatch(/check/i);
      expect(dead[0]?.last_error).not.toMatch(/5000|secret/);
      expect(await target.knex('kv').where({ tenant: 't', k: 2 }).first()).toBeTruthy();
      expect(await target.knex('app_people').where({ email: 'ok@example.com' }).first()).toBeTruthy();
      // The listing carries the reason, never the value.
      const listing = await tandem.request.get('/admin/outbox');
      expect(listing.status).toBe(200);
      expect(JSON.stringify(listing.body)).not.toMatch(/5000|secret/);
      expect(listing.body.rows).toHaveLength(1);
    });

    it('an undecodable image goes dead at once, a row of a removed policy is set aside and shown, and 50 rows claimed with them apply', async () => {
      const [state] = (await source.knex('tandem_state').where({ tbl: 'kv' })) as Array<{ epoch: number | string }>;
      const epoch = Number(state?.epoch ?? 1);
      const now = Date.now();
      const base = { op: 'upsert', epoch, status: 'pending', attempts: 0, next_attempt_at: now, created_at: now };
      // A poison row first, an orphan second, then 50 good rows: one claim takes them all.
      await source.knex('tandem_outbox').insert({ ...base, tbl: 'kv', row_key: 't,77', image: '{"tenant":"t","k":77,"val":' });
      await source.knex('tandem_outbox').insert({ ...base, tbl: 'gone', row_key: '1', image: '{"id":1}' });
      const keys = Array.from({ length: 50 }, (_, i) => 100 + i);
      await source.knex('kv').insert(keys.map((k) => ({ tenant: 't', k, val: k })));
      for (const k of keys) await source.knex('tandem_outbox').insert({ ...base, tbl: 'kv', row_key: `t,${k}`, image: JSON.stringify({ tenant: 't', k, val: k, note: null }) });
      const started = Date.now();
      await waitFor(async () => Number(((await target.knex('kv').whereIn('k', keys).count({ n: '*' })) as Array<{ n: number | string }>)[0]?.n) === 50, {
        timeoutMs: 10_000,
        what: 'the 50 good rows on the target',
      });
      const deliveredMs = Date.now() - started;
      const rows = await outbox();
      const poison = rows.find((r) => r.tbl === 'kv' && r.status === 'dead' && /undecodable/.test(r.last_error ?? ''));
      expect(poison, JSON.stringify(rows)).toBeTruthy();
      expect(Number(poison?.attempts)).toBe(1);
      const orphan = rows.find((r) => r.tbl === 'gone');
      expect(orphan?.status).toBe('orphan');
      const status = await tandem.request.get('/admin/status');
      expect(status.body.orphans).toEqual([{ table: 'gone', count: 1, oldest: new Date(now).toISOString() }]);
      console.log(`[poison ${pair.name}] 50 rows claimed with a poison row and an orphan delivered in ${deliveredMs} ms`);
    });

    it("a table whose target table is missing waits (not dead, status says the schema is not ready) while other tables flow, and resumes when it is back", async () => {
      await target.knex.schema.dropTable('extra');
      const res = await tandem.request.post('/v1/batch').send({
        ops: [
          { op: 'insert', table: 'extra', values: { id: 1, v: 'one' } },
          { op: 'upsert', table: 'kv', key: 't,3', values: { val: 3 } },
        ],
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      await waitFor(async () => Boolean(await target.knex('kv').where({ tenant: 't', k: 3 }).first()), { timeoutMs: 10_000, what: 'the kv row on the target' });
      const status = await waitFor(async () => {
        const s = await tandem.request.get('/admin/status');
        const extra = (s.body.tables as Array<{ table: string; targetSchema: { ready: boolean; problem?: string; error?: string } }>).find((t) => t.table === 'extra');
        return extra && !extra.targetSchema.ready ? s.body : false;
      }, { timeoutMs: 10_000, what: 'status to say the schema is not ready' });
      const extra = (status.tables as Array<{ table: string; targetSchema: { problem: string; error: string } }>).find((t) => t.table === 'extra');
      expect(extra?.targetSchema.problem).toBe('the target schema is not ready');
      expect(extra?.targetSchema.error).toMatch(/schema/);
      expect(status.stores.target.breaker).toBe('closed');
      const pending = (await outbox()).filter((r) => r.tbl === 'extra');
      expect(pending.map((r) => r.status)).toEqual(['pending']);
      const metrics = await tandem.request.get('/metrics');
      expect(metrics.text).toMatch(/^tandem_apply_schema_errors_total\{table="extra"\} [1-9]/m);

      await target.knex.schema.createTable('extra', (t) => {
        t.integer('id').primary();
        t.string('v', 40);
      });
      await waitFor(async () => Boolean(await target.knex('extra').where({ id: 1 }).first()), { timeoutMs: 10_000, what: 'the extra row after the table is back' });
    });

    it('replay takes JSON only (415), validates ids (400 naming the index), and replays exactly the ids asked', async () => {
      const dead = (await outbox()).filter((r) => r.status === 'dead');
      expect(dead.length).toBeGreaterThanOrEqual(2);
      const form = await tandem.request.post('/admin/outbox/replay').type('form').send(`ids=${dead[0]?.id}`);
      expect(form.status).toBe(415);
      expect((await outbox()).filter((r) => r.status === 'dead')).toHaveLength(dead.length);
      const big = await tandem.request.post('/admin/outbox/replay').send({ ids: ['99999999999999999999'] });
      expect(big.status).toBe(400);
      expect(big.body.field).toBe('ids[0]');
      const one = await tandem.request.post('/admin/outbox/replay').send({ ids: [String(dead[0]?.id)] });
      expect(one.status).toBe(200);
      expect(one.body.replayed).toBe(1);
    });

    it('dead rows of both outboxes are listed with their store; an id dead in both is replayed only where `store` says', async () => {
      const dead = (await outbox()).filter((r) => r.status === 'dead');
      const id = String(dead[0]?.id);
      expect(dead.length).toBeGreaterThanOrEqual(1);
      // The target's outbox (reverse replication after a cutover) has ids of its own: the same number, another row.
      const now = Date.now();
      await target.knex('tandem_outbox').insert({ id: Number(id), tbl: 'kv', row_key: 't,4242', op: 'upsert', epoch: 2, status: 'dead', attempts: 9, next_attempt_at: now, created_at: now, image: '{"tenant":"t","k":4242,"val":1,"note":null}' });
      try {
        const listing = await tandem.request.get('/admin/outbox');
        expect(listing.status).toBe(200);
        const stores = (listing.body.rows as Array<{ id: string; store: string }>).filter((r) => r.id === id).map((r) => r.store).sort();
        expect(stores).toEqual(['source', 'target']);
        const ambiguous = await tandem.request.post('/admin/outbox/replay').send({ ids: [id] });
        expect(ambiguous.status).toBe(400);
        expect(ambiguous.body.field).toBe('store');
        expect((await outbox()).filter((r) => r.status === 'dead').map((r) => String(r.id))).toContain(id);
        const onTarget = await tandem.request.post('/admin/outbox/replay').send({ ids: [id], store: 'target' });
        expect(onTarget.status).toBe(200);
        expect(onTarget.body.replayed).toBe(1);
        expect((await target.knex('tandem_outbox').where({ id: Number(id) }).first())?.status).toBe('pending');
        expect((await outbox()).find((r) => String(r.id) === id)?.status).toBe('dead');
        const badStore = await tandem.request.post('/admin/outbox/replay').send({ ids: [id], store: 'both' });
        expect(badStore.status).toBe(400);
        expect(badStore.body.field).toBe('store');
      } finally {
        await target.knex('tandem_outbox').where({ id: Number(id) }).del();
      }
    });

    it.skipIf(pair.name !== 'sqlite→sqlite')('the door refuses deep JSON and lone surrogates with 400 naming the field, writing nothing', async () => {
      let deep: unknown = 1;
      for (let i = 0; i < 3000; i++) deep = { a: deep };
      const res = await tandem.request
        .post('/v1/tables/people/rows')
        .set('content-type', 'application/json')
        .send(JSON.stringify({ values: { email: 'deep@example.com', note: deep } }));
      expect(res.status).toBe(400);
      expect(res.body.field).toMatch(/^values\.note\.a/);
      const lone = await tandem.request.post('/v1/tables/people/rows').set('content-type', 'application/json').send('{"values":{"email":"lone@example.com","full_name":"x\\ud800y"}}');
      expect(lone.status).toBe(400);
      expect(lone.body.field).toBe('values.full_name');
      expect(await source.knex('people').whereIn('email', ['deep@example.com', 'lone@example.com'])).toEqual([]);
    });

    it('a key whose column the policy redacts never leaves the databases: the listing, the log and verify show a digest', async () => {
      const email = 'hidden.person@example.com';
      await tandem.request.put(`/v1/tables/secrets/rows/${encodeURIComponent(email)}`).send({ values: { val: 5000 } }).expect(201);
      await waitFor(async () => (await outbox()).some((r) => r.tbl === 'secrets' && r.status === 'dead'), { timeoutMs: 10_000, what: 'the refused secrets row to be dead' });
      const listing = await tandem.request.get('/admin/outbox').expect(200);
      const rows = listing.body.rows as Array<{ table: string; rowKey: string }>;
      const secret = rows.find((r) => r.table === 'secrets');
      expect(secret?.rowKey).toMatch(/^redacted:[0-9a-f]{16}$/);
      expect(JSON.stringify(listing.body)).not.toContain('hidden.person');
      // Keys of tables that redact no key column are shown as they are.
      expect(rows.some((r) => r.table === 'kv' && r.rowKey === 't,1')).toBe(true);
      const report = await tandem.request.post('/admin/tables/secrets/verify').send({}).expect(200);
      expect(report.body.samples.missingInTarget).toEqual([secret?.rowKey]);
      expect(JSON.stringify(report.body)).not.toContain('hidden.person');
      const log = logLines.join('');
      expect(log).toContain('outbox row is dead');
      expect(log).toContain(String(secret?.rowKey));
      expect(log).not.toContain('hidden.person');
    });
  });
}
