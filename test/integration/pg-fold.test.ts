import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { beforeAll, expect, it } from 'vitest';
import { decodeImage } from '../../src/outbox/image-codec.js';
import { PAIRS, type TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { createTestTables } from '../helpers/schema.js';
import { outboxCounts, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

/**
 * The folded PostgreSQL write (one statement: state, change, outbox row) must leave exactly
 * what the classic transaction leaves: the same response row, an outbox image that decodes
 * to the same values, the same target row. A batch of two ops always takes the classic
 * path, so each test writes the same values both ways and compares.
 */
const TYPED_POLICY = `table: typed
primaryKey: [id]
target:
  exclude: [obsolete]
`;
const TOKENS_POLICY = `table: tokens
primaryKey: [id]
`;

const dualWrite = (table: string): Feature => ({ name: `tandem.${table}.dual-write`, enabled: true, strategies: [{ name: 'default' }] });

async function createTables(db: Knex, withObsolete: boolean): Promise<void> {
  await db.schema.createTable('typed', (t) => {
    t.bigIncrements('id').primary();
    t.bigInteger('big');
    t.decimal('amount', 20, 6);
    t.double('ratio');
    t.boolean('flag');
    t.date('born');
    t.timestamp('at', { useTz: true, precision: 6 });
    t.datetime('naive', { useTz: false, precision: 6 });
    t.binary('blob');
    t.json('doc');
    t.uuid('tag');
    t.string('name', 40);
    if (withObsolete) t.text('obsolete');
  });
  await db.schema.createTable('tokens', (t) => {
    t.uuid('id').primary();
    t.integer('uses');
  });
}

const VALUES = {
  big: '9007199254740993',
  amount: '12345678901234.123456',
  ratio: 0.1,
  flag: true,
  born: '2024-02-29',
  at: '2026-11-24T06:00:00.123Z',
  naive: '2026-11-24T06:00:00.456',
  blob: Buffer.from([0, 1, 255, 10]).toString('base64'),
  doc: { a: [1, 'x'], $note: 'dollar', nested: { k: null } },
  name: 'Zoë "quoted", comma',
};

const FOLD_PAIRS = PAIRS.filter((p) => p.source === 'pg');

describeEachPair(
  'folded PostgreSQL writes',
  {
    pairs: FOLD_PAIRS,
    label: 'fold',
    schema: async (source, target) => {
      await createTables(source.knex, true);
      await createTables(target.knex, false);
      await createTestTables(source.knex, target.knex);
    },
    policies: { 'typed.yaml': TYPED_POLICY, 'tokens.yaml': TOKENS_POLICY },
    tandem: () => ({ flags: ['typed', 'tokens', 'kv'].map(dualWrite) }),
  },
  (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;

    beforeAll(async () => {
      ({ source, target, tandem } = suite);
      // Applied outbox rows are deleted within a second; a trigger keeps a copy of every row
      // as written, so the test can read each image.
      await source.knex.raw('CREATE TABLE outbox_audit AS SELECT * FROM tandem_outbox WHERE false');
      await source.knex.raw(
        `CREATE FUNCTION outbox_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO outbox_audit SELECT NEW.*; RETURN NEW; END $$`,
      );
      await source.knex.raw('CREATE TRIGGER outbox_audit AFTER INSERT ON tandem_outbox FOR EACH ROW EXECUTE FUNCTION outbox_audit()');
    });

    const imagesOf = async (table: string, rowKey: string) =>
      ((await source.knex('outbox_audit').where({ tbl: table, row_key: rowKey }).orderBy('id')) as Array<{ op: string; image: string | null }>);
    const withoutId = (row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).filter(([k]) => k !== 'id'));
    const verifyClean = async (table: string) => {
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox to drain' });
      const report = (await tandem.request.post(`/admin/tables/${table}/verify`).send({}).expect(200)).body as Record<string, unknown>;
      expect(report).toMatchObject({ clean: true, mismatched: 0, missingInTarget: 0, extraInTarget: 0 });
      return report;
    };

    it('an insert folds into one statement and leaves what the classic transaction leaves', async () => {
      const tag = randomUUID();
      const folded = await tandem.request.post('/v1/tables/typed/rows').send({ values: { ...VALUES, tag } }).expect(201);
      expect(folded.headers['tandem-write']).toBe('applied');
      const batch = await tandem.request
        .post('/v1/batch')
        .send({ ops: [{ op: 'insert', table: 'typed', values: { ...VALUES, tag } }, { op: 'insert', table: 'typed', values: { name: 'filler' } }] })
        .expect(200);
      const classic = batch.body.results[0].row as Record<string, unknown>;
      expect(withoutId(folded.body.row)).toEqual(withoutId(classic));
      expect(folded.body.row).toMatchObject({ big: '9007199254740993', amount: '12345678901234.123456', born: '2024-02-29', name: VALUES.name });

      const [foldedImage] = await imagesOf('typed', String(folded.body.row.id));
      const [classicImage] = await imagesOf('typed', String(classic['id']));
      // The fold wrote the image itself (PostgreSQL's text form); the batch went the classic way.
      expect(foldedImage?.image?.startsWith('{"$pgtypes":')).toBe(true);
      expect(classicImage?.image?.startsWith('{"$pgtypes":')).toBe(false);
      const decodedFolded = decodeImage(foldedImage?.image ?? '');
      const decodedClassic = decodeImage(classicImage?.image ?? '');
      expect(withoutId(decodedFolded)).toEqual(withoutId(decodedClassic));
      expect(Buffer.isBuffer(decodedFolded['blob'])).toBe(true);
      expect(decodedFolded['doc']).toEqual(VALUES.doc);

      const report = await verifyClean('typed');
      expect(report['matching']).toBe(3);
    });

    it('updates and deletes fold too; versions and the target follow', async () => {
      const created = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'before', ratio: 1.5 } }).expect(201);
      const id = String(created.body.row.id);
      const patched = await tandem.request.patch(`/v1/tables/typed/rows/${id}`).send({ values: { name: 'after', flag: false } }).expect(200);
      expect(patched.body.row).toMatchObject({ name: 'after', flag: false, ratio: 1.5 });
      expect(patched.headers['tandem-write']).toBe('applied');
      await tandem.request.patch('/v1/tables/typed/rows/999999').send({ values: { name: 'nobody' } }).expect(404);
      await verifyClean('typed');
      expect(await target.knex('typed').where({ id }).first()).toMatchObject({ name: 'after' });

      await tandem.request.delete(`/v1/tables/typed/rows/${id}`).expect(204);
      await tandem.request.delete(`/v1/tables/typed/rows/${id}`).expect(404);
      const images = await imagesOf('typed', id);
      expect(images.map((i) => i.op)).toEqual(['upsert', 'upsert', 'delete']);
      expect(images[1]?.image?.startsWith('{"$pgtypes":')).toBe(true);
      await verifyClean('typed');
      expect(await target.knex('typed').where({ id }).first()).toBeUndefined();
    });

    it('a uuid key folds with its text as the outbox key; a composite text key folds too, its outbox key exactly formatKey\'s', async () => {
      const id = randomUUID();
      await tandem.request.put(`/v1/tables/tokens/rows/${id}`).send({ values: { uses: 1 } }).expect(201);
      const patched = await tandem.request.patch(`/v1/tables/tokens/rows/${id.toUpperCase()}`).send({ values: { uses: 2 } }).expect(200);
      expect(patched.body.row).toEqual({ id, uses: 2 });
      const images = await imagesOf('tokens', id);
      expect(images).toHaveLength(2);
      expect(images[1]?.image?.startsWith('{"$pgtypes":')).toBe(true);

      await tandem.request.post('/v1/tables/kv/rows').send({ values: { tenant: 'a,b', k: 1, val: 7 } }).expect(201);
      const kvImages = await imagesOf('kv', 'a%2Cb,1');
      expect(kvImages).toHaveLength(1);
      // Issue 10: the outbox key is built in SQL as formatKey builds it, so every key type folds.
      expect(kvImages[0]?.image?.startsWith('{"$pgtypes":')).toBe(true);
      await verifyClean('tokens');
      await verifyClean('kv');
    });

    it('follows stage changes: no outbox row while source-only, the outbox row again once dual-writing', async () => {
      const dualWriteOf = async () => Number(((await source.knex('tandem_state').where({ tbl: 'typed' }).first()) as { dual_write: number }).dual_write);
      tandem.setFlags(['tokens', 'kv'].map(dualWrite));
      await waitFor(async () => (await dualWriteOf()) === 0, { what: 'typed to leave dual-write' });
      // The first write after the change still sends the dual-write statement; the second the plain one.
      const sourceOnlyIds: string[] = [];
      for (const name of ['source-only 1', 'source-only 2']) {
        const res = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name } }).expect(201);
        expect(res.headers['tandem-write']).toBe('primary-only');
        expect(await imagesOf('typed', String(res.body.row.id))).toEqual([]);
        sourceOnlyIds.push(String(res.body.row.id));
      }
      tandem.setFlags(['typed', 'tokens', 'kv'].map(dualWrite));
      await waitFor(async () => (await dualWriteOf()) === 1, { what: 'typed to dual-write again' });
      // The plain statement is gated off by the state row and the write runs again with the outbox row.
      for (const name of ['dual 1', 'dual 2']) {
        const res = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name } }).expect(201);
        expect(res.headers['tandem-write']).toBe('applied');
        const [image] = await imagesOf('typed', String(res.body.row.id));
        expect(image?.image?.startsWith('{"$pgtypes":')).toBe(true);
      }
      // The rows written while source-only never reached the target: delete them (folded
      // deletes with tombstones) so the table verifies clean again.
      for (const id of sourceOnlyIds) await tandem.request.delete(`/v1/tables/typed/rows/${id}`).expect(204);
      await verifyClean('typed');
    });

    it('survives schema changes of the source table while running: an added column, a dropped one', async () => {
      await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'warm' } }).expect(201);
      await source.knex.schema.alterTable('typed', (t) => t.text('added_later'));
      // Prepared plans of the fold now return a different row type: PostgreSQL refuses them once.
      const afterAdd = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'after add' } }).expect(201);
      expect(afterAdd.headers['tandem-write']).toBe('applied');
      await tandem.request.patch(`/v1/tables/typed/rows/${afterAdd.body.row.id}`).send({ values: { name: 'after add 2' } }).expect(200);

      await source.knex.schema.alterTable('typed', (t) => t.dropColumn('obsolete'));
      // The fold's image names `obsolete`: it hands the write to the classic path.
      const afterDrop = await tandem.request.post('/v1/tables/typed/rows').send({ values: { name: 'after drop' } }).expect(201);
      expect(afterDrop.headers['tandem-write']).toBe('applied');
      const [image] = await imagesOf('typed', String(afterDrop.body.row.id));
      expect(image?.image?.startsWith('{"$pgtypes":')).toBe(false);
      await verifyClean('typed');
      expect(await target.knex('typed').where({ id: afterDrop.body.row.id }).first()).toMatchObject({ name: 'after drop' });
    });
  },
);
