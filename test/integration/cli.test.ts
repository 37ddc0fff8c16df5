import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freePort, ROOT, spawnTandem, type TandemChild } from '../helpers/child.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, KV_POLICY } from '../helpers/schema.js';

/**
 * The `tandem` command as operators run it: the built CLI (`dist/`, built by the global
 * setup) in a child process, its exit codes, its error messages and its signal handling.
 */

const NO_CONFIG = path.join(ROOT, 'test', 'no-config');
const DEMO_POLICIES = path.join(ROOT, 'policies');
const DEMO_FLAGS = path.join(ROOT, 'config', 'flags.yaml');

interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (killed after `timeoutMs`, which then shows as a signal). */
function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', TANDEM_CONFIG_DIR: NO_CONFIG, TANDEM_LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Env for `serve --demo` on fresh SQLite files in `dir`. */
function demoEnv(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TANDEM_SOURCE_URL: `sqlite:${path.join(dir, 's.db')}`,
    TANDEM_TARGET_URL: `sqlite:${path.join(dir, 't.db')}`,
    TANDEM_POLICIES_DIR: DEMO_POLICIES,
    TANDEM_FLAGS_FILE: DEMO_FLAGS,
    TANDEM_LOG_LEVEL: 'info',
    ...extra,
  };
}

function openSqlite(file: string): Knex {
  return knexFactory({ client: 'better-sqlite3', connection: { filename: file }, useNullAsDefault: true, pool: { min: 1, max: 1 } });
}

function waitExit(child: TandemChild, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'timeout'> {
  return Promise.race([child.exited, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms).unref())]);
}

function alive(child: TandemChild | undefined): child is TandemChild {
  return child !== undefined && child.process.exitCode === null && child.process.signalCode === null;
}

