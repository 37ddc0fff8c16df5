import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

/**
 * TLS on the SQL front (issue 12): with a certificate configured, a client's SSLRequest is
 * answered with TLS and the whole conversation (auth, statements, replication) runs inside
 * it; with `required`, a client that does not ask for TLS is refused (28000); without a
 * certificate, the request is declined as before.
 */
const run = promisify(execFile);
const HAS_PSQL = spawnSync('psql', ['--version']).status === 0;
const HAS_OPENSSL = spawnSync('openssl', ['version']).status === 0;
const PAIRS = runnablePairs().filter((p) => p.source === 'pg' && p.target === 'pg');
if (PAIRS.length === 0 || !HAS_OPENSSL) {
  describe('SQL front TLS (needs a PostgreSQL source and openssl)', () => {
    it.skip('skipped: set TANDEM_TEST_PG_URL and install openssl to run it', () => undefined);
  });
}

for (const pair of HAS_OPENSSL ? PAIRS : []) {
  describe(`SQL front over TLS (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness | undefined;
    let dir: string;
    let policiesDir: string;
    const users = [{ name: 'app', password: 'app-secret-1' }];

    const start = (tls: Record<string, unknown> | undefined) =>
      startTandem({ source: source.url, target: target.url, policiesDir, overrides: { sql: { port: 0, users, ...(tls ? { tls } : {}) } } });
    const url = (ssl: string) => `postgres://app:app-secret-1@localhost:${tandem!.app.sqlAddress().port}/app?sslmode=${ssl}`;

    beforeAll(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'tandem-tls-'));
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
      source = await createTestDatabase(pair.source, 'tlssrc');
      target = await createTestDatabase(pair.target, 'tlstgt');
      await createTestTables(source.knex, target.knex);
      policiesDir = writeTestPolicies();
    });

    afterAll(async () => {
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('answers SSLRequest with TLS: SCRAM, statements and replication run inside it (node-postgres and psql)', async () => {
      tandem = await start({ cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') });
      const client = new pg.Client({ connectionString: `postgres://app:app-secret-1@localhost:${tandem.app.sqlAddress().port}/app`, ssl: { rejectUnauthorized: false } });
      await client.connect();
      try {
        const stream = (client as unknown as { connection: { stream: TLSSocket } }).connection.stream;
        expect(stream.encrypted).toBe(true);
        expect(stream.getProtocol()).toMatch(/^TLSv1\.[23]$/);
        const inserted = await client.query("INSERT INTO people (email, full_name) VALUES ('tls@x', 'Over TLS') RETURNING id");
        expect(inserted.rowCount).toBe(1);
        const read = await client.query('SELECT full_name FROM people WHERE email = $1', ['tls@x']);
        expect(read.rows).toEqual([{ full_name: 'Over TLS' }]);
      } finally {
        await client.end();
      }
      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0 && Boolean(await target.knex('app_people').where({ email: 'tls@x' }).first()), { what: 'the row on the target' });
      if (HAS_PSQL) {
        const { stdout } = await run('psql', [url('require'), '-X', '-A', '-t', '-c', "SELECT email FROM people WHERE email = 'tls@x'"], { env: { ...process.env, PGSSLMODE: 'require' } });
        expect(stdout.trim()).toBe('tls@x');
      }
      // Not required: a client that does not ask for TLS is still served.
      const plain = new pg.Client({ connectionString: url('disable') });
      await plain.connect();
      expect((await plain.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await plain.end();
      await tandem.stop();
      tandem = undefined;
    });

    it('with `required`, a client that does not ask for TLS is refused with 28000 and the reason; one that does is served', async () => {
      tandem = await start({ cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem'), required: true });
      const plain = new pg.Client({ connectionString: url('disable') });
      const error = await plain.connect().then(
        () => undefined,
        (e: unknown) => e as { code?: string; message: string },
      );
      await plain.end().catch(() => undefined);
      expect(error?.code).toBe('28000');
      expect(error?.message).toMatch(/requires TLS/);
      const secure = new pg.Client({ connectionString: `postgres://app:app-secret-1@localhost:${tandem.app.sqlAddress().port}/app`, ssl: { rejectUnauthorized: false } });
      await secure.connect();
      expect((await secure.query('SELECT count(*)::int AS n FROM people')).rows).toEqual([{ n: 1 }]);
      await secure.end();
      await tandem.stop();
      tandem = undefined;
    });

    it('without a certificate the SSLRequest is declined: sslmode=require fails, sslmode=prefer goes on in plain text', async () => {
      tandem = await start(undefined);
      const required = new pg.Client({ connectionString: `postgres://app:app-secret-1@localhost:${tandem.app.sqlAddress().port}/app`, ssl: { rejectUnauthorized: false } });
      await expect(required.connect()).rejects.toThrow(/does not support SSL/);
      await required.end().catch(() => undefined);
      if (HAS_PSQL) {
        const { stdout } = await run('psql', [url('prefer'), '-X', '-A', '-t', '-c', 'SELECT 2']);
        expect(stdout.trim()).toBe('2');
      }
    });

    it('a certificate that cannot be read stops the start with its path', async () => {
      await expect(start({ cert: path.join(dir, 'missing.pem'), key: path.join(dir, 'key.pem') })).rejects.toThrow(/sql\.tls: cannot use the certificate .*missing\.pem/);
    });
  });
}
