import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openToolkit } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import { applyEntries } from '../../src/write/apply-entries.js';
import type { OutboxEntry } from '../../src/outbox/outbox-entry.js';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createPreviousInternalTables, createTestTables, writeTestPolicies } from '../helpers/schema.js';

/**
 * Issue 14 item 1: row keys that differ only in case are two rows on a case-sensitive
 * primary. The applied ledger must keep them apart on every engine (MariaDB's default
 * collation folds case), including installs whose ledger was created before the fix.
 */
type Toolkit = Awaited<ReturnType<typeof openToolkit>>;

const CODES_POLICY = `table: codes
primaryKey: [code]
`;

function entry(rowKey: string, id: number, val: number): OutboxEntry {
  return { id: String(id), table: 'codes', rowKey, op: 'upsert', image: { code: rowKey, val }, epoch: 0, attempts: 0, createdAt: Date.now() };
}

for (const pair of runnablePairs()) {
  describe(`keys differing only in case (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let toolkit: Toolkit;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'casesrc');
      target = await createTestDatabase(pair.target, 'casetgt');
      await createTestTables(source.knex, target.knex);
      for (const db of [source, target]) {
        await db.knex.schema.createTable('codes', (t) => {
          // The user's table is case-sensitive (as PostgreSQL's is by default).
          const code = t.string('code', 40).notNullable().primary();
          if (db.dialect === 'mysql') code.collate('utf8mb4_bin');
          t.integer('val');
        });
      }
      // An install from before the fix: Tandem's tables created with the database's default collation.
      await createPreviousInternalTables(target.knex);
      const config = loadConfig({
        env: {},
        overrides: { source: { url: source.url }, target: { url: target.url }, policiesDir: writeTestPolicies({ 'codes.yaml': CODES_POLICY }) },
      });
      toolkit = await openToolkit(config);
    });

    afterAll(async () => {
      await toolkit?.close();
      await source?.drop();
      await target?.drop();
    });

    const rows = async (keys: string[]) =>
      ((await target.knex('codes').whereIn('code', keys)) as Array<{ code: string; val: number | string }>)
        .map((r) => [r.code, Number(r.val)])
        .sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1));

    it('the older of two case twins, arriving after the newer, is applied, not skipped (one key per apply)', async () => {
      const first = await applyEntries(toolkit.target, toolkit.policies, [entry('abc', 20, 1)], 5_000);
      expect(first.perTable.get('codes')).toEqual({ applied: 1, skipped: 0 });
      const late = await applyEntries(toolkit.target, toolkit.policies, [entry('ABC', 10, 2)], 5_000);
      expect(late.perTable.get('codes')).toEqual({ applied: 1, skipped: 0 });
      expect(await rows(['abc', 'ABC'])).toEqual([
        ['ABC', 2],
        ['abc', 1],
      ]);
      const ledger = (await target.knex('tandem_applied').where('tbl', 'codes').whereIn('row_key', ['abc', 'ABC'])) as Array<{ row_key: string; seq: number | string }>;
      expect(ledger.map((l) => [l.row_key, Number(l.seq)]).sort()).toEqual([
        ['ABC', 10],
        ['abc', 20],
      ]);
    });

    it('the same in batches of several keys, and a stale twin is still skipped on its own key', async () => {
      await applyEntries(toolkit.target, toolkit.policies, [entry('xyz', 40, 1), entry('q1', 41, 1)], 5_000);
      const late = await applyEntries(toolkit.target, toolkit.policies, [entry('XYZ', 30, 2), entry('q2', 31, 2), entry('xyz', 35, 9)], 5_000);
      // XYZ and q2 are new keys; xyz seq 35 is older than its applied 40.
      expect(late.perTable.get('codes')).toEqual({ applied: 2, skipped: 1 });
      expect(await rows(['xyz', 'XYZ'])).toEqual([
        ['XYZ', 2],
        ['xyz', 1],
      ]);
    });

    it("every Tandem-owned key column compares bytes exactly (MySQL/MariaDB: a binary collation)", async () => {
      if (target.dialect !== 'mysql' && source.dialect !== 'mysql') return;
      const db = target.dialect === 'mysql' ? target : source;
      const [cols] = (await db.knex.raw(
        `SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME) AS name, COLLATION_NAME AS collation FROM information_schema.COLUMNS
          WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'tandem\\_%' AND COLUMN_NAME IN ('tbl', 'row_key', 'last_key') ORDER BY 1`,
      )) as [Array<{ name: string; collation: string }>];
      expect(cols.length).toBe(7);
      for (const c of cols) expect(`${c.name} ${c.collation}`).toMatch(/_bin$/);
    });
  });
}