describe('tandem CLI', () => {
  const dirs: string[] = [];
  const children: TandemChild[] = [];
  const tmp = (label: string) => {
    const dir = mkdtempSync(path.join(tmpdir(), `tandem-cli-${label}-`));
    dirs.push(dir);
    return dir;
  };

  afterAll(async () => {
    for (const child of children) {
      if (alive(child)) {
        child.process.kill('SIGKILL');
        await child.exited;
      }
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('with no arguments prints the usage and exits 2', async () => {
    const result = await runCli([]);
    expect(result.code).toBe(2);
    expect(result.stdout + result.stderr).toMatch(/Usage:/);
    expect(result.stdout + result.stderr).toMatch(/tandem serve/);
  });

  it('rejects an unknown command with exit 2, naming it', async () => {
    const result = await runCli(['frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(result.stderr).toMatch(/--help/);
    const badOption = await runCli(['serve', '--no-such-option']);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toMatch(/no-such-option/);
  });

  it('--help exits 0 and --version prints the version', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage:/);
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('serve with invalid configuration exits non-zero naming every bad variable', async () => {
    const dir = tmp('badconfig');
    const result = await runCli(['serve'], {
      TANDEM_PORT: 'notaport',
      TANDEM_SOURCE_URL: 'ftp://x',
      TANDEM_TARGET_URL: `sqlite:${path.join(dir, 't.db')}`,
      TANDEM_POLICIES_DIR: DEMO_POLICIES,
      TANDEM_FLAGS_FILE: DEMO_FLAGS,
    });
    expect(result.signal).toBeNull();
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stderr).toMatch(/TANDEM_PORT/);
    expect(result.stderr).toMatch(/TANDEM_SOURCE_URL/);
    // One message lists both problems; nothing was started.
    expect(result.stderr.match(/Invalid configuration/g)).toHaveLength(1);
  });

  describe('serve with a policy naming a column that does not exist', () => {
    let source: TestDatabase;
    let target: TestDatabase;

    beforeAll(async () => {
      source = await createTestDatabase('sqlite', 'clisrc');
      target = await createTestDatabase('sqlite', 'clitgt');
      await createTestTables(source.knex, target.knex);
      // Release the files so only the child uses them.
      await source.knex.destroy();
      await target.knex.destroy();
    });

    afterAll(async () => {
      await source?.drop();
      await target?.drop();
    });

    it('exits non-zero naming the column', async () => {
      const policies = tmp('badpolicy');
      writeFileSync(
        path.join(policies, 'people.yaml'),
        'table: people\nprimaryKey: [id]\ntarget:\n  table: app_people\n  columns: { full_name: name, nickname_xyz: nick }\n  exclude: [legacy]\n',
      );
      writeFileSync(path.join(policies, 'kv.yaml'), KV_POLICY);
      const result = await runCli(['serve'], {
        TANDEM_SOURCE_URL: source.url,
        TANDEM_TARGET_URL: target.url,
        TANDEM_POLICIES_DIR: policies,
        TANDEM_FLAGS_FILE: DEMO_FLAGS,
        TANDEM_PORT: String(await freePort()),
      });
      expect(result.signal, `should exit by itself:\n${result.stderr}`).toBeNull();
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/nickname_xyz/);
      expect(result.stderr).toMatch(/people/);
    });
  });

  describe('serve --demo', () => {
    let dir: string;
    let child: TandemChild;

    beforeAll(async () => {
      dir = tmp('demo');
      child = await spawnTandem(['serve', '--demo'], demoEnv(dir));
      children.push(child);
    });

    it('starts, accepts a write and copies it, renamed, into the target file', async () => {
      const res = await fetch(`${child.url}/v1/tables/users/rows`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ values: { email: 'a@b.c', full_name: 'A B' } }),
      });
      expect(res.status).toBe(201);
      expect(res.headers.get('tandem-write')).toBe('applied');
      const body = (await res.json()) as { row: { id: number; email: string; full_name: string } };
      expect(body.row).toMatchObject({ email: 'a@b.c', full_name: 'A B' });

      const target = openSqlite(path.join(dir, 't.db'));
      try {
        const rows = (await target('app_users').select('*')) as Array<Record<string, unknown>>;
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ id: body.row.id, email: 'a@b.c', name: 'A B' });
      } finally {
        await target.destroy();
      }
    });

    it('`tandem status --json --url` prints the running Tandem\'s status as JSON', async () => {
      const result = await runCli(['status', '--json', '--url', child.url]);
      expect(result.code, result.stderr).toBe(0);
      const parsed = JSON.parse(result.stdout) as { tables: Array<{ table: string; stage: string }> };
      expect(parsed.tables[0]?.table).toBe('users');
      expect(parsed.tables[0]?.stage).toBe('dual-write');

      const human = await runCli(['status', '--url', child.url]);
      expect(human.code).toBe(0);
      expect(human.stdout).toMatch(/users\s+dual-write/);
    });

    it('`tandem status` against nothing exits 1 with a clear message', async () => {
      const result = await runCli(['status', '--url', `http://127.0.0.1:${await freePort()}`]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/cannot reach Tandem/);
    });

    it('SIGTERM stops it cleanly: exit 0 within a few seconds, and the log says so', async () => {
      child.process.kill('SIGTERM');
      const exit = await waitExit(child, 5_000);
      expect(exit, child.output()).toEqual({ code: 0, signal: null });
      expect(child.output()).toMatch(/tandem stopped/);
    });
  });

  describe('graceful drain on SIGTERM', () => {
    let child: TandemChild;

    beforeAll(async () => {
      child = await spawnTandem(['serve', '--demo'], demoEnv(tmp('drain')));
      children.push(child);
    });

    it('finishes the request in flight with a 2xx, then exits 0', async () => {
      const body = JSON.stringify({ values: { email: 'drain@example.com', full_name: 'In Flight' } });
      // Headers and half the body now; the request is inside Tandem when the signal lands.
      const req = httpRequest(`${child.url}/v1/tables/users/rows`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
        agent: false,
      });
      const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
        req.once('response', (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          res.once('error', reject);
        });
        req.once('error', reject);
      });
      req.write(body.slice(0, 10));
      await new Promise((resolve) => setTimeout(resolve, 300));

      child.process.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(alive(child), 'Tandem must wait for the request in flight').toBe(true);

      // A new request during the drain is not served.
      const late = await fetch(`${child.url}/healthz`, { signal: AbortSignal.timeout(2_000) }).then(
        (r) => r.status,
        () => 'refused',
      );
      expect(late === 'refused' || late === 503, `late request answered ${String(late)}`).toBe(true);

      req.end(body.slice(10));
      const answer = await response;
      expect(answer.status, answer.body).toBe(201);
      expect(JSON.parse(answer.body)).toMatchObject({ row: { email: 'drain@example.com', full_name: 'In Flight' } });

      const exit = await waitExit(child, 5_000);
      expect(exit, child.output()).toEqual({ code: 0, signal: null });
      expect(child.output()).toMatch(/tandem stopped/);
    });
  });
});
