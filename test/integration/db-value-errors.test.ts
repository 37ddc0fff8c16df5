import { beforeAll, expect, it } from 'vitest';
import { PAIRS, type TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import type { TandemHarness } from '../helpers/tandem.js';

/**
 * Issue 14 item 12: a value the primary itself refuses (Tandem's own checks let it through:
 * a decimal beyond its precision, text that is not a uuid) answers 400 naming the field —
 * from the column MySQL/MariaDB name in their message, or the one column of the type
 * PostgreSQL names — and writes nothing.
 */
const PRICES_POLICY = `table: prices
primaryKey: [id]
`;

describeEachPair(
  'a value the primary refuses answers 400 naming the field',
  {
    label: 'dbvalues',
    // SQLite takes any value in any column: nothing to refuse there.
    pairs: PAIRS.filter((p) => p.source !== 'sqlite'),
    policies: { 'prices.yaml': PRICES_POLICY },
    testPolicies: false,
    tandem: () => ({ flags: [{ name: 'tandem.prices.dual-write', enabled: true, strategies: [{ name: 'default' }] }] }),
    schema: async (source, target) => {
      for (const db of [source, target]) {
        await db.knex.schema.createTable('prices', (t) => {
          t.integer('id').primary();
          t.decimal('amount', 5, 2);
          t.integer('qty');
          if (db.dialect === 'pg') t.uuid('ref');
          else t.string('ref', 36);
        });
      }
    },
  },
  (suite) => {
    let source: TestDatabase;
    let tandem: TandemHarness;
    beforeAll(() => ({ source, tandem } = suite));

    it('a decimal beyond its precision: 400 naming values.amount, nothing written', async () => {
      const res = await tandem.request.put('/v1/tables/prices/rows/1').send({ values: { amount: '123456.78', qty: 1 } });
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.field).toBe('values.amount');
      expect(res.body.detail).toMatch(/^values\.amount: a value does not fit its column of prices/);
      expect(res.body.detail).not.toContain('123456');
      expect(await source.knex('prices').where({ id: 1 }).first()).toBeUndefined();
    });

    it('in a batch, the op and the column: ops[1].values.amount', async () => {
      const res = await tandem.request.post('/v1/batch').send({
        ops: [
          { op: 'insert', table: 'prices', values: { id: 2, qty: 1 } },
          { op: 'insert', table: 'prices', values: { id: 3, amount: 99999 } },
        ],
      });
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.field).toBe('ops[1].values.amount');
      expect(res.body.detail).toMatch(/^ops\[1\]\.values\.amount: /);
      expect(await source.knex('prices').whereIn('id', [2, 3])).toEqual([]);
    });

    it.skipIf(suite.pair.source !== 'pg')('text that is not a uuid in a PostgreSQL uuid column: 400 naming values.ref', async () => {
      const res = await tandem.request.put('/v1/tables/prices/rows/4').send({ values: { ref: 'not-a-uuid', qty: 2 } });
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.field).toBe('values.ref');
      expect(res.body.detail).not.toContain('not-a-uuid');
    });
  },
);
