import knex, { type Knex } from 'knex';
import mysql2 from 'mysql2';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodeImage } from '../../src/outbox/image-codec.js';
import { formatKey } from '../../src/policy/row-key.js';
import { PAIRS, type TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { createTestTables } from '../helpers/schema.js';
import { outboxCounts, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

/**
 * The MariaDB fold (src/db/dialects/mariadb-fold.ts): a single-row write on a MariaDB
 * primary takes one round trip source-only and two dual-writing (the classic transaction
 * takes five), and leaves exactly what the classic transaction leaves: the same response
 * row, an outbox image and key that decode to the same values, the same target row. A
 * batch of two ops always takes the classic path, so tests write the same values both ways
 * and compare.
 */
const TYPED_POLICY = `table: typed
primaryKey: [id]
target:
  exclude: [obsolete]
`;

const dualWrite = (table: string): Feature => ({ name: `tandem.${table}.dual-write`, enabled: true, strategies: [{ name: 'default' }] });

async function createTyped(db: Knex, withObsolete: boolean): Promise<void> {
  await db.schema.createTable('typed', (t) => {
    t.bigIncrements('id').primary();
    t.bigInteger('big');
    t.decimal('amount', 20, 6);
    t.double('ratio');
    t.boolean('flag');
    t.date('born');
    t.datetime('at', { precision: 6 });
    t.binary('blob', 16);
    t.json('doc');
    t.string('name', 40).unique();
    t.smallint('small');
    if (withObsolete) t.text('obsolete');
  });
}

const VALUES = {
  big: '9007199254740993',
  amount: '12345678901234.123456',
  ratio: 0.1,
  flag: true,
  born: '2024-02-29',
  at: '2026-11-24T06:00:00.123Z',
  blob: Buffer.from([0, 1, 255, 10]).toString('base64'),
  // MariaDB's JSON is LONGTEXT: the API takes the text.
  doc: JSON.stringify({ a: [1, 'x'], $note: 'dollar', nested: { k: null } }),
  small: 7,
};

/**
 * The queries (one round trip each: one COM_QUERY, however many statements its text holds)
 * a write sends while `work` runs: those sent on a connection between knex handing it out
 * and taking it back, in the one such span that names `table` (the outbox worker and the
 * stage reconciler use other spans). Counted at mysql2's `addCommand`, below the
 * per-connection query wrapper (src/db/query-deadline.ts).
 */
async function tripsOf(table: string, work: () => Promise<unknown>): Promise<string[]> {
  const connection = (mysql2 as unknown as { Connection: { prototype: Record<string, unknown> } }).Connection.prototype;
  const client = (knex as unknown as { Client: { prototype: Record<string, unknown> } }).Client.prototype;
  const originals = { addCommand: connection['addCommand'], acquire: client['acquireConnection'], release: client['releaseConnection'] } as Record<string, (this: object, ...args: unknown[]) => unknown>;
  const open = new Map<object, string[]>();
  const spans: string[][] = [];
  connection['addCommand'] = function (this: object, command: unknown) {
    const sql = (command as { sql?: unknown }).sql;
    if (typeof sql === 'string') open.get(this)?.push(sql);
    return originals['addCommand']?.call(this, command);
  };
  client['acquireConnection'] = async function (this: object) {
    const acquired = (await originals['acquire']?.call(this)) as object;
    open.set(acquired, []);
    return acquired;
  };
  client['releaseConnection'] = function (this: object, released: object) {
    spans.push(open.get(released) ?? []);
    open.delete(released);
    return originals['release']?.call(this, released);
  };
  try {
    await work();
  } finally {
    connection['addCommand'] = originals['addCommand'];
    client['acquireConnection'] = originals['acquire'];
    client['releaseConnection'] = originals['release'];
  }
  const writes = spans.filter((sqls) => sqls.some((s) => s.includes(`\`${table}\``)));
  expect(writes).toHaveLength(1);
  return writes[0] as string[];
}

describeEachPair(
  'folded MariaDB writes',
  {
    pairs: PAIRS.filter((p) => p.source === 'mysql'),
    label: 'mfold',
    schema: async (source, target) => {
      await createTyped(source.knex, true);
      await createTyped(target.knex, false);
      await createTestTables(source.knex, target.knex);
    },
    policies: { 'typed.yaml': TYPED_POLICY },
    // A refused write answers at once instead of waiting for the switch to end.
    tandem: () => ({ flags: ['typed', 'kv', 'people'].map(dualWrite), overrides: { cutover: { holdMs: 100 } } }),
  },
  (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;

    beforeAll(async () => {
      ({ source, target, tandem } = suite);
      // Applied outbox rows are deleted within a second; a trigger keeps a copy of every row as written.
      await source.knex.raw('CREATE TABLE outbox_audit AS SELECT * FROM tandem_outbox WHERE 1 = 0');
      await source.knex.raw('CREATE TRIGGER outbox_audit AFTER INSERT ON tandem_outbox FOR EACH ROW INSERT INTO outbox_audit SELECT * FROM tandem_outbox WHERE id = NEW.id');
    });

    afterAll(() => tandem.setFlags(['typed', 'kv', 'people'].map(dualWrite)));

    const imagesOf = async (table: string, rowKey: string) =>
      (await source.knex('outbox_audit').where({ tbl: table, row_key: rowKey }).orderBy('id')) as Array<{ id: number; op: string; image: string | null; epoch: number }>;
    const withoutId = (row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).filter(([k]) => k !== 'id' && k !== 'name'));
    const verifyClean = async (table: string) => {
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox to drain' });
      const report = (await tandem.request.post(`/admin/tables/${table}/verify`).send({}).expect(200)).body as Record<string, unknown>;
      expect(report).toMatchObject({ clean: true, mismatched: 0, missingInTarget: 0, extraInTarget: 0 });
      return report;
    };

    it('an insert takes two round trips (one compound statement, then the outbox row with COMMIT) and leaves what the classic transaction leaves', async () => {
      let folded: { body: { row: Record<string, unknown> }; headers: Record<string, string> } | undefined;
      const trips = await tripsOf('typed', async () => {
        folded = await tandem.request.post('/v1/tables/typed/rows').send({ values: { ...VALUES, name: 'folded' } }).expect(201);
      });
      expect(trips).toHaveLength(2);
      expect(trips[0]).toMatch(/^BEGIN NOT ATOMIC/);
      expect(trips[1]).toMatch(/^INSERT INTO tandem_outbox .*\n\s*COMMIT$/s);
      expect(folded?.headers['tandem-write']).toBe('applied');

      let batch: { body: { results: Array<{ row: Record<string, unknown> }> } } | undefined;
      const classicTrips = await tripsOf('typed', async () => {
        batch = await tandem.request
          .post('/v1/batch')
          .send({ ops: [{ op: 'insert', table: 'typed', values: { ...VALUES, name: 'classic' } }, { op: 'insert', table: 'typed', values: { name: 'filler' } }] })
          .expect(200);
      });
      // BEGIN, state, (change, outbox) × 2, COMMIT.
      expect(classicTrips.length).toBeGreaterThanOrEqual(7);
      const foldedRow = folded?.body.row as Record<string, unknown>;
      const classic = batch?.body.results[0]?.row as Record<string, unknown>;
      expect(withoutId(foldedRow)).toEqual(withoutId(classic));
      expect(foldedRow).toMatchObject({ big: '9007199254740993', amount: '12345678901234.123456', born: '2024-02-29', name: 'folded' });

      const [foldedImage] = await imagesOf('typed', String(foldedRow['id']));
      const [classicImage] = await imagesOf('typed', String(classic['id']));
      expect(foldedImage?.op).toBe('upsert');
      const decodedFolded = decodeImage(foldedImage?.image ?? '');
      expect(withoutId(decodedFolded)).toEqual(withoutId(decodeImage(classicImage?.image ?? '')));
      expect(Buffer.isBuffer(decodedFolded['blob'])).toBe(true);
      expect(foldedImage?.epoch).toBe(classicImage?.epoch);
      await verifyClean('typed');
    });

    it('updates and deletes fold too (404s for absent keys); outbox ids of one key rise in commit order', async () => {
      const created = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'before', ratio: 1.5 } }).expect(201);
      const id = String(created.body.row.id);
      const trips = await tripsOf('typed', () => tandem.request.patch(`/v1/tables/typed/rows/${id}`).send({ values: { name: 'after', flag: false } }).expect(200));
      expect(trips).toHaveLength(2);
      const patched = (await tandem.request.patch(`/v1/tables/typed/rows/${id}`).send({ values: { small: 9 } }).expect(200)).body as { row: Record<string, unknown> };
      expect(patched.row).toMatchObject({ name: 'after', flag: 0, ratio: 1.5, small: 9 });
      await tandem.request.patch('/v1/tables/typed/rows/999999').send({ values: { name: 'nobody' } }).expect(404);
      await verifyClean('typed');
      expect(await target.knex('typed').where({ id }).first()).toMatchObject({ name: 'after', small: 9 });

      await tandem.request.delete(`/v1/tables/typed/rows/${id}`).expect(204);
      await tandem.request.delete(`/v1/tables/typed/rows/${id}`).expect(404);
      const images = await imagesOf('typed', id);
      expect(images.map((i) => i.op)).toEqual(['upsert', 'upsert', 'upsert', 'delete']);
      expect(images.map((i) => i.id)).toEqual([...images.map((i) => i.id)].sort((a, b) => a - b));
      expect(images[3]?.image).toBeNull();
      await verifyClean('typed');
      expect(await target.knex('typed').where({ id }).first()).toBeUndefined();
    });

    it("a composite text key's outbox key is formatKey's of the stored key", async () => {
      await tandem.request.post('/v1/tables/kv/rows').send({ values: { tenant: 'a,b %', k: 1, val: 7 } }).expect(201);
      await tandem.request.patch(`/v1/tables/kv/rows/${encodeURIComponent('a,b %')},1`).send({ values: { val: 8 } }).expect(200);
      const images = await imagesOf('kv', formatKey(['a,b %', 1]));
      expect(images.map((i) => i.op)).toEqual(['upsert', 'upsert']);
      await verifyClean('kv');
    });

    it('maps errors as the classic path does: a duplicate key is 409, a bad value 400 naming the field; nothing stays locked', async () => {
      await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'unique one' } }).expect(201);
      const dup = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'unique one' } }).expect(409);
      expect(dup.body.code).toBe('conflict');
      const bad = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'too big', small: 99999999 } }).expect(400);
      expect(bad.body.field).toBe('values.small');
      const created = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'patch me' } }).expect(201);
      const badPatch = await tandem.request.patch(`/v1/tables/typed/rows/${created.body.row.id}`).send({ values: { small: 99999999 } }).expect(400);
      expect(badPatch.body.field).toBe('values.small');
      expect(await source.knex('typed').where({ name: 'too big' }).first()).toBeUndefined();
      // The failed statements' transactions were rolled back: the rows and the state row take an exclusive lock at once.
      await source.knex.transaction(async (trx) => {
        await trx.raw('SET SESSION innodb_lock_wait_timeout = 1');
        await trx('tandem_state').where({ tbl: 'typed' }).forUpdate();
        await trx('typed').forUpdate();
      });
      await verifyClean('typed');
    });

    it('a write to a table this store is not the primary of fails (503) and changes nothing', async () => {
      const created = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'frozen target' } }).expect(201);
      const id = String(created.body.row.id);
      const before = await outboxCounts(source.knex);
      await source.knex('tandem_state').where({ tbl: 'typed' }).update({ role: 'frozen' });
      try {
        const refused = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'refused' } }).expect(503);
        expect(refused.body.code).toBe('table_frozen');
        await tandem.request.patch(`/v1/tables/typed/rows/${id}`).send({ values: { name: 'refused 2' } }).expect(503);
        await tandem.request.delete(`/v1/tables/typed/rows/${id}`).expect(503);
        expect(await source.knex('typed').where({ name: 'refused' }).first()).toBeUndefined();
        expect(await source.knex('typed').where({ id }).first()).toMatchObject({ name: 'frozen target' });
        expect((await outboxCounts(source.knex)).pending).toBeLessThanOrEqual(before.pending);
      } finally {
        await source.knex('tandem_state').where({ tbl: 'typed' }).update({ role: 'primary' });
      }
      await tandem.request.patch(`/v1/tables/typed/rows/${id}`).send({ values: { name: 'thawed' } }).expect(200);
      await verifyClean('typed');
    });

    it('source-only: one round trip, no outbox row; dual-writing again: the outbox row again', async () => {
      const dualWriteOf = async () => Number(((await source.knex('tandem_state').where({ tbl: 'typed' }).first()) as { dual_write: number }).dual_write);
      tandem.setFlags(['kv', 'people'].map(dualWrite));
      await waitFor(async () => (await dualWriteOf()) === 0, { what: 'typed to leave dual-write' });
      const ids: string[] = [];
      for (const name of ['source-only 1', 'source-only 2']) {
        let res: { body: { row: { id: unknown } }; headers: Record<string, string> } | undefined;
        const trips = await tripsOf('typed', async () => {
          res = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name } }).expect(201);
        });
        expect(trips).toHaveLength(1);
        expect(res?.headers['tandem-write']).toBe('primary-only');
        expect(await imagesOf('typed', String(res?.body.row.id))).toEqual([]);
        ids.push(String(res?.body.row.id));
      }
      const trips = await tripsOf('typed', () => tandem.request.delete(`/v1/tables/typed/rows/${ids[1]}`).expect(204));
      expect(trips).toHaveLength(1);
      tandem.setFlags(['typed', 'kv', 'people'].map(dualWrite));
      await waitFor(async () => (await dualWriteOf()) === 1, { what: 'typed to dual-write again' });
      const res = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'dual again' } }).expect(201);
      expect(res.headers['tandem-write']).toBe('applied');
      expect(await imagesOf('typed', String(res.body.row.id))).toHaveLength(1);
      // The row written while source-only never reached the target: delete it (a folded tombstone).
      await tandem.request.delete(`/v1/tables/typed/rows/${ids[0]}`).expect(204);
      await verifyClean('typed');
    });
  },
);
