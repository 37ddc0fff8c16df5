import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';
import { int16, message } from '../../src/sql/protocol.js';
import { Exchange } from '../../src/sql/upstream.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front read routing (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

const READ_TARGET_ALL = [
  ...DUAL_WRITE_ALL,
  ...['tandem.people.read-target', 'tandem.events.dual-write', 'tandem.events.read-target'].map((name) => ({ name, enabled: true, strategies: [{ name: 'default' }] })),
];

/** A table with the column types outside the translated subset (timestamp) and a date. */
const EVENTS_POLICY = 'table: events\nprimaryKey: [id]\n';

/**
 * Runs raw extended-protocol messages on a node-postgres connection (as the SQL front talks
 * to its primary) and answers the type and body of each message up to ReadyForQuery.
 */
async function converse(client: pg.Client, messages: Buffer[]): Promise<Array<{ type: string; body: Buffer }>> {
  const answers: Array<{ type: string; body: Buffer }> = [];
  const ex = new Exchange(client as unknown as pg.PoolClient, (type, body) => answers.push({ type, body: Buffer.from(body) }));
  ex.write(Buffer.concat(messages));
  await ex.result();
  return answers;
}

for (const pair of PG_SOURCE) {
  describe(`SQL front: reads of policy tables outside a transaction (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let client: pg.Client;

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlrdsrc');
      target = await createTestDatabase(pair.target, 'sqlrdtgt');
      await createTestTables(source.knex, target.knex);
      for (const db of [source.knex, target.knex]) {
        await db.schema.createTable('events', (t) => {
          t.integer('id').primary();
          t.datetime('happened_at', { useTz: false, precision: 6 });
          t.date('day');
          t.string('label', 40);
        });
      }
      tandem = await startTandem({
        source: source.url,
        target: target.url,
        policiesDir: writeTestPolicies({ 'events.yaml': EVENTS_POLICY }),
        flags: READ_TARGET_ALL,
        overrides: { sql: { port: 0 } },
      });
      client = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${tandem.app.sqlAddress().port}/app` });
      await client.connect();
      await client.query("INSERT INTO people (email, full_name, age, legacy) VALUES ('r1@x', 'Reader One', 30, 'L1'), ('r2@x', 'Reader Two', 40, 'L2')");
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
    });

    afterAll(async () => {
      await client?.end();
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    async function routes(store: string, { table = 'people', reason }: { table?: string; reason?: string } = {}): Promise<number> {
      const text = await tandem.app.metrics.registry.getSingleMetricAsString('tandem_sql_read_routes_total');
      let n = 0;
      for (const line of text.split('\n')) {
        if (line.includes(`store="${store}"`) && line.includes(`table="${table}"`) && (reason === undefined || line.includes(`reason="${reason}"`))) n += Number(line.split(' ').pop());
      }
      return n;
    }

    it('with read-target at 100 %, a single-table SELECT is answered as the source would (same names), by the target where it is PostgreSQL', async () => {
      const sql = 'SELECT id, full_name, upper(email) AS mail FROM people WHERE age >= 30 ORDER BY full_name';
      const before = { target: await routes('target'), source: await routes('source') };
      const viaTandem = await client.query(sql);
      const direct = await source.knex.raw(sql);
      expect(viaTandem.rows).toEqual(direct.rows);
      expect(viaTandem.fields.map((f) => f.name)).toEqual(['id', 'full_name', 'mail']);
      const star = await client.query('SELECT * FROM people WHERE id = 1');
      if (pair.target === 'pg') {
        expect(await routes('target')).toBe(before.target + 1);
        expect(await routes('source')).toBe(before.source + 1);
        // `*` names the source's columns; the excluded column cannot come from the target, so that read went to the source.
        expect(star.rows[0]).toMatchObject({ id: 1, email: 'r1@x', full_name: 'Reader One', legacy: 'L1' });
        // Proof of where it was served: a value changed behind Tandem's back on the target only.
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Only On Target' });
        const served = await client.query('SELECT full_name FROM people WHERE id = 2');
        expect(served.rows).toEqual([{ full_name: 'Only On Target' }]);
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Reader Two' });
        // Inside a transaction every statement goes to the primary.
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Only On Target' });
        await client.query('BEGIN');
        const inTx = await client.query('SELECT full_name FROM people WHERE id = 2');
        await client.query('COMMIT');
        expect(inTx.rows).toEqual([{ full_name: 'Reader Two' }]);
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Reader Two' });
      } else {
        // Another engine: the upper() read and `*` (it names the excluded column) stay on the source.
        expect(star.rows[0]).toMatchObject({ id: 1, legacy: 'L1' });
        expect(await routes('source')).toBe(before.source + 2);
        expect(await routes('target')).toBe(before.target);
      }
    });

    it('parameterised reads (the extended protocol: unnamed and named statements) are routed too; a failed target read is answered by the source', async () => {
      const byId = 'SELECT id, full_name FROM people WHERE id = $1';
      const before = { target: await routes('target'), source: await routes('source') };
      if (pair.target !== 'pg') {
        // Another engine serves the translated subset (the tests below); an expression in the select list stays on the source.
        const why = { reason: 'an expression in the select list' };
        const expressions = await routes('source', why);
        expect((await client.query('SELECT id, upper(full_name) AS up FROM people WHERE id = $1', [2])).rows).toEqual([{ id: 2, up: 'READER TWO' }]);
        expect(await routes('source', why)).toBe(expressions + 1);
        expect(await routes('source')).toBe(before.source + 1);
        expect(await routes('target')).toBe(before.target);
        return;
      }
      await target.knex('app_people').where({ id: 2 }).update({ name: 'Only On Target' });
      try {
        expect((await client.query(byId, [2])).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
        const named = { name: 'people-by-id', text: byId, values: [2] };
        expect((await client.query(named)).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
        expect((await client.query(named)).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
        expect(await routes('target')).toBe(before.target + 3);
        // Naming the excluded column: the target cannot answer it, the source does.
        expect((await client.query('SELECT legacy FROM people WHERE id = $1', [2])).rows).toEqual([{ legacy: 'L2' }]);
        expect(await routes('source')).toBe(before.source + 1);
        // Inside a transaction every statement goes to the primary.
        await client.query('BEGIN');
        const inTx = await client.query(named);
        await client.query('COMMIT');
        expect(inTx.rows).toEqual([{ id: 2, full_name: 'Reader Two' }]);
        // The target fails the read (its table renamed away): the client gets the source's answer, not the error.
        await target.knex.raw('ALTER TABLE app_people RENAME TO app_people_away');
        try {
          expect((await client.query(byId, [2])).rows).toEqual([{ id: 2, full_name: 'Reader Two' }]);
          expect((await client.query(named)).rows).toEqual([{ id: 2, full_name: 'Reader Two' }]);
        } finally {
          await target.knex.raw('ALTER TABLE app_people_away RENAME TO app_people');
        }
        expect(await routes('source')).toBe(before.source + 3);
        // And the statement still works on the target afterwards.
        expect((await client.query(named)).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
      } finally {
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Reader Two' });
      }
    });

    it('the translated subset returns the same rows as the source, served by a target of another engine', async () => {
      await client.query("INSERT INTO people (email, full_name, age, active) VALUES ('R3@x', NULL, 50, true), ('r4@x', 'Four', NULL, false)");
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
      const queries = [
        "SELECT id, full_name, age, active FROM people WHERE age >= 30 AND (email = 'r1@x' OR email IN ('r2@x', 'R3@x')) ORDER BY id",
        "SELECT id, email FROM people WHERE email = 'r3@x'",
        'SELECT id AS key, full_name FROM people WHERE NOT (age < 35) OR age IS NULL ORDER BY id DESC LIMIT 2 OFFSET 1',
        'SELECT id, active FROM people WHERE full_name IS NOT NULL AND active = false',
      ];
      const before = await routes('target');
      for (const sql of queries) {
        const viaTandem = await client.query(sql);
        const direct = await source.knex.raw(sql);
        expect(viaTandem.rows, sql).toEqual(direct.rows);
        expect(viaTandem.fields.map((f) => f.name)).toEqual(direct.fields.map((f: { name: string }) => f.name));
      }
      expect(await routes('target')).toBe(before + queries.length);
      // Byte-for-byte text comparison: MariaDB's case-insensitive collation would have matched R3@x.
      expect((await client.query("SELECT id FROM people WHERE email = 'r3@x'")).rows).toEqual([]);
    });

    it.skipIf(pair.target === 'pg')('parameterised reads of the translated subset are served by a target of another engine with the rows the source returns', async () => {
      const direct = new pg.Client({ connectionString: source.url });
      await direct.connect();
      const tricky = `O'Brien \\ "q" -- ; x' OR '1'='1`;
      await client.query("INSERT INTO people (email, full_name, age, active) VALUES ('q@x', $1, 35, false)", [tricky]);
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
      try {
        const cases: Array<[string, unknown[], number]> = [
          ['SELECT id, full_name, age, active FROM people WHERE id = $1', [2], 1],
          ['SELECT id, email FROM people WHERE email IN ($1, $2, $3) ORDER BY id', ['r1@x', 'R3@x', 'nobody@x'], 2],
          ['SELECT id AS key, full_name FROM people WHERE age >= $1 ORDER BY id DESC LIMIT $2 OFFSET $3', [30, 2, 1], 2],
          ['SELECT id FROM people WHERE age > $1 ORDER BY id LIMIT $2', ['35', null], 2],
          ['SELECT id FROM people WHERE age = $1 OR id = $2', [null, 1], 1],
          ['SELECT id FROM people WHERE NOT (full_name = $1) OR id IN ($2, $3)', [null, 2, null], 1],
          ['SELECT id, active FROM people WHERE active = $1 ORDER BY id', [true], 1],
          ['SELECT id, active FROM people WHERE active = $1 ORDER BY id', [' No '], 2],
          ['SELECT id, full_name FROM people WHERE email = $1 AND age <> $2', ['r4@x', 1], 0],
          ['SELECT id, email FROM people WHERE email = $1', ['r3@x'], 0],
          // A value holding SQL is a value: no row has that e-mail; the one whose name holds it is found by it.
          ['SELECT id FROM people WHERE email = $1', ["x' OR '1'='1"], 0],
          ['SELECT email, full_name FROM people WHERE full_name = $1', [tricky], 1],
        ];
        const before = await routes('target');
        for (const [text, values, count] of cases) {
          const via = await client.query(text, values);
          const expected = await direct.query(text, values);
          expect(via.rows, text).toEqual(expected.rows);
          expect(via.rows, text).toHaveLength(count);
          expect(via.fields.map((f) => [f.name, f.dataTypeID])).toEqual(expected.fields.map((f) => [f.name, f.dataTypeID]));
        }
        expect(await routes('target')).toBe(before + cases.length);

        // A named statement, executed twice; a value changed behind Tandem's back on the target shows who answered.
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Only On Target' });
        const named = { name: 'people-by-email', text: 'SELECT id, full_name FROM people WHERE email = $1', values: ['r1@x'] };
        expect((await client.query(named)).rows).toEqual([{ id: 1, full_name: 'Reader One' }]);
        expect((await client.query({ ...named, values: ['r2@x'] })).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
        expect(await routes('target')).toBe(before + cases.length + 2);
        // The statement parsed in a batch the target answered is the session's: inside a transaction the source binds it.
        await client.query('BEGIN');
        const inTx = await client.query({ ...named, values: ['r2@x'] });
        await client.query('COMMIT');
        expect(inTx.rows).toEqual([{ id: 2, full_name: 'Reader Two' }]);

        // The target fails the read (its table renamed away): the source answers, counted.
        const failed = await routes('source', { reason: 'target read failed' });
        await target.knex.schema.renameTable('app_people', 'app_people_away');
        try {
          expect((await client.query(named)).rows).toEqual([{ id: 1, full_name: 'Reader One' }]);
          expect((await client.query('SELECT id FROM people WHERE id = $1', [3])).rows).toEqual([{ id: 3 }]);
        } finally {
          await target.knex.schema.renameTable('app_people_away', 'app_people');
        }
        expect(await routes('source', { reason: 'target read failed' })).toBe(failed + 2);
        expect((await client.query({ ...named, values: ['r2@x'] })).rows).toEqual([{ id: 2, full_name: 'Only On Target' }]);
      } finally {
        await target.knex('app_people').where({ id: 2 }).update({ name: 'Reader Two' });
        await direct.end();
      }
    });

    it.skipIf(pair.target === 'pg')('what the target cannot answer exactly goes to the source, counted with its reason: timestamps, binary formats, a row limit, a value PostgreSQL refuses', async () => {
      await client.query("INSERT INTO events (id, happened_at, day, label) VALUES (1, '2024-03-01 10:00:00.123456', '2024-03-01', 'a'), (2, '2024-03-02 11:30:00', '2024-03-02', 'b')");
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
      const direct = new pg.Client({ connectionString: source.url });
      await direct.connect();
      const raw = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${tandem.app.sqlAddress().port}/app` });
      await raw.connect();
      const counted = async <T>(table: string, reason: string, run: () => Promise<T>): Promise<T> => {
        const before = await routes('source', { table, reason });
        const result = await run();
        expect(await routes('source', { table, reason }), reason).toBe(before + 1);
        return result;
      };
      const same = async (text: string, values: unknown[]) => {
        const via = await client.query(text, values);
        expect(via.rows, text).toEqual((await direct.query(text, values)).rows);
        return via.rows;
      };
      try {
        // A date parameter and column are in the subset; a timestamp column or one compared with a parameter are not.
        const before = await routes('target', { table: 'events' });
        expect(await same('SELECT id, day, label FROM events WHERE day = $1', ['2024-03-02'])).toHaveLength(1);
        expect(await routes('target', { table: 'events' })).toBe(before + 1);
        await counted('events', 'column happened_at has a type whose text form is not rebuilt', () => same('SELECT id, happened_at FROM events WHERE id = $1', [1]));
        await counted('events', 'a value compared with a column of a type not translated', () => same('SELECT id FROM events WHERE happened_at > $1', ['2024-03-01 12:00']));
        // Values PostgreSQL would refuse: the client gets its error, from the source.
        await counted('people', 'a value that is not of its column type', () => expect(client.query('SELECT id FROM people WHERE id = $1', ['3000000000'])).rejects.toMatchObject({ code: '22003' }));
        await counted('people', 'a value that is not of its column type', () => expect(client.query('SELECT id FROM people WHERE active = $1', ['maybe'])).rejects.toMatchObject({ code: '22P02' }));
        await counted('people', 'a parameter whose type PostgreSQL would not know', () => expect(client.query('SELECT id FROM people WHERE id = $2', [null, 1])).rejects.toMatchObject({ code: '42P18' }));
        // Binary results, and a binary parameter (node-postgres sends a Buffer as one).
        const byId = { text: 'SELECT id, full_name FROM people WHERE id = $1', values: [2], binary: true };
        const binary = await counted('people', 'binary format', () => client.query(byId));
        expect(binary.rows).toEqual((await direct.query(byId)).rows);
        await counted('people', 'binary format', () => same('SELECT id FROM people WHERE email = $1', [Buffer.from('r1@x')]));

        // Raw messages: Describe of the statement (its parameter types as PostgreSQL infers them), and an Execute with a row limit.
        const batch = (maxRows: number) => [
          message('P', '', 'SELECT id, email FROM people WHERE id IN ($1, $2) AND email <> $3 ORDER BY id', int16(0)),
          message('D', Buffer.from('S'), ''),
          message('B', '', '', int16(0), int16(3), 1, Buffer.from('1'), 1, Buffer.from('2'), 8, Buffer.from('nobody@x'), int16(0)),
          message('D', Buffer.from('P'), ''),
          message('E', '', maxRows),
          message('S'),
        ];
        const shape = (answers: Array<{ type: string; body: Buffer }>) => answers.map((a) => (a.type === 'T' ? 'T' : `${a.type}:${a.body.toString('hex')}`));
        const targetBefore = await routes('target');
        const served = await converse(raw, batch(0));
        expect(await routes('target')).toBe(targetBefore + 1);
        expect(shape(served)).toEqual(shape(await converse(direct, batch(0))));
        expect(served.map((a) => a.type).join('')).toBe('1tT2TDDCZ');
        const limited = await counted('people', 'an Execute with a row limit', () => converse(raw, batch(1)));
        expect(shape(limited)).toEqual(shape(await converse(direct, batch(1))));
        expect(limited.map((a) => a.type)).toContain('s');
      } finally {
        await raw.end();
        await direct.end();
      }
    });
  });
}
