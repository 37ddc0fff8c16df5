import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyPartSql } from '../../src/db/dialects/postgres-fold.js';
import { destroyStore, makeStore, type Store } from '../../src/db/store.js';
import { formatKey } from '../../src/policy/row-key.js';
import { createTestDatabase, dialectAvailable, type TestDatabase } from '../helpers/databases.js';

/**
 * The folded PostgreSQL write builds the outbox key in SQL (keyPartSql); it must be
 * byte-identical to what formatKey makes of the value node-postgres returns for the same
 * column, or versions would split. Each value goes through both and is compared.
 */
const CASES: Array<{ type: string; oid: number; values: string[] }> = [
  {
    type: 'text',
    oid: 25,
    values: ['plain', 'a,b', '100%', 'a%2Cb', 'Zoë', '日本語', '😀 emoji', "it's (ok)!~*", 'slash/and?query=1&x#frag', ' spaced ', '+plus', 'tab\there', 'new\nline', '"quoted"', '\\back', ''],
  },
  { type: 'varchar(40)', oid: 1043, values: ['a,b', 'ümlaut', '%%'] },
  { type: 'integer', oid: 23, values: ['0', '-42', '2147483647'] },
  { type: 'bigint', oid: 20, values: ['9007199254740993', '-9223372036854775808'] },
  { type: 'numeric', oid: 1700, values: ['12.500', '-0.001', '1e3'] },
  { type: 'uuid', oid: 2950, values: ['A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'] },
  { type: 'date', oid: 1082, values: ['2024-02-29', '1815-12-10'] },
  {
    type: 'timestamptz',
    oid: 1184,
    values: ['2026-11-24 06:00:00.123456+00', '2026-11-24 07:00:00+01', '1969-12-31 23:59:59.9999+00', '2000-01-01 00:00:00+00'],
  },
  { type: 'timestamp', oid: 1114, values: ['2026-11-24 06:00:00.456789', '1999-12-31 23:59:59'] },
  { type: 'boolean', oid: 16, values: ['true', 'false'] },
  { type: 'bytea', oid: 17, values: ['\\x00ff10fbfeff', '\\x' + 'ab'.repeat(80)] },
];

const run = dialectAvailable('pg') ? describe : describe.skip;

run('the folded write builds the outbox key exactly as formatKey does (PostgreSQL)', () => {
  let db: TestDatabase;
  let store: Store;

  beforeAll(async () => {
    db = await createTestDatabase('pg', 'foldkey');
    store = makeStore('source', db.url, { statementTimeoutMs: 5_000, poolMax: 2, acquireTimeoutMs: 5_000, connectTimeoutMs: 5_000 });
  });

  afterAll(async () => {
    await destroyStore(store);
    await db?.drop();
  });

  for (const { type, oid, values } of CASES) {
    it(`${type}: ${values.length} value(s)`, async () => {
      for (const text of values) {
        const { rows } = (await store.knex.raw(`SELECT v, ${keyPartSql('v', oid)} AS k FROM (SELECT ?::${type} AS v) t`, [text])) as {
          rows: Array<{ v: unknown; k: string }>;
        };
        const [row] = rows;
        expect(row?.k, `${type} ${JSON.stringify(text)}`).toBe(formatKey([row?.v]));
      }
    });
  }

  it('a composite key joins the parts with "," as formatKey does', async () => {
    const { rows } = (await store.knex.raw(
      `SELECT a, b, c, ${keyPartSql('a', 25)} || ',' || ${keyPartSql('b', 1184)} || ',' || ${keyPartSql('c', 23)} AS k
         FROM (SELECT ?::text AS a, ?::timestamptz AS b, ?::int AS c) t`,
      ['x,y%z', '2026-01-02 03:04:05.678+00', 7],
    )) as { rows: Array<{ a: unknown; b: unknown; c: unknown; k: string }> };
    const [row] = rows;
    expect(row?.k).toBe(formatKey([row?.a, row?.b, row?.c]));
    expect(row?.k).toBe('x%2Cy%25z,2026-01-02T03%3A04%3A05.678Z,7');
  });
});
