import type { Knex } from 'knex';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import supertest from 'supertest';
import { TandemApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import { runningTandems } from './registry.js';

export interface Feature {
  name: string;
  enabled: boolean;
  strategies?: Array<{ name: string; parameters?: Record<string, string> }>;
}

export interface StartTandemOptions {
  source: string;
  target: string;
  policiesDir: string;
  /** Flags in the local flag file; default: dual-write on for people and kv. */
  flags?: Feature[];
  env?: Record<string, string>;
  overrides?: Record<string, unknown>;
  listen?: boolean;
  /** Collects Tandem's log lines (JSON, level info and up) here instead of discarding them. */
  logLines?: string[];
}

export interface TandemHarness {
  app: TandemApp;
  request: ReturnType<typeof supertest>;
  flagsFile: string;
  setFlags(features: Feature[]): void;
  stop(): Promise<void>;
}

export const DUAL_WRITE_ALL: Feature[] = [
  { name: 'tandem.people.dual-write', enabled: true, strategies: [{ name: 'default' }] },
  { name: 'tandem.kv.dual-write', enabled: true, strategies: [{ name: 'default' }] },
];

/** Fast timings so tests see breakers, retries and reloads within seconds. */
export const FAST_SETTINGS = {
  apply: { timeoutMs: 500, resetTimeoutMs: 500, volumeThreshold: 3, rollingWindowMs: 5000 },
  outbox: { pollIntervalMs: 50, backoffBaseMs: 50, backoffMaxMs: 1000, housekeepingIntervalMs: 200, inlineGraceMs: 500, leaseMs: 5000 },
  stages: { reconcileIntervalMs: 200 },
  flags: { refreshIntervalMs: 100 },
  db: { acquireTimeoutMs: 2000, connectTimeoutMs: 1000 },
  shutdown: { drainTimeoutMs: 2000 },
};

export function writeFlags(file: string, features: Feature[]): void {
  writeFileSync(file, JSON.stringify({ version: 2, features }, null, 2));
}

/** Builds Tandem in-process from real configuration and starts it (no port unless `listen`). */
export async function startTandem(options: StartTandemOptions): Promise<TandemHarness> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-flags-'));
  const flagsFile = path.join(dir, 'flags.json');
  writeFlags(flagsFile, options.flags ?? DUAL_WRITE_ALL);
  const config = loadConfig({
    configDir: path.join(dir, 'no-config'),
    env: {
      TANDEM_SOURCE_URL: options.source,
      TANDEM_TARGET_URL: options.target,
      TANDEM_POLICIES_DIR: options.policiesDir,
      TANDEM_FLAGS_FILE: flagsFile,
      TANDEM_PORT: '0',
      ...options.env,
    },
    overrides: deepMerge(FAST_SETTINGS, options.overrides ?? {}),
  });
  const level = process.env['TANDEM_TEST_LOG'] ?? 'silent';
  const lines = options.logLines;
  const logger = lines ? pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }) : pino({ level });
  const app = new TandemApp(config, { logger });
  await app.start({ listen: options.listen ?? false });
  const held = { describe: () => `Tandem over ${options.source}`, release: () => harness.stop() };
  const harness: TandemHarness = {
    app,
    request: supertest(options.listen ? `http://127.0.0.1:${app.address().port}` : app.http),
    flagsFile,
    setFlags: (features) => writeFlags(flagsFile, features),
    stop: async () => {
      await app.stop();
      runningTandems.delete(held);
    },
  };
  runningTandems.add(held);
  return harness;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && prev && typeof prev === 'object'
        ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** Polls until `check` returns a truthy value (returned) or the time runs out (throws with the last error). */
export async function waitFor<T>(check: () => Promise<T> | T, options: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${options.what ?? 'condition'}${last ? `: ${(last as Error).message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 50));
  }
}

/** Counts outbox rows by status in a store. */
export async function outboxCounts(db: Knex): Promise<{ pending: number; dead: number; done: number }> {
  const rows = (await db('tandem_outbox').select('status').count({ n: '*' }).groupBy('status')) as Array<{ status: string; n: number | string }>;
  const out = { pending: 0, dead: 0, done: 0 };
  for (const r of rows) out[r.status as keyof typeof out] = Number(r.n);
  return out;
}
