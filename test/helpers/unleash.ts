import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from './databases.js';
import { ROOT, freePort } from './child.js';

const REQUIRED = new Set((process.env['TANDEM_TEST_REQUIRE'] ?? '').split(',').map((s) => s.trim()));

/** Where `unleash-server` is installed (outside the runtime dependencies; .ci/run installs it). */
export function unleashServerEntry(): string | undefined {
  const dir = process.env['TANDEM_TEST_UNLEASH_DIR'] ?? path.join(ROOT, '.unleash');
  const entry = path.join(dir, 'node_modules', 'unleash-server', 'dist', 'server.js');
  if (existsSync(entry) && process.env['TANDEM_TEST_PG_URL']) return entry;
  if (REQUIRED.has('unleash')) {
    throw new Error(`unleash-server is not installed at ${dir} (or TANDEM_TEST_PG_URL is unset) but TANDEM_TEST_REQUIRE names unleash`);
  }
  console.warn('[tandem tests] SKIPPING Unleash suites: install unleash-server@7.5.1 into .unleash/ (see .ci/run) and set TANDEM_TEST_PG_URL');
  return undefined;
}

export interface UnleashServer {
  /** Client API URL for TANDEM_UNLEASH_URL. */
  apiUrl: string;
  clientToken: string;
  createFlag(name: string): Promise<void>;
  /** Replaces the flag's strategies by one flexibleRollout at `percent` (stickiness default). */
  setRollout(name: string, percent: number): Promise<void>;
  enable(name: string): Promise<void>;
  disable(name: string): Promise<void>;
  stop(): Promise<void>;
  /** Kills the server process (the database stays) to test an unreachable Unleash. */
  kill(): Promise<void>;
  /** Starts it again on the same port and database. */
  restart(): Promise<void>;
}

/** A real Unleash server on its own PostgreSQL database. */
export async function startUnleashServer(entry: string): Promise<UnleashServer> {
  const db: TestDatabase = await createTestDatabase('pg', 'unleash');
  const port = await freePort();
  const admin = `*:*.${randomBytes(12).toString('hex')}`;
  const clientToken = `default:development.${randomBytes(12).toString('hex')}`;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = '';
  const base = `http://127.0.0.1:${port}`;
  const launch = async () => {
    const proc = spawn(process.execPath, [entry], {
      env: {
        PATH: process.env['PATH'] ?? '',
        DATABASE_URL: db.url,
        DATABASE_SSL: 'false',
        INIT_ADMIN_API_TOKENS: admin,
        INIT_BACKEND_API_TOKENS: clientToken,
        PORT: String(port),
        TZ: 'UTC',
        LOG_LEVEL: 'error',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`unleash-server exited:\n${output}`);
      try {
        const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } catch {
        // starting
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`unleash-server did not start:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  await launch();
  const call = async (method: string, url: string, body?: unknown) => {
    const res = await fetch(`${base}/api/admin/projects/default${url}`, {
      method,
      headers: { authorization: admin, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!res.ok) throw new Error(`Unleash ${method} ${url}: ${res.status} ${await res.text()}`);
    const text = await res.text();
    return text ? (JSON.parse(text) as Record<string, unknown>) : {};
  };
  const strategies = `/environments/development/strategies`;
  let stopped = false;
  return {
    apiUrl: `${base}/api`,
    clientToken,
    createFlag: async (name) => {
      await call('POST', '/features', { name, type: 'release' });
    },
    setRollout: async (name, percent) => {
      // Update the strategy in place: deleting the last one would switch the flag off.
      const existing = (await call('GET', `/features/${name}`)) as { environments?: Array<{ name: string; strategies: Array<{ id: string }> }> };
      const env = existing.environments?.find((e) => e.name === 'development');
      const body = { name: 'flexibleRollout', parameters: { rollout: String(percent), stickiness: 'default', groupId: name } };
      const [first, ...rest] = env?.strategies ?? [];
      if (first) await call('PUT', `/features/${name}${strategies}/${first.id}`, body);
      else await call('POST', `/features/${name}${strategies}`, body);
      for (const s of rest) await call('DELETE', `/features/${name}${strategies}/${s.id}`);
    },
    enable: async (name) => {
      await call('POST', `/features/${name}/environments/development/on`);
    },
    disable: async (name) => {
      await call('POST', `/features/${name}/environments/development/off`);
    },
    kill: async () => {
      child?.kill('SIGKILL');
      await exited;
    },
    restart: launch,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (child && child.exitCode === null) child.kill('SIGKILL');
      await exited;
      await db.drop();
    },
  };
}
