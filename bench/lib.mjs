/* global fetch, AbortSignal, setTimeout, clearTimeout -- Node globals (eslint's browser-free default config does not know them) */
/**
 * Shared helpers of the benchmark (plain ESM JavaScript: Node 20 runs it without a build).
 * Nothing here imports Tandem's sources; the benchmark treats Tandem as a black box that it
 * starts from `dist/` like an operator would.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { URL } from 'node:url';
import process from 'node:process';
import knexFactory from 'knex';

/** @typedef {import('knex').Knex} Knex */

export const sleep = (/** @type {number} */ ms) => delay(ms);

/** A port nobody listens on right now (127.0.0.1). */
export function freePort() {
  return /** @type {Promise<number>} */ (
    new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        const port = typeof address === 'object' && address ? address.port : 0;
        server.close(() => resolve(port));
      });
    })
  );
}

/** Resident set size of a process in bytes (VmRSS), or undefined when it is gone. */
export function rssBytes(/** @type {number} */ pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A process and its descendants (a Tandem cluster primary and its workers), from /proc. */
export function processTree(/** @type {number} */ pid) {
  /** @type {Map<number, number[]>} */
  const kids = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(kids.get(/** @type {number} */ (out[i])) ?? []));
  return out;
}

/** RSS summed over a process and its descendants, in bytes. */
export function treeRssBytes(/** @type {number} */ pid) {
  let total = 0;
  for (const p of processTree(pid)) total += rssBytes(p) ?? 0;
  return total || undefined;
}

/** CPU seconds summed over a process and its live descendants. */
export function treeCpuSeconds(/** @type {number} */ pid) {
  let total = 0;
  for (const p of processTree(pid)) total += cpuSeconds(p) ?? 0;
  return total || undefined;
}

/** User + system CPU time of a process, in seconds (from /proc/<pid>/stat), or undefined. */
export function cpuSeconds(/** @type {number} */ pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/**
 * @typedef {object} Child
 * @property {import('node:child_process').ChildProcess} process
 * @property {string} name
 * @property {() => string} output  last 64 kB of stdout+stderr
 * @property {Promise<{ code: number | null, signal: NodeJS.Signals | null }>} exited
 * @property {() => boolean} alive
 */

/** Every child started here, so cleanup can find it even after an error. */
export const children = new Set();

/**
 * Starts a Node script as a child process (its own process, never a shell).
 * @param {string} name
 * @param {string[]} args arguments after the node binary
 * @param {Record<string, string>} env
 * @param {{ cwd?: string, logFile?: string }} [options] logFile: also write all output there
 * @returns {Child}
 */
export function spawnNode(name, args, env, options = {}) {
  const child = spawn(process.execPath, args, {
    cwd: options.cwd,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const file = options.logFile ? createWriteStream(options.logFile) : undefined;
  if (file) child.once('exit', () => file.end());
  const keep = (/** @type {Buffer} */ d) => {
    file?.write(d);
    out += d.toString();
    // Keep the tail, cut at a line start so a log line is never kept half.
    if (out.length > 131_072) out = out.slice(out.indexOf('\n', out.length - 65_536) + 1);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  /** @type {Child} */
  const handle = {
    process: child,
    name,
    output: () => out,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    alive: () => child.exitCode === null && child.signalCode === null,
  };
  children.add(handle);
  void handle.exited.then(() => children.delete(handle));
  return handle;
}

/**
 * Waits until `url` answers 200, failing early when the child exits.
 * @param {Child} child
 * @param {string} url
 * @param {number} [timeoutMs]
 */
export async function waitReady(child, url, timeoutMs = 30_000) {
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
    await sleep(100);
  }
}

/**
 * SIGTERM, then SIGKILL after `graceMs`. Resolves when the process is gone.
 * @param {Child} child
 * @param {number} [graceMs]
 */
export async function stopChild(child, graceMs = 5_000) {
  if (!child.alive()) return child.exited;
  child.process.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.alive()) child.process.kill('SIGKILL');
  }, graceMs);
  const result = await child.exited;
  clearTimeout(timer);
  return result;
}

