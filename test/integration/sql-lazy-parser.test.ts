/**
 * Without `sql.port`, the SQL parser (libpg-query's WebAssembly module) is loaded by the
 * first `POST /v1/sql`, not at start (issue #10: it is 128 MB of wasm memory and, once hot,
 * about 100 MB of RSS a server that never receives SQL should not carry). Tandem runs as a
 * child process so its memory figures are its own.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnTandem, type TandemChild } from '../helpers/child.js';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { waitFor } from '../helpers/tandem.js';

const MB = 1024 * 1024;
const TOKEN = 'sql-lazy-token-1';
const PAIR = runnablePairs().find((p) => p.source === 'pg');

describe.skipIf(!PAIR)('SQL over HTTP loads its parser on first use (needs a PostgreSQL source)', () => {
  let source: TestDatabase | undefined;
  let target: TestDatabase | undefined;
  let child: TandemChild | undefined;

  afterAll(async () => {
    if (child && child.process.exitCode === null && child.process.signalCode === null) {
      child.process.kill('SIGTERM');
      await child.exited;
    }
    await source?.drop();
    await target?.drop();
  });

  it('starts without the parser; the first POST /v1/sql loads it, answers and is replicated', async () => {
    const pair = PAIR as NonNullable<typeof PAIR>;
    source = await createTestDatabase(pair.source, 'sqllazysrc');
    target = await createTestDatabase(pair.target, 'sqllazytgt');
    await createTestTables(source.knex, target.knex);
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-sql-lazy-'));
    const flagsFile = path.join(dir, 'flags.json');
    writeFileSync(flagsFile, JSON.stringify({ version: 2, features: [{ name: 'tandem.people.dual-write', enabled: true, strategies: [{ name: 'default' }] }] }));
    child = await spawnTandem(['serve'], {
      TANDEM_SOURCE_URL: source.url,
      TANDEM_TARGET_URL: target.url,
      TANDEM_POLICIES_DIR: writeTestPolicies(),
      TANDEM_FLAGS_FILE: flagsFile,
      TANDEM_API_TOKENS: TOKEN,
      TANDEM_LOG_LEVEL: 'info',
    });
    const url = child.url;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const external = async () => {
      const text = await (await fetch(`${url}/metrics`, { headers: auth })).text();
      const m = /^tandem_process_nodejs_external_memory_bytes (\S+)$/m.exec(text);
      if (!m) throw new Error(`no external memory figure in /metrics:\n${text.slice(0, 500)}`);
      return Number(m[1]);
    };

    const atStart = await external();
    // The parser's wasm memory alone is 128 MB of external memory once instantiated.
    expect(atStart).toBeLessThan(64 * MB);
    expect(child.output()).not.toContain('sql over http: parser loaded');

    const res = await fetch(`${url}/v1/sql`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ sql: 'INSERT INTO people (email, full_name, age) VALUES ($1, $2, $3) RETURNING email', params: ['lazy@x', 'Lazy One', 7] }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ command: 'INSERT', rowCount: 1, rows: [{ email: 'lazy@x' }] });
    expect(await external()).toBeGreaterThan(atStart + 100 * MB);
    expect(child.output()).toMatch(/sql over http: parser loaded, pools open/);
    await waitFor(async () => (await target?.knex('app_people').where({ email: 'lazy@x' }).first())?.name === 'Lazy One', { what: 'the SQL write replicated' });
  });
});
