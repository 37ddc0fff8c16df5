import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeTestPolicies } from './schema.js';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface TandemChild {
  process: ChildProcess;
  port: number;
  url: string;
  output(): string;
  /** Resolves with the exit code (or signal) when the process ends. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs the built CLI (`dist/`) as a child process and waits until /readyz answers 200. */
export async function spawnTandem(args: string[], env: Record<string, string>, options: { waitReady?: boolean } = {}): Promise<TandemChild> {
  const port = Number(env['TANDEM_PORT'] ?? (await freePort()));
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', TANDEM_CONFIG_DIR: path.join(ROOT, 'test', 'no-config'), TANDEM_LOG_LEVEL: 'warn', ...env, TANDEM_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = `http://127.0.0.1:${port}`;
  if (options.waitReady !== false) {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`tandem exited with ${child.exitCode}:\n${out}`);
      try {
        const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`tandem did not become ready:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { process: child, port, url, output: () => out, exited };
}

/**
 * The environment of a `tandem serve` child against two test databases, with the test
 * policies and a fresh config directory (prefix `prefix`) holding the flag file (`flags`,
 * written as JSON to `flagsName`) and `default.yaml` (`config`: production settings but
 * these). `flagsFile` is returned for tests that flip flags while the child runs.
 */
export function childTandemEnv(options: {
  prefix: string;
  source: { url: string };
  target: { url: string };
  flags: unknown;
  config: string;
  /** The flag file's name: its extension decides how `tandem cutover` rewrites it (default flags.json). */
  flagsName?: string;
}): { env: Record<string, string>; dir: string; flagsFile: string } {
  const dir = mkdtempSync(path.join(tmpdir(), options.prefix));
  const flagsFile = path.join(dir, options.flagsName ?? 'flags.json');
  writeFileSync(flagsFile, JSON.stringify(options.flags));
  writeFileSync(path.join(dir, 'default.yaml'), options.config);
  const env = {
    TANDEM_SOURCE_URL: options.source.url,
    TANDEM_TARGET_URL: options.target.url,
    TANDEM_POLICIES_DIR: writeTestPolicies(),
    TANDEM_FLAGS_FILE: flagsFile,
    TANDEM_CONFIG_DIR: dir,
  };
  return { env, dir, flagsFile };
}

/** A Node process started by `spawnNode` (the benchmark's servers, tools and load generator). */
export interface NodeChild {
  process: ChildProcess;
  name: string;
  /** stdout and stderr interleaved (the tail only, when `maxOutput` was given). */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
}

/** Every child `spawnNode` started and that has not exited, so a clean-up can find it after an error. */
export const liveChildren = new Set<NodeChild>();

/**
 * Starts a Node script as a child process (its own process, never a shell) with exactly `env`.
 * `logFile` also receives all output; `maxOutput` keeps only about that many characters of
 * the tail in memory, cut at a line start so a log line is never kept half.
 */
export function spawnNode(
  name: string,
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string; logFile?: string; maxOutput?: number } = {},
): NodeChild {
  const child = spawn(process.execPath, args, { cwd: options.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const file = options.logFile ? createWriteStream(options.logFile) : undefined;
  if (file) child.once('exit', () => file.end());
  const max = options.maxOutput ?? Infinity;
  const keep = (d: Buffer) => {
    file?.write(d);
    out += d.toString();
    if (out.length > max * 2) out = out.slice(out.indexOf('\n', out.length - max) + 1);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const handle: NodeChild = {
    process: child,
    name,
    output: () => out,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    alive: () => child.exitCode === null && child.signalCode === null,
  };
  liveChildren.add(handle);
  void handle.exited.then(() => liveChildren.delete(handle));
  return handle;
}

/** Waits until `url` answers 200, failing early (with its output) when the child exits. */
export async function waitReady(child: NodeChild, url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!child.alive()) throw new Error(`${child.name} exited before it was ready:\n${child.output()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${child.name} did not become ready at ${url} within ${timeoutMs} ms:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopChild(child: NodeChild, graceMs = 5_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (!child.alive()) return child.exited;
  child.process.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.alive()) child.process.kill('SIGKILL');
  }, graceMs);
  const result = await child.exited;
  clearTimeout(timer);
  return result;
}
