import { beforeAll, expect, it } from 'vitest';
import type { TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { convergence } from '../helpers/schema.js';
import { outboxCounts, waitFor, type TandemHarness } from '../helpers/tandem.js';

describeEachPair('CRUD and batch through Tandem', { label: 'crud' }, (suite) => {
    const { pair } = suite;
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    beforeAll(() => ({ source, target, tandem } = suite));

    it('inserts, reads, updates, upserts and deletes, mirrored into the mapped target', async () => {
      const created = await tandem.request
        .post('/v1/tables/people/rows')
        .send({ values: { email: 'ada@example.com', full_name: 'Ada Lovelace', age: 36, active: true, legacy: 'x1' } })
        .expect(201);
      expect(created.headers['tandem-write']).toBe('applied');
      const id = created.body.row.id as number;
      expect(created.body.row).toMatchObject({ email: 'ada@example.com', full_name: 'Ada Lovelace', age: 36, legacy: 'x1' });

      const read = await tandem.request.get(`/v1/tables/people/rows/${id}`).expect(200);
      expect(read.headers['tandem-read']).toBe('source');
      expect(read.body.row.full_name).toBe('Ada Lovelace');

      const patched = await tandem.request.patch(`/v1/tables/people/rows/${id}`).send({ values: { full_name: 'Ada King', age: 37 } }).expect(200);
      expect(patched.body.row).toMatchObject({ id, full_name: 'Ada King', age: 37, email: 'ada@example.com' });
      expect(patched.headers['tandem-write']).toBe('applied');

      const put = await tandem.request.put('/v1/tables/people/rows/1000').send({ values: { email: 'grace@example.com', full_name: 'Grace Hopper' } });
      expect(put.status).toBe(201);
      const put2 = await tandem.request.put('/v1/tables/people/rows/1000').send({ values: { email: 'grace@example.com', age: 85 } });
      expect(put2.status).toBe(200);
      expect(put2.body.row).toMatchObject({ id: 1000, full_name: 'Grace Hopper', age: 85 });

      const doomed = await tandem.request.post('/v1/tables/people/rows').send({ values: { email: 'gone@example.com' } }).expect(201);
      await tandem.request.delete(`/v1/tables/people/rows/${doomed.body.row.id}`).expect(204);
      await tandem.request.get(`/v1/tables/people/rows/${doomed.body.row.id}`).expect(404);
      await tandem.request.delete(`/v1/tables/people/rows/${doomed.body.row.id}`).expect(404);
      await tandem.request.patch('/v1/tables/people/rows/999999').send({ values: { age: 1 } }).expect(404);

      const state = await convergence(source.knex, target.knex);
      expect(state.people.actual).toEqual(state.people.expected);
      expect(state.people.actual.map((r) => r['id'])).toEqual([id, 1000]);
      // The excluded column never reaches the target; the renamed one does.
      expect(state.people.actual[0]).toMatchObject({ name: 'Ada King', age: 37, active: 1 });
      expect(state.people.actual[0]).not.toHaveProperty('legacy');
    });

    it('handles composite keys, equality filters and keyset pages', async () => {
      for (const [tenant, k] of [['a', 1], ['a', 2], ['a', 3], ['b', 1], ['a,b', 7]] as const) {
        await tandem.request.post('/v1/tables/kv/rows').send({ values: { tenant, k, val: k * 10, note: `${tenant}-${k}` } }).expect(201);
      }
      const one = await tandem.request.get(`/v1/tables/kv/rows/${encodeURIComponent('a,b')},7`).expect(200);
      expect(one.body.row).toMatchObject({ tenant: 'a,b', k: 7, val: 70 });

      const page1 = await tandem.request.get('/v1/tables/kv/rows').query({ tenant: 'a', _limit: '2' }).expect(200);
      expect(page1.body.rows.map((r: { k: number }) => r.k)).toEqual([1, 2]);
      expect(page1.body.next).toBe('a,2');
      const page2 = await tandem.request.get('/v1/tables/kv/rows').query({ tenant: 'a', _limit: '2', _after: page1.body.next }).expect(200);
      expect(page2.body.rows.map((r: { k: number }) => r.k)).toEqual([3]);
      expect(page2.body.next).toBeNull();

      const all: string[] = [];
      let after: string | undefined;
      do {
        const page = await tandem.request.get('/v1/tables/kv/rows').query({ _limit: '2', ...(after ? { _after: after } : {}) }).expect(200);
        for (const r of page.body.rows as Array<{ tenant: string; k: number }>) all.push(`${r.tenant}/${r.k}`);
        after = page.body.next ?? undefined;
      } while (after);
      expect(all).toEqual(['a/1', 'a/2', 'a/3', 'a,b/7', 'b/1']);

      await tandem.request.patch('/v1/tables/kv/rows/b,1').send({ values: { val: 11 } }).expect(200);
      await tandem.request.delete('/v1/tables/kv/rows/a,3').expect(204);
      const state = await convergence(source.knex, target.knex);
      expect(state.kv.actual).toEqual(state.kv.expected);
      expect(state.kv.actual).toHaveLength(4);
    });

    it('versions a row by its stored key, however the URL spells it', async () => {
      await tandem.request.put('/v1/tables/kv/rows/case,1').send({ values: { val: 1 } }).expect(201);
      // MariaDB's default collation is case-insensitive: CASE,1 is the same row there.
      const spelled = pair.source === 'mysql' ? 'CASE,1' : 'case,1';
      const patched = await tandem.request.patch(`/v1/tables/kv/rows/${spelled}`).send({ values: { val: 2 } }).expect(200);
      expect(patched.body.row).toMatchObject({ tenant: 'case', k: 1, val: 2 });
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'drain' });
      const ledger = (await target.knex('tandem_applied').where({ tbl: 'kv' }).whereIn('row_key', ['case,1', 'CASE,1'])) as Array<{ row_key: string }>;
      expect(ledger.map((l) => l.row_key)).toEqual(['case,1']);
      const state = await convergence(source.knex, target.knex);
      expect(state.kv.actual).toEqual(state.kv.expected);
      await tandem.request.delete(`/v1/tables/kv/rows/${spelled}`).expect(204);
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'drain' });
      const after = await convergence(source.knex, target.knex);
      expect(after.kv.actual).toEqual(after.kv.expected);
    });

    it('applies a batch all-or-nothing on the primary', async () => {
      const before = await convergence(source.knex, target.knex);
      const ok = await tandem.request
        .post('/v1/batch')
        .send({
          ops: [
            { op: 'insert', table: 'people', values: { id: 2000, email: 'b1@example.com', full_name: 'Batch One' } },
            { op: 'upsert', table: 'kv', key: { tenant: 'c', k: 1 }, values: { val: 5 } },
            { op: 'update', table: 'people', key: 2000, values: { age: 20 } },
            { op: 'delete', table: 'kv', key: 'b,1' },
          ],
        })
        .expect(200);
      expect(ok.headers['tandem-write']).toBe('applied');
      expect(ok.body.results.map((r: { status: number }) => r.status)).toEqual([201, 201, 200, 204]);
      expect(ok.body.results[2].row).toMatchObject({ id: 2000, age: 20 });

      const [maxRow] = (await source.knex('tandem_outbox').max({ maxId: 'id' })) as Array<{ maxId: number | string | null }>;
      const maxId = maxRow?.maxId;
      const failed = await tandem.request
        .post('/v1/batch')
        .send({
          ops: [
            { op: 'insert', table: 'people', values: { id: 2001, email: 'b2@example.com' } },
            { op: 'update', table: 'people', key: 999999, values: { age: 1 } },
          ],
        })
        .expect(404);
      expect(failed.body.field).toBe('ops[1].key');
      await tandem.request.get('/v1/tables/people/rows/2001').expect(404);
      // No outbox row survived the rolled-back batch (applied rows are deleted, never marked done).
      expect(await source.knex('tandem_outbox').where('id', '>', Number(maxId ?? 0))).toEqual([]);

      const dup = await tandem.request
        .post('/v1/batch')
        .send({ ops: [
          { op: 'insert', table: 'kv', values: { tenant: 'd', k: 1, val: 1 } },
          { op: 'insert', table: 'people', values: { email: 'b1@example.com' } },
        ] })
        .expect(409);
      expect(dup.body.code).toBe('conflict');
      await tandem.request.get('/v1/tables/kv/rows/d,1').expect(404);

      const after = await convergence(source.knex, target.knex);
      expect(after.people.actual).toEqual(after.people.expected);
      expect(after.kv.actual).toEqual(after.kv.expected);
      expect(after.people.actual.length).toBe(before.people.actual.length + 1);
    });

    it('reports the table in /admin/status and the write metrics', async () => {
      await waitFor(async () => {
        const res = await tandem.request.get('/admin/status').expect(200);
        const people = res.body.tables.find((t: { table: string }) => t.table === 'people');
        return people.stage === 'dual-write' && people.stale === false && people.outbox.pending === 0;
      }, { what: 'status to show dual-write with an empty outbox' });
      const metrics = await tandem.request.get('/metrics').expect(200);
      expect(metrics.text).toMatch(/tandem_writes_total\{table="people",store="source",result="ok"\} \d+/);
      expect(metrics.text).toMatch(/tandem_apply_total\{table="people",result="applied"\} \d+/);
      expect(metrics.text).toMatch(/tandem_stage\{table="people",stage="dual-write"\} 1/);
      expect(metrics.text).toMatch(/tandem_circuit_state\{store="target"\} 0/);
    });
});