/**
 * Connection settings for mysql2 from a mysql:// URL.
 * @param {URL} url
 */
export function mysqlConnection(url) {
  return {
    host: url.hostname,
    port: Number(url.port || 3306),
    user: decodeURIComponent(url.username || 'root'),
    password: decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.replace(/^\//, '')) || undefined,
  };
}

/**
 * A knex handle on a PostgreSQL or MariaDB/MySQL URL.
 * @param {string} url
 * @param {number} [poolMax]
 * @returns {Knex}
 */
export function knexFor(url, poolMax = 2) {
  const parsed = new URL(url);
  if (/^postgres(ql)?:$/i.test(parsed.protocol)) {
    return knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: poolMax } });
  }
  if (/^(mysql|mariadb):$/i.test(parsed.protocol)) {
    return knexFactory({
      client: 'mysql2',
      connection: { ...mysqlConnection(parsed), timezone: 'Z', supportBigNumbers: true, bigNumberStrings: true },
      pool: { min: 0, max: poolMax },
    });
  }
  throw new Error(`unsupported database URL ${url}`);
}

/** The same server URL with another database name (path). */
export function withDatabase(/** @type {string} */ url, /** @type {string} */ name) {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** The same database URL reached through another host:port (a fault proxy). */
export function viaPort(/** @type {string} */ url, /** @type {number} */ port) {
  const parsed = new URL(url);
  parsed.hostname = '127.0.0.1';
  parsed.port = String(port);
  return parsed.toString();
}

/** A URL for printing: no password. */
export function redact(/** @type {string} */ url) {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, '//$1:***@');
}

/**
 * Percentile (0..100) of an ascending sorted array, nearest-rank.
 * @param {Float64Array | number[]} sorted
 * @param {number} p
 */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? NaN;
}

/** Median of numbers (NaN-free). */
export function median(/** @type {number[]} */ values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? /** @type {number} */ (v[mid]) : (/** @type {number} */ (v[mid - 1]) + /** @type {number} */ (v[mid])) / 2;
}

/**
 * CPU ticks of the whole machine and of every process, from /proc (Linux). Two snapshots
 * tell how much CPU went to processes other than the ones under test (a noisy neighbour).
 * @returns {{ at: number, busy: number, procs: Map<number, { comm: string, ticks: number }> } | undefined}
 */
export function cpuSnapshot() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    /** @type {Map<number, { comm: string, ticks: number }>} */
    const procs = new Map();
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        procs.set(Number(name), { comm, ticks: Number(fields[11]) + Number(fields[12]) });
      } catch {
        // gone meanwhile
      }
    }
    return { at: Date.now(), busy, procs };
  } catch {
    return undefined;
  }
}

/**
 * CPU (% of one core) used between two snapshots by everything except `ours` (pids) and the
 * database servers (postgres, mariadbd/mysqld). Processes that lived only between the two
 * snapshots are included in the machine's total, so they count as others.
 * @param {ReturnType<typeof cpuSnapshot>} a
 * @param {ReturnType<typeof cpuSnapshot>} b
 * @param {number[]} ours
 * @param {number} [alsoOursSeconds] CPU of ours that exited before `b` (self-reported)
 */
export function otherCpuPercent(a, b, ours, alsoOursSeconds = 0) {
  if (!a || !b || b.at <= a.at) return NaN;
  let accounted = 0;
  for (const [pid, p] of b.procs) {
    if (!(ours.includes(pid) || /^(postgres|mariadbd|mysqld)/.test(p.comm))) continue;
    const before = a.procs.get(pid);
    accounted += p.ticks - (before && before.comm === p.comm ? before.ticks : 0);
  }
  const seconds = (b.at - a.at) / 1000;
  // Clock-tick rounding can make an idle neighbour look slightly negative.
  return Math.max(0, (((b.busy - a.busy - accounted) / 100 - alsoOursSeconds) / seconds) * 100);
}
