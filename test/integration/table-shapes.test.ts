import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatKey } from '../../src/policy/row-key.js';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type Feature, type TandemHarness } from '../helpers/tandem.js';

/**
 * The shapes real schemas have, through the whole write path on every pair: a text key with
 * a renamed target table and column and a defaulted timestamp (the shape issue 10 measured),
 * and a composite key of text and timestamp. Every single-row write must answer as the
 * primary stored it, reach the target mapped, and leave one version line per stored key
 * (the outbox key is formatKey's, whichever path wrote it).
 */
const NOTES_POLICY = `table: notes
primaryKey: [code]
target:
  table: app_notes
  columns: { body: content }
`;
const EVENTS_POLICY = `table: events
primaryKey: [stream, at]
`;

const dualWrite = (table: string): Feature => ({ name: `tandem.${table}.dual-write`, enabled: true, strategies: [{ name: 'default' }] });

async function createShapes(db: Knex, side: 'source' | 'target'): Promise<void> {
  await db.schema.createTable(side === 'source' ? 'notes' : 'app_notes', (t) => {
    t.string('code', 64).primary();
    t.string(side === 'source' ? 'body' : 'content', 200);
    t.integer('qty');
    // SQLite's CURRENT_TIMESTAMP takes no precision.
    t.timestamp('created_at', { useTz: true, precision: 3 }).notNullable().defaultTo(db.client.config.client === 'better-sqlite3' ? db.fn.now() : db.fn.now(3));
  });
  await db.schema.createTable('events', (t) => {
    t.string('stream', 64).notNullable();
    t.timestamp('at', { useTz: true, precision: 3 }).notNullable();
    t.integer('n');
    t.primary(['stream', 'at']);
  });
}

for (const pair of runnablePairs()) {
  describe(`table shapes through the write path (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'shpsrc');
      target = await createTestDatabase(pair.target, 'shptgt');
      await createTestTables(source.knex, target.knex);
      await createShapes(source.knex, 'source');
      await createShapes(target.knex, 'target');
      tandem = await startTandem({
        source: source.url,
        target: target.url,
        policiesDir: writeTestPolicies({ 'notes.yaml': NOTES_POLICY, 'events.yaml': EVENTS_POLICY }),
        flags: ['people', 'kv', 'notes', 'events'].map(dualWrite),
      });
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    const drained = () => waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'the outbox to drain' });
    const verifyClean = async (table: string) => {
      await drained();
      const report = (await tandem.request.post(`/admin/tables/${table}/verify`).send({}).expect(200)).body as Record<string, unknown>;
      expect(report).toMatchObject({ clean: true, mismatched: 0, missingInTarget: 0, extraInTarget: 0 });
      return report;
    };
    const versions = async (table: string) =>
      // Sorted here: the engines' collations order them differently.
      ((await target.knex('tandem_applied').where({ tbl: table })) as Array<{ row_key: string }>).map((r) => r.row_key).sort();

    it('a text key with a renamed table and column and a defaulted timestamp: insert, update, delete', async () => {
      const codes = ['plain', 'a,b', '100% off', 'Zoë/日本'];
      for (const code of codes) {
        const res = await tandem.request.post('/v1/tables/notes/rows').send({ values: { code, body: `about ${code}`, qty: 1 } }).expect(201);
        expect(res.headers['tandem-write']).toBe('applied');
        expect(res.body.row).toMatchObject({ code, body: `about ${code}`, qty: 1 });
        // The database's default came back with the row.
        expect(typeof res.body.row.created_at).toBe('string');
      }
      const patched = await tandem.request.patch(`/v1/tables/notes/rows/${encodeURIComponent('a,b')}`).send({ values: { qty: 2 } }).expect(200);
      expect(patched.body.row).toMatchObject({ code: 'a,b', qty: 2, body: 'about a,b' });
      await tandem.request.delete(`/v1/tables/notes/rows/${encodeURIComponent('100% off')}`).expect(204);
      await tandem.request.patch('/v1/tables/notes/rows/nobody').send({ values: { qty: 3 } }).expect(404);

      await verifyClean('notes');
      const rows = (await target.knex('app_notes')) as Array<Record<string, unknown>>;
      const byCode = (x: unknown[], y: unknown[]) => (String(x[0]) < String(y[0]) ? -1 : 1);
      expect(rows.map((r) => [r['code'], r['content'], Number(r['qty'])]).sort(byCode)).toEqual(
        [
          ['Zoë/日本', 'about Zoë/日本', 1],
          ['a,b', 'about a,b', 2],
          ['plain', 'about plain', 1],
        ].sort(byCode),
      );
      // One version line per stored key, named exactly as formatKey names it.
      expect(await versions('notes')).toEqual(codes.map((c) => formatKey([c])).sort());
    });

    it('a composite key of text and timestamp: insert, update, delete', async () => {
      const at = '2026-11-24T06:00:00.123Z';
      const created = await tandem.request.post('/v1/tables/events/rows').send({ values: { stream: 's,1', at, n: 1 } }).expect(201);
      expect(created.headers['tandem-write']).toBe('applied');
      const key = `${encodeURIComponent('s,1')},${encodeURIComponent(at)}`;
      await tandem.request.patch(`/v1/tables/events/rows/${key}`).send({ values: { n: 2 } }).expect(200);
      await tandem.request.post('/v1/tables/events/rows').send({ values: { stream: 'gone', at, n: 0 } }).expect(201);
      await tandem.request.delete(`/v1/tables/events/rows/gone,${encodeURIComponent(at)}`).expect(204);

      await verifyClean('events');
      const rows = (await target.knex('events').orderBy('stream')) as Array<Record<string, unknown>>;
      expect(rows.map((r) => [r['stream'], Number(r['n'])])).toEqual([['s,1', 2]]);
      expect(await versions('events')).toEqual([formatKey(['gone', new Date(at)]), formatKey(['s,1', new Date(at)])].sort());
    });
  });
}
