/**
 * Issue 14 item 2: PostgreSQL keeps char(n) blank padding, MariaDB strips it on read (PAD
 * SPACE). Trailing blanks of char(n) are insignificant: verify and shadow reads must not
 * report equal rows as different, and repair must not "fix" them; a real difference (and
 * trailing blanks in a varchar) still counts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

for (const pair of runnablePairs()) {
  describe(`char(n) padding in compare (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'charsrc');
      target = await createTestDatabase(pair.target, 'chartgt');
      await createTestTables(source.knex, target.knex);
      for (const db of [source, target]) {
        await db.knex.schema.createTable('accounts', (t) => {
          t.integer('id').primary();
          t.specificType('filler', 'char(12)');
          t.string('label', 20);
        });
      }
      tandem = await startTandem({
        source: source.url,
        target: target.url,
        policiesDir: writeTestPolicies({ 'accounts.yaml': 'table: accounts\nprimaryKey: [id]\n' }),
        flags: [
          ...['people', 'kv', 'accounts'].map((t) => ({ name: `tandem.${t}.dual-write`, enabled: true, strategies: [{ name: 'default' }] })),
          { name: 'tandem.accounts.shadow-read', enabled: true, strategies: [{ name: 'flexibleRollout', parameters: { rollout: '100', stickiness: 'default', groupId: 'accounts' } }] },
        ],
      });
      for (let id = 1; id <= 5; id++) {
        const res = await tandem.request.post('/v1/tables/accounts/rows').send({ values: { id, filler: `f${id}`, label: `l${id}` } });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      }
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    it('the primary stores the char(n) value whole (a PostgreSQL cast to "character" would cut it to one character)', async () => {
      const row = (await source.knex('accounts').where({ id: 1 }).first()) as { filler: string };
      expect(row.filler.trimEnd()).toBe('f1');
    });

    it('verify is clean on equal char(n) rows and repair re-enqueues nothing; shadow reads match', async () => {
      const report = await tandem.request.post('/admin/tables/accounts/verify').send({ repair: true });
      expect(report.status, JSON.stringify(report.body)).toBe(200);
      expect(report.body, JSON.stringify(report.body)).toMatchObject({ matching: 5, mismatched: 0, missingInTarget: 0, extraInTarget: 0, repaired: 0 });
      for (let id = 1; id <= 5; id++) expect((await tandem.request.get(`/v1/tables/accounts/rows/${id}`)).status).toBe(200);
      const metrics = await waitFor(async () => {
        const text = (await tandem.request.get('/metrics')).text;
        return /tandem_shadow_reads_total\{table="accounts",result="match"\} 5/.test(text) ? text : false;
      }, { timeoutMs: 5_000, what: '5 shadow matches' });
      expect(metrics as string).not.toMatch(/tandem_shadow_reads_total\{table="accounts",result="mismatch"\}/);
    });

    it('real differences still count: another char value, and trailing blanks in a varchar', async () => {
      await target.knex('accounts').where({ id: 2 }).update({ filler: 'other' });
      await target.knex('accounts').where({ id: 3 }).update({ label: 'l3  ' });
      const report = await tandem.request.post('/admin/tables/accounts/verify').send({});
      expect(report.body).toMatchObject({ matching: 3, mismatched: 2 });
    });
  });
}
