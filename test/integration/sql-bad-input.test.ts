import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

const PG_SOURCE = runnablePairs().filter((p) => p.source === 'pg');
if (PG_SOURCE.length === 0) {
  describe('SQL front bad input (needs a PostgreSQL source)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL to run it', () => undefined);
  });
}

const PASSWORD = 'correct horse battery';

for (const pair of PG_SOURCE) {
  describe(`SQL front: bad input is refused clearly and changes nothing (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let port: number;
    const connect = async (password = PASSWORD) => {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'app', password, database: 'app' });
      // A FATAL answer ends the connection: expected here, asserted through the query's rejection.
      client.on('error', () => undefined);
      await client.connect();
      return client;
    };

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'sqlbadsrc');
      target = await createTestDatabase(pair.target, 'sqlbadtgt');
      await createTestTables(source.knex, target.knex);
      tandem = await startTandem({
        source: source.url,
        target: target.url,
        policiesDir: writeTestPolicies(),
        overrides: { sql: { port: 0, users: [{ name: 'app', password: PASSWORD }], maxMessageBytes: 4096, maxSessions: 5, statementTimeoutMs: 1500 } },
      });
      port = tandem.app.sqlAddress().port;
      const c = await connect();
      await c.query("INSERT INTO people (email, full_name) VALUES ('keep@x', 'Keep')");
      await c.end();
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox drained' });
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    async function unchanged(): Promise<void> {
      const state = await convergence(source.knex, target.knex);
      expect(state.people.expected.map((r) => r['email'])).toEqual(['keep@x']);
      expect(state.people.actual).toEqual(state.people.expected);
      const columns = await source.knex('information_schema.columns').where({ table_name: 'people' }).count({ n: '*' });
      expect(Number(columns[0]?.n)).toBe(7);
    }

    it('SCRAM: a wrong password is refused with 28P01', async () => {
      await expect(connect('wrong password!')).rejects.toMatchObject({ code: '28P01' });
    });

    it('a syntax error answers 42601 with its position; an unknown table 42P01; the session goes on', async () => {
      const c = await connect();
      try {
        await expect(c.query('SELECT * FROM people WHER id = 1')).rejects.toMatchObject({ code: '42601', position: '27' });
        await expect(c.query('SELECT * FROM people WHER id = $1', [1])).rejects.toMatchObject({ code: '42601', position: '27' });
        await expect(c.query('SELECT * FROM no_such_table')).rejects.toMatchObject({ code: '42P01', position: '15' });
        expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      } finally {
        await c.end();
      }
      await unchanged();
    });

    it('DDL, TRUNCATE and uncapturable writes on a dual-writing table are refused with 0A000', async () => {
      const c = await connect();
      try {
        for (const sql of [
          'ALTER TABLE people ADD COLUMN x int',
          'DROP TABLE people',
          'TRUNCATE people',
          'TRUNCATE kv, people',
          "WITH d AS (DELETE FROM people RETURNING id) SELECT count(*) FROM d",
          "EXPLAIN ANALYZE DELETE FROM people",
          "PREPARE p AS DELETE FROM people",
          "MERGE INTO people USING (SELECT 1 AS id) s ON people.id = s.id WHEN MATCHED THEN DELETE",
        ]) {
          await expect(c.query(sql), sql).rejects.toMatchObject({ code: '0A000' });
        }
        // Inside a transaction the refusal fails the transaction, as any error would.
        await c.query('BEGIN');
        await c.query("INSERT INTO people (email) VALUES ('tx@x')");
        await expect(c.query('TRUNCATE people')).rejects.toMatchObject({ code: '0A000' });
        await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
        await c.query('ROLLBACK');
        expect((await c.query('SELECT count(*)::int AS n FROM people')).rows).toEqual([{ n: 1 }]);
      } finally {
        await c.end();
      }
      await unchanged();
    });

    it('a client that disconnects mid-transaction is rolled back and nothing is replicated', async () => {
      const c = await connect();
      await c.query('BEGIN');
      await c.query("INSERT INTO people (email) VALUES ('ghost@x')");
      await c.query("UPDATE people SET full_name = 'Changed' WHERE email = 'keep@x'");
      // Drop the TCP connection without Terminate.
      (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
      await waitFor(async () => {
        const rows = await source.knex('pg_stat_activity').where({ application_name: 'tandem-sql', state: 'idle in transaction' }).count({ n: '*' });
        return Number(rows[0]?.n) === 0;
      }, { what: 'the transaction rolled back' });
      await new Promise((r) => setTimeout(r, 300));
      expect(await outboxCounts(source.knex)).toMatchObject({ pending: 0, dead: 0 });
      await unchanged();
    });

    it('an oversized message is refused with 54000 and the server keeps serving', async () => {
      const c = await connect();
      await expect(c.query(`SELECT '${'x'.repeat(10_000)}'`)).rejects.toMatchObject({ code: '54000' });
      await c.end().catch(() => undefined);
      const d = await connect();
      expect((await d.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
      await d.end();
      await unchanged();
    });

    it('a protocol violation is answered 08P01 and the server keeps serving', async () => {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        const chunks: Buffer[] = [];
        socket.on('data', (b) => chunks.push(b));
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
        socket.on('error', reject);
        // A startup packet for protocol 9.9, which does not exist.
        const packet = Buffer.alloc(8);
        packet.writeInt32BE(8, 0);
        packet.writeInt32BE((9 << 16) | 9, 4);
        socket.write(packet);
      });
      expect(answer).toContain('08P01');
      const garbage = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        const chunks: Buffer[] = [];
        socket.on('data', (b) => chunks.push(b));
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
        socket.on('error', reject);
        // A typed message before any startup: its length field is absurd.
        socket.write(Buffer.from('Q\u00ff\u00ff\u00ff\u00ffSELECT 1', 'latin1'));
      });
      expect(garbage).toMatch(/08P01|54000/);
      const d = await connect();
      expect((await d.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
      await d.end();
      await unchanged();
    });

    it('a statement past sql.statementTimeoutMs is cancelled with 57014 and the session goes on', async () => {
      const c = await connect();
      try {
        await expect(c.query('SELECT pg_sleep(5)')).rejects.toMatchObject({ code: '57014' });
        expect((await c.query('SELECT 4 AS four')).rows).toEqual([{ four: 4 }]);
      } finally {
        await c.end();
      }
    });

    it('past sql.maxSessions a connection is refused with 53300', async () => {
      const open = await Promise.all([1, 2, 3, 4, 5].map(() => connect()));
      await expect(connect()).rejects.toMatchObject({ code: '53300' });
      await Promise.all(open.map((c) => c.end()));
      const d = await connect();
      await d.end();
    });
  });
}
