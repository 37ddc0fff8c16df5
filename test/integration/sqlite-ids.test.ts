/**
 * Issue 14 item 11: on SQLite, after a row with id 9223372036854775807 every generated-id
 * insert fails with SQLITE_FULL ("disk full"). Tandem answers the real condition: 409 with
 * the reason, naming the field; an explicit id still works. (PostgreSQL and MariaDB report
 * an exhausted sequence with their own codes: out of range, duplicate key.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { startTandem, type TandemHarness } from '../helpers/tandem.js';

for (const pair of runnablePairs().filter((p) => p.source === 'sqlite')) {
  describe(`generated ids exhausted on a SQLite primary (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'idsrc');
      target = await createTestDatabase(pair.target, 'idtgt');
      await createTestTables(source.knex, target.knex);
      tandem = await startTandem({ source: source.url, target: target.url, policiesDir: writeTestPolicies() });
    });
    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    it('answers 409 naming the condition, not 503 "disk full"', async () => {
      const max = await tandem.request.post('/v1/tables/people/rows').send({ values: { id: '9223372036854775807', email: 'max@example.com' } });
      expect(max.status, JSON.stringify(max.body)).toBe(201);
      const next = await tandem.request.post('/v1/tables/people/rows').send({ values: { email: 'next@example.com' } });
      expect(next.status, JSON.stringify(next.body)).toBe(409);
      expect(next.body.code).toBe('conflict');
      expect(next.body.field).toBe('values');
      expect(next.body.detail).toMatch(/no generated id left.*9223372036854775807/);
      const explicit = await tandem.request.post('/v1/tables/people/rows').send({ values: { id: 5, email: 'five@example.com' } });
      expect(explicit.status).toBe(201);
    });
  });
}
