/**
 * Tandem's benchmark with its baselines in the same run (DESIGN §12), over every table shape.
 *
 *   npm run bench             full run (10 s per scenario, fixed-rate phase, 20,000-row drain)
 *   npm run bench:smoke       CI smoke run (1 s per scenario, 300-row drain, 2,000-row tools, no fixed-rate phase)
 *   npm run bench -- --help   this text
 *
 * For each table shape (bench/shapes.ts: an integer key; a text key with a renamed target
 * table and column and a defaulted timestamp; a composite key; a 20-column row; MariaDB as
 * the source and PostgreSQL as the target) one command creates scratch databases on the
 * local PostgreSQL and MariaDB (the test helpers' scratch databases), starts each server as a
 * child process in turn — the `direct` and `naive dual` baselines (bench/baseline.ts), Tandem
 * `source-only` and Tandem `dual-write` — drives the same write load at each from a separate
 * load-generator process (bench/load.ts), measures the p99 Tandem adds at a fixed moderate
 * rate, the outbox drain rate after a target outage (the test helpers' TCP fault proxy) and
 * `tandem backfill` / `tandem verify` on a seeded table, judges every line of the budget
 * (bench/budget.ts) per shape, prints one markdown report (also written to bench/last-run.md)
 * and cleans everything up, on error and Ctrl-C too.
 *
 * Options:
 *   --smoke               CI mode (above); exits 0 whatever the budget says
 *   --shapes a,b          table shapes to run: int,text,composite,wide,mariadb-source (all)
 *   --duration S          measured seconds per throughput scenario (10; smoke 1)
 *   --warmup S            warm-up seconds before each measurement (3; smoke 0.5)
 *   --connections N       keep-alive connections of the load generator (32)
 *   --rounds N            repeat the throughput scenarios and the fixed-rate pairs N times
 *                         (even rounds in reverse order) and report medians (1)
 *   --rate R              open-loop rate of the fixed-rate phase (200 req/s)
 *   --fixed-duration S    seconds of the fixed-rate phase (20: 4,000 requests, so p99 is not one outlier)
 *   --drain-rows N        rows written during the target outage (20,000; smoke 300)
 *   --tool-rows N         rows seeded for backfill and verify (200,000; smoke 2,000)
 *   --phases a,b          subset of throughput,fixed,drain,tools,wire (all; wire: pgbench through the SQL front, bench/wire.ts)
 *   --only a,b            throughput scenarios: direct,naive,tandem-source-only,tandem-dual-write
 *   --no-fixed, --no-drain
 *   --wait-quiet S        shared machines: before each measured phase wait up to S seconds
 *                         for an idle machine, and measure a phase again (up to --attempts,
 *                         3) when other processes used over 25 % of a core during it,
 *                         keeping the attempt they disturbed least
 *   --keep-logs           keep every server's full output in a temp folder
 *   --cpu-prof            servers run with node --cpu-prof; profiles land beside the logs
 *                         (summarise one with `node --import tsx bench/profile-summary.ts FILE`)
 *   --strict              exit 1 when a budget line is a MISS
 *   --out FILE            report file (bench/last-run.md)
 * Environment: TANDEM_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres),
 * TANDEM_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/mysql), TANDEM_BENCH_CLI
 * (default: a snapshot of dist/ taken at start; `npm run build` runs first when dist/ is
 * missing), TANDEM_BENCH_LOG_LEVEL (Tandem's log level, warn), TANDEM_BENCH_WORKERS (Tandem's
 * TANDEM_WORKERS, unset = 1; RSS and CPU then count the primary and its workers together).
 *
 * Exit code: 0 when every phase ran (whatever the budget says, unless --strict); 1 when a
 * server or the load generator crashed, a phase failed, or every request of a scenario failed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, liveChildren, spawnNode, stopChild, waitReady, type NodeChild } from '../test/helpers/child.js';
import { createTestDatabase, knexForUrl, viaProxy, type TestDatabase } from '../test/helpers/databases.js';
import { startFaultProxy, type FaultProxy } from '../test/helpers/fault-proxy.js';
import { BUDGET, judge, type Measured, type Verdict } from './budget.js';
import { cpuSnapshot, median, otherCpuPercent, processTree, redact, rssBytes, treeCpuSeconds, treeRssBytes, tsEntry } from './lib.js';
import type { LoadResult } from './load.js';
import { SHAPES, shapeNamed, type Shape } from './shapes.js';

const BENCH_DIR = import.meta.dirname;
const ROOT = path.resolve(BENCH_DIR, '..');
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const { values: args } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    shapes: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    rate: { type: 'string' },
    'fixed-duration': { type: 'string' },
    'drain-rows': { type: 'string' },
    rounds: { type: 'string' },
    only: { type: 'string' },
    phases: { type: 'string', default: 'throughput,fixed,drain,tools,wire' },
    'tool-rows': { type: 'string' },
    'keep-logs': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'wait-quiet': { type: 'string' },
    attempts: { type: 'string' },
    'no-fixed': { type: 'boolean', default: false },
    'no-drain': { type: 'boolean', default: false },
    strict: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});

if (args.help) {
  const source = readFileSync(path.join(BENCH_DIR, 'run.ts'), 'utf8');
  const start = source.indexOf('/**');
  const doc = source.slice(start + 3, source.indexOf('*/', start));
  process.stdout.write(`${doc.replace(/^ \* ?/gm, '').trim()}\n`);
  process.exit(0);
}

const smoke = args.smoke;
function num(v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`bad number: ${v}`);
  return n;
}
const settings = {
  durationS: num(args.duration, smoke ? 1 : 10),
  warmupS: num(args.warmup, smoke ? 0.5 : 3),
  connections: num(args.connections, 32),
  rate: num(args.rate, 200),
  fixedDurationS: num(args['fixed-duration'], 20),
  fixedWarmupS: smoke ? 0 : 2,
  drainRows: num(args['drain-rows'], smoke ? 300 : 20_000),
  rounds: Math.max(1, num(args.rounds, 1)),
  poolMax: 10,
  toolRows: num(args['tool-rows'], smoke ? 2_000 : 200_000),
  throughput: true,
  fixed: !smoke && !args['no-fixed'],
  drain: !args['no-drain'],
  tools: true,
  wire: true,
};
{
  const phases = new Set(args.phases.split(',').map((p) => p.trim()));
  for (const p of phases) if (!['throughput', 'fixed', 'drain', 'tools', 'wire'].includes(p)) throw new Error(`--phases: unknown phase ${p}`);
  settings.wire = phases.has('wire');
  settings.throughput = phases.has('throughput');
  settings.tools = phases.has('tools');
  settings.fixed &&= phases.has('fixed');
  settings.drain &&= phases.has('drain');
}
const shapes: readonly Shape[] = args.shapes ? args.shapes.split(',').map((s) => shapeNamed(s.trim())) : SHAPES;
const LOG_LEVEL = process.env['TANDEM_BENCH_LOG_LEVEL'] ?? 'warn';
const PG_ADMIN_URL = process.env['TANDEM_BENCH_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const MYSQL_ADMIN_URL = process.env['TANDEM_BENCH_MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/mysql';
const CLI_OVERRIDE = process.env['TANDEM_BENCH_CLI'];
/** The Tandem CLI the run starts: a snapshot of dist/ taken at start (see snapshotDist). */
let CLI = path.resolve(ROOT, CLI_OVERRIDE ?? 'dist/cli/main.js');
const OUT = path.resolve(args.out ?? path.join(BENCH_DIR, 'last-run.md'));

/** With --keep-logs (or --cpu-prof), every server's full output is kept in this folder. */
let logDir = '';
let logCount = 0;
/** Node flags for a server process (--cpu-prof). */
function nodeFlags(name: string): string[] {
  if (!args['cpu-prof']) return [];
  logDir ||= mkdtempSync(path.join(os.tmpdir(), 'tandem-bench-logs-'));
  return ['--cpu-prof', `--cpu-prof-dir=${path.join(logDir, 'profiles')}`, `--cpu-prof-name=${String(logCount + 1).padStart(2, '0')}-${name}.cpuprofile`];
}
function logFileFor(name: string): string | undefined {
  if (!args['keep-logs'] && !args['cpu-prof']) return undefined;
  logDir ||= mkdtempSync(path.join(os.tmpdir(), 'tandem-bench-logs-'));
  logCount += 1;
  return path.join(logDir, `${String(logCount).padStart(2, '0')}-${name}.log`);
}

type ScenarioKey = 'direct' | 'naive' | 'tandem-source-only' | 'tandem-dual-write';
const SCENARIOS: ReadonlyArray<{ key: ScenarioKey; label: string }> = [
  { key: 'direct', label: 'direct' },
  { key: 'naive', label: 'naive dual' },
  { key: 'tandem-source-only', label: 'tandem source-only' },
  { key: 'tandem-dual-write', label: 'tandem dual-write' },
];
const only = args.only ? new Set(args.only.split(',').map((s) => s.trim())) : undefined;
if (only) for (const k of only) if (!SCENARIOS.some((s) => s.key === k)) throw new Error(`--only: unknown scenario ${k}`);

// ---------------------------------------------------------------------------------------
// Resources and cleanup

const runId = `${process.pid}_${Date.now().toString(36)}`;
const scratch = new Set<TestDatabase>();
const tempDirs: string[] = [];
const proxies = new Set<FaultProxy>();
const loadProcesses = new Set<ChildProcess>();
const problems: string[] = [];
let crashed = false;

const pgAdmin = knexForUrl(PG_ADMIN_URL, 1);
const mysqlAdmin = knexForUrl(MYSQL_ADMIN_URL, 1);

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const p of loadProcesses) p.kill('SIGKILL');
    await Promise.all([...liveChildren].map((c) => stopChild(c, 5_000).catch(() => undefined)));
    await Promise.all([...proxies].map((p) => p.close().catch(() => undefined)));
    for (const db of [...scratch]) {
      await db.drop().catch((e: unknown) => process.stderr.write(`cleanup: could not drop ${db.name}: ${String(e)}\n`));
      scratch.delete(db);
    }
    await Promise.all([pgAdmin.destroy(), mysqlAdmin.destroy()]).catch(() => undefined);
    for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  })();
  return cleaning;
}

let signalled = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (signalled) process.exit(130);
    signalled = true;
    process.stderr.write(`\n${signal}: stopping children and dropping scratch databases…\n`);
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });
}

// ---------------------------------------------------------------------------------------
// Scratch databases, policies and flags

interface ScratchPair {
  shape: Shape;
  source: TestDatabase;
  target: TestDatabase;
  drop(): Promise<void>;
}

let pairCount = 0;
/** A fresh source and target database with the shape's empty tables. */
async function scratchPair(shape: Shape, label: string): Promise<ScratchPair> {
  pairCount += 1;
  const servers = { pg: PG_ADMIN_URL, mysql: MYSQL_ADMIN_URL, prefix: 'tandem_bench' };
  const name = `${shape.name.replace(/[^a-z]/g, '').slice(0, 6)}${pairCount}${label}`;
  const source = await createTestDatabase(shape.source, `${name}s`, servers);
  scratch.add(source);
  const target = await createTestDatabase(shape.target, `${name}t`, servers);
  scratch.add(target);
  await shape.createSource(source.knex);
  await shape.createTarget(target.knex);
  return {
    shape,
    source,
    target,
    async drop() {
      for (const db of [source, target]) {
        await db.drop();
        scratch.delete(db);
      }
    },
  };
}

interface TandemFiles {
  policies: string;
  flags: string;
  config: string;
}
let lastTandemFiles: TandemFiles = { policies: '', flags: '', config: '' };

/** A folder with the shape's policy, `flags.json` (dual-write on or off) and an empty `config/`. */
function tandemFiles(shape: Shape, dualWrite: boolean): TandemFiles {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tandem-bench-'));
  tempDirs.push(dir);
  const policies = path.join(dir, 'policies');
  const config = path.join(dir, 'config');
  for (const d of [policies, config]) mkdirSync(d, { recursive: true });
  writeFileSync(path.join(policies, `${shape.table}.yaml`), shape.policy);
  const flags = path.join(dir, 'flags.json');
  writeFileSync(
    flags,
    JSON.stringify({ version: 2, features: [{ name: `tandem.${shape.table}.dual-write`, enabled: dualWrite, strategies: [{ name: 'default' }] }] }),
  );
  lastTandemFiles = { policies, flags, config };
  return lastTandemFiles;
}

/** The environment every child gets: only what it needs. */
function childEnv(env: Record<string, string>): Record<string, string> {
  return { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env };
}

// ---------------------------------------------------------------------------------------
// Servers

interface Server {
  child: NodeChild;
  url: string;
  stopped?: Promise<string>;
}

/** Starts one server under test on a free port and waits until it is ready. */
async function startServer(key: ScenarioKey, db: ScratchPair, options: { targetUrl?: string; allowStale?: boolean } = {}): Promise<Server> {
  const { shape } = db;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const targetUrl = options.targetUrl ?? db.target.url;
  if (key === 'direct' || key === 'naive') {
    const child = spawnNode(
      key,
      [...nodeFlags(key), ...tsEntry(path.join(BENCH_DIR, 'baseline.ts')), key],
      childEnv({
        BENCH_PORT: String(port),
        BENCH_SHAPE: shape.name,
        BENCH_SOURCE_URL: db.source.url,
        ...(key === 'naive' ? { BENCH_TARGET_URL: targetUrl } : {}),
        BENCH_POOL_MAX: String(settings.poolMax),
      }),
      { cwd: ROOT, logFile: logFileFor(`${shape.name}-${key}`), maxOutput: 65_536 },
    );
    await waitReady(child, `${url}/healthz`);
    return { child, url };
  }
  const dualWrite = key === 'tandem-dual-write';
  const files = tandemFiles(shape, dualWrite);
  const child = spawnNode(
    key,
    [...nodeFlags(key), CLI, 'serve'],
    childEnv({
      TANDEM_SOURCE_URL: db.source.url,
      TANDEM_TARGET_URL: targetUrl,
      TANDEM_POLICIES_DIR: files.policies,
      TANDEM_FLAGS_FILE: files.flags,
      TANDEM_CONFIG_DIR: files.config,
      TANDEM_PORT: String(port),
      TANDEM_HOST: '127.0.0.1',
      TANDEM_LOG_LEVEL: LOG_LEVEL,
      TANDEM_POOL_MAX: String(settings.poolMax),
      ...(process.env['TANDEM_BENCH_WORKERS'] ? { TANDEM_WORKERS: process.env['TANDEM_BENCH_WORKERS'] } : {}),
    }),
    { cwd: ROOT, logFile: logFileFor(`${shape.name}-${options.targetUrl ? `${key}-outage` : key}`), maxOutput: 65_536 },
  );
  await waitReady(child, `${url}/readyz`);
  const table = tableStatus(await adminStatus(url), shape);
  const want = dualWrite ? 'dual-write' : 'source-only';
  if (!table || table.stage !== want) throw new Error(`${key}: /admin/status shows stage ${table?.stage} for ${shape.table}, expected ${want}`);
  if (table.stale && !options.allowStale) throw new Error(`${key}: ${shape.table} is marked stale (${table.staleReason}) on empty tables`);
  return { child, url };
}

interface TableStatus {
  table: string;
  stage: string;
  stale: boolean;
  staleReason?: string;
  outbox: { pending: number };
}
interface AdminStatus {
  tables: TableStatus[];
  stores?: { target?: { breaker?: string } };
}

/** GET /admin/status as JSON (admin API is open: no tokens, loopback). */
async function adminStatus(url: string): Promise<AdminStatus> {
  const res = await fetch(`${url}/admin/status`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`/admin/status answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as AdminStatus;
}
const tableStatus = (status: AdminStatus, shape: Shape) => status.tables.find((t) => t.table === shape.table);

/**
 * Stops a server; records a problem when it had died or does not exit cleanly on SIGTERM.
 * Returns what it logged (level warn and above), counted per message. `expectLogs`: the
 * outage phase logs warnings by design.
 */
function stopServer(label: string, server: Server, options: { expectLogs?: boolean } = {}): Promise<string> {
  server.stopped ??= stopServerOnce(label, server, options);
  return server.stopped;
}

async function stopServerOnce(label: string, server: Server, options: { expectLogs?: boolean }): Promise<string> {
  if (!server.child.alive()) {
    const { code, signal } = await server.child.exited;
    crashed = true;
    problems.push(`${label}: the server had already exited (code ${code}, signal ${signal}) before it was stopped. Output:\n${tail(server.child.output())}`);
    return logSummary(server.child.output());
  }
  const started = Date.now();
  const { code, signal } = await stopChild(server.child, 10_000);
  if (code !== 0) problems.push(`${label}: exit on SIGTERM was code ${code}, signal ${signal} after ${Date.now() - started} ms`);
  const output = server.child.output().trim();
  const summary = logSummary(output);
  if (output && !options.expectLogs) problems.push(`${label}: the server logged at warn level or above: ${summary}\n${tail(output, 5)}`);
  return summary;
}

/** pino lines counted by level and message; other text counted as such. */
function logSummary(output: string): string {
  const counts = new Map<string, number>();
  for (const line of output.split('\n')) {
    if (!line.trim()) continue;
    let key = `non-JSON output: ${line.trim().slice(0, 200)}`;
    try {
      const entry = JSON.parse(line) as { level: number; msg: string };
      key = `${entry.level >= 50 ? 'error' : entry.level >= 40 ? 'warn' : `level ${entry.level}`}: ${entry.msg}`;
    } catch {
      // not a pino line
    }
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts.size === 0 ? 'nothing' : [...counts].map(([k, n]) => `${n} × "${k}"`).join(', ');
}

function tail(text: string, lines = 15): string {
  const all = text.trim().split('\n');
  const kept = all.slice(-lines).map((l) => (l.length > 400 ? `${l.slice(0, 400)}…` : l));
  return `${all.length > lines ? `    … (${all.length - lines} earlier lines)\n` : ''}${kept.map((l) => `    ${l}`).join('\n')}`;
}

// ---------------------------------------------------------------------------------------
// Load

interface LoadRun {
  load: LoadResult;
  maxRssBytes: number;
  cpuPercent: number;
  wallS: number;
  otherCpu: number;
}

/** Runs bench/load.ts against a server while sampling the server's RSS and CPU. */
async function runLoad(server: Server, shape: Shape, loadArgs: string[], label: string): Promise<LoadRun> {
  const pid = server.child.process.pid as number;
  // The server and its descendants: with TANDEM_BENCH_WORKERS, a cluster primary and its workers.
  const cpu0 = treeCpuSeconds(pid) ?? 0;
  const t0 = Date.now();
  let maxRss = treeRssBytes(pid) ?? 0;
  const sampler = setInterval(() => {
    const rss = treeRssBytes(pid);
    if (rss !== undefined && rss > maxRss) maxRss = rss;
  }, 200);
  try {
    const child = spawn(process.execPath, [...tsEntry(path.join(BENCH_DIR, 'load.ts')), '--url', server.url, '--shape', shape.name, '--label', label, ...loadArgs], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    loadProcesses.add(child);
    child.once('exit', () => loadProcesses.delete(child));
    const before = cpuSnapshot();
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | string | null>((resolve) => child.once('exit', (c, s) => resolve(c ?? s)));
    const after = cpuSnapshot();
    if (code !== 0) {
      crashed = true;
      throw new Error(`load generator (${label}) exited with ${code}:\n${err}`);
    }
    const load = JSON.parse(out.trim().split('\n').pop() ?? '{}') as LoadResult;
    // The load generator has exited by now: its CPU comes from its own report.
    const otherCpu = otherCpuPercent(before, after, [...processTree(pid), process.pid], load.cpuSeconds);
    const wallS = (Date.now() - t0) / 1000;
    const cpu1 = treeCpuSeconds(pid) ?? cpu0;
    if (!server.child.alive()) {
      crashed = true;
      problems.push(`${label}: the server died during the load. Output:\n${tail(server.child.output())}`);
    }
    return { load, maxRssBytes: maxRss, cpuPercent: ((cpu1 - cpu0) / wallS) * 100, wallS, otherCpu };
  } finally {
    clearInterval(sampler);
  }
}

const countRows = async (db: TestDatabase, table: string) => Number(((await db.knex(table).count({ n: '*' })) as Array<{ n: unknown }>)[0]?.n ?? 0);

// ---------------------------------------------------------------------------------------
// Phases

interface ScenarioRun extends LoadRun {
  /** Source (PostgreSQL) counters per inserted row; empty on a MariaDB source. */
  perInsert: Record<string, number>;
  attempts?: number;
  rows: { source: number; target: number | null; converged: boolean | null; convergeMs: number | null };
}

/** PostgreSQL's per-database counters of a scratch source (immune to other databases' load). */
async function pgCounters(name: string): Promise<Record<string, number>> {
  const result = (await pgAdmin.raw(
    'SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_returned, tup_fetched FROM pg_stat_database WHERE datname = ?',
    [name],
  )) as { rows: Array<Record<string, unknown>> };
  return Object.fromEntries(Object.entries(result.rows[0] ?? {}).map(([k, v]) => [k, Number(v)]));
}

/** Closed-loop throughput of one scenario on fresh databases. */
async function throughputScenario(shape: Shape, key: ScenarioKey, round: number): Promise<ScenarioRun> {
  const db = await scratchPair(shape, `${key.replace('tandem-', 't').replace(/[^a-z]/g, '').slice(0, 6)}${round}`);
  const label = `${shape.name} ${key}`;
  const server = await startServer(key, db);
  try {
    const counters = (): Promise<Record<string, number>> => (shape.source === 'pg' ? pgCounters(db.source.name) : Promise.resolve({}));
    const before = await counters();
    const run = await runLoad(
      server,
      shape,
      ['--connections', String(settings.connections), '--warmup', String(settings.warmupS), '--duration', String(settings.durationS), '--count-header', 'tandem-write'],
      label,
    );
    // Did every acknowledged row reach where it should? (Outbox rows may still be draining.)
    const source = await countRows(db.source, shape.table);
    let target: number | null = null;
    let converged: boolean | null = null;
    let convergeMs: number | null = null;
    if (key === 'naive' || key === 'tandem-dual-write') {
      const started = Date.now();
      for (;;) {
        target = await countRows(db.target, shape.targetTable);
        if (target === source || Date.now() - started > 30_000 || key === 'naive') break;
        await sleep(200);
      }
      converged = target === source;
      convergeMs = Date.now() - started;
    }
    // Backends flush their statistics when they exit: read the counters after the server stopped.
    await stopServer(label, server);
    await sleep(300);
    const after = await counters();
    const perInsert: Record<string, number> = {};
    for (const [k, v] of Object.entries(after)) perInsert[k] = source > 0 ? (v - (before[k] ?? 0)) / source : NaN;
    return { ...run, perInsert, rows: { source, target, converged, convergeMs } };
  } finally {
    await stopServer(label, server);
    await db.drop();
  }
}

/** Open-loop fixed-rate latency of one scenario on fresh databases. */
async function fixedRateScenario(shape: Shape, key: ScenarioKey): Promise<LoadRun> {
  const db = await scratchPair(shape, `${key.replace('tandem-', 't').replace(/[^a-z]/g, '').slice(0, 6)}fx`);
  const label = `${shape.name} ${key} @ ${settings.rate}/s`;
  const server = await startServer(key, db);
  try {
    return await runLoad(
      server,
      shape,
      [
        '--rate', String(settings.rate),
        '--connections', String(settings.connections),
        '--warmup', String(settings.fixedWarmupS),
        '--duration', String(settings.fixedDurationS),
        '--count-header', 'tandem-write',
      ],
      label,
    );
  } finally {
    await stopServer(label, server);
    await db.drop();
  }
}

interface DrainRun {
  n: number;
  writes: LoadResult;
  maxRssBytes: number;
  pendingBefore: number;
  recoveryS: number | null;
  sqlZeroS: number | null;
  statusZeroS: number | null;
  steadyRate: number | null;
  sourceRows: number;
  targetRows: number;
  dead: number;
  breaker: string | undefined;
  otherCpu: number;
  trace: Array<{ t: number; pending: number }>;
  logs: string;
}

/**
 * Outbox drain after a target outage: Tandem dual-write reaches the target through the test
 * helpers' TCP fault proxy; the proxy refuses, N rows are written (queued), the proxy passes
 * again, and the time until the outbox is empty is measured two ways: by polling the source's
 * `tandem_outbox` directly (50 ms) and by polling `GET /admin/status` (its figures are
 * refreshed by the housekeeper every `outbox.housekeepingIntervalMs`, 1 s by default).
 */
async function drainScenario(shape: Shape): Promise<DrainRun> {
  const db = await scratchPair(shape, 'drain');
  const proxy = await startFaultProxy({ targetHost: db.target.host, targetPort: db.target.port });
  proxies.add(proxy);
  const server = await startServer('tandem-dual-write', db, { targetUrl: viaProxy(db.target, proxy.port) });
  const n = settings.drainRows;
  const outboxCount = async (status: string) =>
    Number(((await db.source.knex('tandem_outbox').where({ tbl: shape.table, status }).count({ n: '*' })) as Array<{ n: unknown }>)[0]?.n ?? 0);
  let logs = '';
  try {
    await proxy.set('refuse');
    const { load: writes, maxRssBytes } = await runLoad(
      server,
      shape,
      ['--requests', String(n), '--connections', String(settings.connections), '--count-header', 'tandem-write'],
      `${shape.name} drain: writes during outage`,
    );
    const pendingBefore = await outboxCount('pending');
    const cpuBefore = cpuSnapshot();
    const restoredAt = Date.now();
    await proxy.set('pass');
    let firstProgressAt: number | null = null;
    let pendingAtFirstProgress: number | null = null;
    let sqlZeroAt: number | null = null;
    let statusZeroAt: number | null = null;
    let lastStatusPoll = 0;
    const timeoutMs = smoke ? 60_000 : 180_000;
    const trace: Array<{ t: number; pending: number }> = [];
    while (Date.now() - restoredAt < timeoutMs && (sqlZeroAt === null || statusZeroAt === null)) {
      if (!server.child.alive()) throw new Error(`tandem died during the drain:\n${server.child.output()}`);
      if (sqlZeroAt === null) {
        const pending = await outboxCount('pending');
        const now = Date.now();
        trace.push({ t: now - restoredAt, pending });
        if (firstProgressAt === null && pending < pendingBefore) {
          firstProgressAt = now;
          pendingAtFirstProgress = pending;
        }
        if (pending === 0) sqlZeroAt = now;
      }
      if (statusZeroAt === null && Date.now() - lastStatusPoll >= 100) {
        lastStatusPoll = Date.now();
        const table = tableStatus(await adminStatus(server.url), shape);
        if (table && table.outbox.pending === 0 && sqlZeroAt !== null) statusZeroAt = Date.now();
      }
      await sleep(50);
    }
    const otherCpu = otherCpuPercent(cpuBefore, cpuSnapshot(), [server.child.process.pid as number, process.pid]);
    const [sourceRows, targetRows, dead] = await Promise.all([countRows(db.source, shape.table), countRows(db.target, shape.targetTable), outboxCount('dead')]);
    const status = await adminStatus(server.url);
    logs = await stopServer(`${shape.name} drain`, server, { expectLogs: true });
    return {
      n,
      writes,
      maxRssBytes,
      pendingBefore,
      recoveryS: firstProgressAt === null ? null : (firstProgressAt - restoredAt) / 1000,
      sqlZeroS: sqlZeroAt === null ? null : (sqlZeroAt - restoredAt) / 1000,
      statusZeroS: statusZeroAt === null ? null : (statusZeroAt - restoredAt) / 1000,
      steadyRate:
        firstProgressAt !== null && sqlZeroAt !== null && pendingAtFirstProgress !== null && sqlZeroAt > firstProgressAt
          ? pendingAtFirstProgress / ((sqlZeroAt - firstProgressAt) / 1000)
          : null,
      sourceRows,
      targetRows,
      dead,
      breaker: status.stores?.target?.breaker,
      otherCpu,
      trace,
      logs,
    };
  } finally {
    await stopServer(`${shape.name} drain`, server, { expectLogs: true });
    await proxy.close();
    proxies.delete(proxy);
    await db.drop();
  }
}

/**
 * Copies dist/ (with package.json and a node_modules link) to a scratch folder, so every
 * scenario runs the same build even when someone rebuilds dist/ during the run.
 * Waits for dist/ to be still for 3 s first (a build in progress).
 */
async function snapshotDist(): Promise<{ cli: string; builtAt: string }> {
  const dist = path.join(ROOT, 'dist');
  for (let waited = 0; Date.now() - newest(dist) < 3_000 && waited < 60_000; waited += 500) await sleep(500);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tandem-bench-dist-'));
  tempDirs.push(dir);
  cpSync(dist, path.join(dir, 'dist'), { recursive: true });
  copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const cli = path.join(dir, 'dist', 'cli', 'main.js');
  const check = spawnSync(process.execPath, [cli, '--version'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`the dist/ snapshot does not start: ${check.stderr}`);
  return { cli, builtAt: new Date(newest(dist)).toISOString() };
}

interface ToolReport {
  durationMs: number;
  rowsPerSecond: number;
  copied?: number;
  skipped?: number;
  clean?: boolean;
  matching?: number;
  mismatched?: number;
  missingInTarget?: number;
  extraInTarget?: number;
  chunks?: number;
  samples?: { mismatched?: unknown[] };
}
interface ToolRun {
  code: number | null;
  report: ToolReport;
  wallMs: number;
  peakRss: number;
}

/** Runs a Tandem CLI command (not the server) against a scratch pair; returns its JSON report. */
async function runTool(cliArgs: string[], db: ScratchPair, files: TandemFiles): Promise<ToolRun> {
  const started = Date.now();
  const child = spawnNode(
    `tandem ${cliArgs[0]}`,
    [...nodeFlags(`tool-${cliArgs[0]}`), CLI, ...cliArgs],
    childEnv({
      TANDEM_SOURCE_URL: db.source.url,
      TANDEM_TARGET_URL: db.target.url,
      TANDEM_POLICIES_DIR: files.policies,
      TANDEM_FLAGS_FILE: files.flags,
      TANDEM_CONFIG_DIR: files.config,
      TANDEM_LOG_LEVEL: LOG_LEVEL,
      TANDEM_POOL_MAX: String(settings.poolMax),
    }),
    { cwd: ROOT, maxOutput: 65_536 },
  );
  let peakRss = 0;
  const pid = child.process.pid as number;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(pid) ?? 0)), 200);
  const { code } = await child.exited;
  clearInterval(sampler);
  const wallMs = Date.now() - started;
  const out = child.output();
  const json = out.slice(out.indexOf('{'), out.lastIndexOf('}') + 1);
  let report: ToolReport;
  try {
    report = JSON.parse(json) as ToolReport;
  } catch {
    throw new Error(`tandem ${cliArgs.join(' ')} exited with ${code} and no JSON report:\n${tail(out)}`);
  }
  return { code, report, wallMs, peakRss };
}

interface ToolsRun {
  m: number;
  backfill: ToolRun;
  verify: ToolRun;
  targetRows: number;
}

/**
 * Backfill then verify of a table that already holds rows (DESIGN §12: verify ≥ 100,000
 * rows/s, backfill ≥ 20,000 rows/s). The source is seeded in one SQL statement; a Tandem
 * server is started once so the table's state row records dual-write (backfill requires it),
 * then stopped; `tandem backfill <table> --json` and `tandem verify <table> --json` run as the
 * operator would run them.
 */
async function toolsScenario(shape: Shape): Promise<ToolsRun> {
  const db = await scratchPair(shape, 'tools');
  const m = settings.toolRows;
  try {
    await shape.seed(db.source.knex, m);
    const server = await startServer('tandem-dual-write', db, { allowStale: true });
    await stopServer(`${shape.name} tools`, server);
    const files = lastTandemFiles;
    const backfill = await runTool(['backfill', shape.table, '--json'], db, files);
    const verify = await runTool(['verify', shape.table, '--json'], db, files);
    const targetRows = await countRows(db.target, shape.targetTable);
    return { m, backfill, verify, targetRows };
  } finally {
    await db.drop();
  }
}

// ---------------------------------------------------------------------------------------
// Machine, quiet periods

function fmt(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return 'n/a';
  const text = x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return /^-0(\.0*)?$/.test(text) ? text.slice(1) : text;
}
const mb = (bytes: number) => bytes / 1024 / 1024;

function machineInfo() {
  const cpus = os.cpus();
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout?.trim() || 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', 'src'], { cwd: ROOT, encoding: 'utf8' }).stdout?.trimEnd();
  return {
    date: new Date().toISOString(),
    cpus: `${cpus.length} × ${cpus[0]?.model?.trim() ?? 'unknown'}`,
    memory: `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB total, ${(os.freemem() / 1024 ** 3).toFixed(1)} GiB free`,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    load: os.loadavg().map((l) => l.toFixed(2)).join(' / '),
    git,
    dirtySrc: (dirty ?? '').split('\n').filter(Boolean).map((l) => l.slice(3)),
  };
}

/** Newest mtime under a folder (for the "dist older than src" warning). */
function newest(dir: string): number {
  let best = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    best = Math.max(best, entry.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return best;
}

/**
 * Waits (up to `maxS` seconds) until the machine has been nearly idle — under 15 % of its
 * CPU busy — for three 1-second windows in a row, so a measurement does not start beside a
 * test suite. With --wait-quiet S this runs before every measured phase.
 */
async function waitQuiet(maxS: number): Promise<void> {
  const started = Date.now();
  let quiet = 0;
  while (quiet < 3 && Date.now() - started < maxS * 1000) {
    const a = cpuSnapshot();
    await sleep(1_000);
    const b = cpuSnapshot();
    const busyShare = a && b ? (b.busy - a.busy) / 100 / ((b.at - a.at) / 1000) / os.cpus().length : 0;
    quiet = busyShare < 0.15 ? quiet + 1 : 0;
    if (quiet === 0) process.stderr.write(`[bench] waiting for a quiet machine (${(busyShare * 100).toFixed(0)} % busy)\n`);
  }
  if (quiet < 3) problems.push(`the machine did not become quiet within ${maxS} s (--wait-quiet): numbers may be depressed.`);
}

async function quietPlease(): Promise<void> {
  if (args['wait-quiet'] !== undefined) await waitQuiet(Number(args['wait-quiet']) || 600);
}

/** Runs a measured phase; with --wait-quiet, again while other processes disturbed it. */
async function measured<T extends { otherCpu: number }>(label: string, measure: () => Promise<T>): Promise<T & { attempts: number }> {
  const retry = args['wait-quiet'] !== undefined;
  const maxAttempts = retry ? Math.max(1, num(args.attempts, 3)) : 1;
  let best: (T & { attempts: number }) | undefined;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    await quietPlease();
    const result = Object.assign(await measure(), { attempts: attempt });
    if (!best || !(result.otherCpu >= best.otherCpu)) best = result;
    if (!(result.otherCpu > 25) || attempt === maxAttempts) break;
    process.stderr.write(`[bench] ${label}: other processes used ${result.otherCpu.toFixed(0)} % of a core; measuring again\n`);
  }
  return best as T & { attempts: number };
}

// ---------------------------------------------------------------------------------------
// One shape

interface ShapeResult {
  shape: Shape;
  runs: Map<ScenarioKey, ScenarioRun[]>;
  fixed: Partial<Record<ScenarioKey, LoadRun[]>>;
  drain: DrainRun | undefined;
  tools: ToolsRun | undefined;
  measured: Measured;
  verdicts: Verdict[];
  notes: Partial<Record<keyof Measured, string>>;
}

async function runShape(shape: Shape, log: (s: string) => void): Promise<ShapeResult> {
  const runs = new Map<ScenarioKey, ScenarioRun[]>();
  for (let round = 1; settings.throughput && round <= settings.rounds; round++) {
    // Even rounds run the scenarios in reverse order, so a drift in the machine does not favour one.
    for (const { key } of round % 2 === 0 ? [...SCENARIOS].reverse() : SCENARIOS) {
      if (only && !only.has(key)) continue;
      log(`[${shape.name}] throughput: ${key} (round ${round}/${settings.rounds})`);
      const run = await measured(key, () => throughputScenario(shape, key, round));
      log(`  ${fmt(run.load.reqPerSec)} req/s, p50 ${fmt(run.load.latencyMs.p50, 2)} ms, p99 ${fmt(run.load.latencyMs.p99, 2)} ms, RSS ${fmt(mb(run.maxRssBytes))} MB, non-2xx ${run.load.non2xx + run.load.errors}`);
      runs.set(key, [...(runs.get(key) ?? []), run]);
    }
  }

  const fixed: Partial<Record<ScenarioKey, LoadRun[]>> = {};
  // Each round runs every baseline next to its Tandem stage (order alternating), so the p99
  // added is taken per round, from neighbouring runs, and the median of the rounds is judged.
  for (let round = 1; settings.fixed && round <= settings.rounds; round++) {
    const order: ScenarioKey[] = ['direct', 'tandem-source-only', 'naive', 'tandem-dual-write'];
    for (const key of round % 2 === 0 ? [...order].reverse() : order) {
      if (only && !only.has(key)) continue;
      log(`[${shape.name}] fixed rate ${settings.rate}/s: ${key} (round ${round}/${settings.rounds})`);
      const run = await measured(`${key} fixed rate`, () => fixedRateScenario(shape, key));
      log(`  p50 ${fmt(run.load.latencyMs.p50, 2)} ms, p99 ${fmt(run.load.latencyMs.p99, 2)} ms`);
      fixed[key] = [...(fixed[key] ?? []), run];
    }
  }

  let drain: DrainRun | undefined;
  if (settings.drain && (!only || only.has('tandem-dual-write'))) {
    log(`[${shape.name}] drain: ${settings.drainRows} rows written while the target refuses connections`);
    drain = await measured('drain', () => drainScenario(shape));
    log(`  restore → /admin/status pending 0 in ${fmt(drain.statusZeroS, 2)} s; SQL pending 0 in ${fmt(drain.sqlZeroS, 2)} s; steady ${fmt(drain.steadyRate, 0)} rows/s`);
  }
  let tools: ToolsRun | undefined;
  if (settings.tools && !only) {
    await quietPlease();
    log(`[${shape.name}] tools: backfill and verify of ${settings.toolRows} existing rows`);
    tools = await toolsScenario(shape);
    log(`  backfill ${fmt(tools.backfill.report.rowsPerSecond, 0)} rows/s, verify ${fmt(tools.verify.report.rowsPerSecond, 0)} rows/s (as Tandem reports them)`);
  }

  // ----- the budget's metrics
  const reqPerSec = (key: ScenarioKey) => median((runs.get(key) ?? []).map((r) => r.load.reqPerSec));
  const ratio = (a: ScenarioKey, b: ScenarioKey) => {
    const x = reqPerSec(a);
    const y = reqPerSec(b);
    return Number.isFinite(x) && Number.isFinite(y) && y > 0 ? x / y : null;
  };
  const notes: Partial<Record<keyof Measured, string>> = {};
  const p99Added = (tandemKey: ScenarioKey, baseKey: ScenarioKey, metric: keyof Measured) => {
    const d = fixed[baseKey] ?? [];
    const t = fixed[tandemKey] ?? [];
    const perRound = t.map((run, i) => (d[i] ? run.load.latencyMs.p99 - d[i].load.latencyMs.p99 : NaN)).filter((x) => Number.isFinite(x));
    if (perRound.length === 0) return null;
    notes[metric] =
      perRound.length > 1
        ? `median of ${perRound.length} rounds: ${perRound.map((x) => fmt(x, 2)).join(', ')}`
        : `${fmt(t[0]?.load.latencyMs.p99, 2)} − ${fmt(d[0]?.load.latencyMs.p99, 2)}`;
    return median(perRound);
  };
  const rssMb = Math.max(
    0,
    ...(runs.get('tandem-source-only') ?? []).map((r) => mb(r.maxRssBytes)),
    ...(runs.get('tandem-dual-write') ?? []).map((r) => mb(r.maxRssBytes)),
    ...(fixed['tandem-source-only'] ?? []).map((r) => mb(r.maxRssBytes)),
    ...(fixed['tandem-dual-write'] ?? []).map((r) => mb(r.maxRssBytes)),
    drain ? mb(drain.maxRssBytes) : 0,
  );
  const toolRate = (r: ToolRun | undefined) => (r && r.code === 0 && r.report.durationMs > 0 && tools ? tools.m / (r.report.durationMs / 1000) : null);
  const metrics: Measured = {
    sourceOnlyVsDirect: ratio('tandem-source-only', 'direct'),
    dualWriteVsNaive: ratio('tandem-dual-write', 'naive'),
    p99AddedSourceOnlyMs: p99Added('tandem-source-only', 'direct', 'p99AddedSourceOnlyMs'),
    p99AddedDualWriteMs: p99Added('tandem-dual-write', 'naive', 'p99AddedDualWriteMs'),
    drainRowsPerSec: drain?.steadyRate ?? null,
    verifyRowsPerSec: toolRate(tools?.verify),
    backfillRowsPerSec: toolRate(tools?.backfill),
    maxRssMb: rssMb > 0 ? rssMb : null,
  };
  if (drain) notes.drainRowsPerSec = `first row applied ${fmt(drain.recoveryS, 2)} s after restore; outbox empty after ${fmt(drain.sqlZeroS, 2)} s`;
  if (tools) {
    notes.backfillRowsPerSec = `${tools.m.toLocaleString('en-US')} rows, exit ${tools.backfill.code}`;
    notes.verifyRowsPerSec = `${tools.m.toLocaleString('en-US')} rows, exit ${tools.verify.code}, ${tools.verify.report.clean ? 'clean' : 'DRIFT'}`;
    if (tools.backfill.code !== 0) problems.push(`${shape.name}: tandem backfill exited with ${tools.backfill.code}: ${JSON.stringify(tools.backfill.report)}`);
    if (tools.verify.code !== 0 || !tools.verify.report.clean) problems.push(`${shape.name}: tandem verify exited with ${tools.verify.code} (clean: ${tools.verify.report.clean}) after a finished backfill.`);
  }
  for (const { key } of SCENARIOS) {
    const list = runs.get(key) ?? [];
    if (list.length > 0 && list.every((r) => r.load.ok === 0)) {
      crashed = true;
      problems.push(`${shape.name} ${key}: every request failed.`);
    }
    const non2xx = list.reduce((a, r) => a + r.load.non2xx + r.load.errors, 0);
    if (non2xx > 0) problems.push(`${shape.name} ${key}: ${non2xx} requests were not 2xx (${list.flatMap((r) => r.load.samples).slice(0, 2).join(' | ')}).`);
    for (const r of list) if (r.rows.converged === false) problems.push(`${shape.name} ${key}: source has ${r.rows.source} rows, target ${r.rows.target} (after ${r.rows.convergeMs} ms).`);
  }
  if (drain) {
    if (drain.sourceRows !== drain.targetRows) problems.push(`${shape.name} drain: source has ${drain.sourceRows} rows but target ${drain.targetRows} after the outbox drained.`);
    if (drain.writes.ok !== drain.n) problems.push(`${shape.name} drain: only ${drain.writes.ok} of ${drain.n} writes during the outage got 2xx (${JSON.stringify(drain.writes.statusCounts)} ${JSON.stringify(drain.writes.errorCounts)}).`);
    if (drain.sqlZeroS === null) problems.push(`${shape.name} drain: the outbox did not drain before the timeout.`);
  }
  return { shape, runs, fixed, drain, tools, measured: metrics, verdicts: judge(metrics), notes };
}

// ---------------------------------------------------------------------------------------
// Report

function unitText(value: number, unit: string): string {
  if (unit === '×') return `${fmt(value, 2)} ×`;
  if (unit === 'ms') return `${fmt(value, 2)} ms`;
  return `${fmt(value, 0)} ${unit}`;
}

function shapeDetails(r: ShapeResult): string[] {
  const lines: string[] = [];
  const { shape } = r;
  lines.push(`### ${shape.name}: ${shape.title}`, '');
  lines.push('| scenario | req/s | p50 ms | p99 ms | max RSS MB | non-2xx |');
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const { key, label } of SCENARIOS) {
    const list = r.runs.get(key);
    if (!list || list.length === 0) continue;
    lines.push(
      `| ${label} | ${fmt(median(list.map((x) => x.load.reqPerSec)), 0)} | ${fmt(median(list.map((x) => x.load.latencyMs.p50)), 2)} | ${fmt(median(list.map((x) => x.load.latencyMs.p99)), 2)} | ${fmt(Math.max(...list.map((x) => mb(x.maxRssBytes))), 0)} | ${list.reduce((a, x) => a + x.load.non2xx + x.load.errors, 0)} |`,
    );
  }
  lines.push('');
  for (const { key, label } of SCENARIOS) {
    for (const [i, run] of (r.runs.get(key) ?? []).entries()) {
      const hdr = run.load.headerCounts && Object.keys(run.load.headerCounts).length ? `; Tandem-Write ${JSON.stringify(run.load.headerCounts)}` : '';
      const rows = run.rows.target === null ? `${run.rows.source} rows in source` : `${run.rows.source} rows in source, ${run.rows.target} in target${run.rows.converged ? '' : ' (NOT equal)'}`;
      lines.push(
        `- ${label}${settings.rounds > 1 ? ` round ${i + 1}` : ''}: ${fmt(run.load.reqPerSec, 0)} req/s, p90 ${fmt(run.load.latencyMs.p90, 2)} ms, max ${fmt(run.load.latencyMs.max, 1)} ms; ` +
          `CPU (% of one core): server ${fmt(run.cpuPercent, 0)}, load generator ${fmt((run.load.cpuSeconds / (settings.warmupS + settings.durationS)) * 100, 0)}, other processes ${fmt(run.otherCpu, 0)}${run.attempts && run.attempts > 1 ? ` (least disturbed of ${run.attempts} attempts)` : ''}; statuses ${JSON.stringify(run.load.statusCounts)}${Object.keys(run.load.errorCounts).length ? `; socket errors ${JSON.stringify(run.load.errorCounts)}` : ''}${hdr}; ${rows}` +
          `${key === 'tandem-dual-write' && run.rows.convergeMs !== null ? ` after ${fmt(run.rows.convergeMs / 1000, 1)} s` : ''}.`,
      );
      const c = run.perInsert;
      if (Number.isFinite(c['xact_commit'])) {
        lines.push(
          `  - source (PostgreSQL) work per inserted row: ${fmt(c['xact_commit'], 2)} transactions committed, ${fmt(c['xact_rollback'], 2)} rolled back, ` +
            `${fmt(c['tup_inserted'], 2)} tuples inserted, ${fmt(c['tup_updated'], 2)} updated, ${fmt(c['tup_deleted'], 2)} deleted, ${fmt(c['tup_fetched'], 1)} fetched`,
        );
      }
      for (const sample of run.load.samples) lines.push(`  - sample non-2xx: \`${sample.replace(/\s+/g, ' ')}\``);
    }
  }
  for (const [key, list] of Object.entries(r.fixed)) {
    for (const [i, f] of (list ?? []).entries()) {
      lines.push(
        `- fixed rate ${settings.rate} req/s, ${settings.fixedDurationS} s, ${key}${settings.rounds > 1 ? ` round ${i + 1}` : ''}: p50 ${fmt(f.load.latencyMs.p50, 2)} ms, p90 ${fmt(f.load.latencyMs.p90, 2)} ms, p99 ${fmt(f.load.latencyMs.p99, 2)} ms, max ${fmt(f.load.latencyMs.max, 1)} ms; ` +
          `other processes ${fmt(f.otherCpu, 0)} % of one core; ${f.load.ok} ok, ${f.load.non2xx + f.load.errors} non-2xx${f.load.headerCounts && Object.keys(f.load.headerCounts).length ? `; Tandem-Write ${JSON.stringify(f.load.headerCounts)}` : ''}.`,
      );
    }
  }
  const { drain, tools } = r;
  if (drain) {
    lines.push(
      `- drain: ${drain.n} writes while the target refused connections (through the fault proxy): ${fmt(drain.writes.reqPerSec, 0)} req/s, p99 ${fmt(drain.writes.latencyMs.p99, 2)} ms, statuses ${JSON.stringify(drain.writes.statusCounts)}` +
        `${drain.writes.headerCounts ? `, Tandem-Write ${JSON.stringify(drain.writes.headerCounts)}` : ''}; outbox pending before restore ${drain.pendingBefore}.`,
    );
    lines.push(
      `- drain after restore: first row applied after ${fmt(drain.recoveryS, 2)} s (breaker reset + trial), outbox table empty after ${fmt(drain.sqlZeroS, 2)} s, /admin/status pending 0 after ${fmt(drain.statusZeroS, 2)} s; ` +
        `end-to-end ${drain.sqlZeroS ? fmt(drain.n / drain.sqlZeroS, 0) : 'n/a'} rows/s; ${drain.sourceRows} rows in source, ${drain.targetRows} in target${drain.sourceRows === drain.targetRows ? '' : ' (NOT equal)'}, ${drain.dead} dead; breaker ${drain.breaker}; Tandem's max RSS during the outage writes ${fmt(mb(drain.maxRssBytes), 0)} MB; other processes ${fmt(drain.otherCpu, 0)} % of one core while draining.`,
    );
    lines.push(`- Tandem's log during the outage phase (warn and above): ${drain.logs}.`);
    const points = drain.trace.filter((_p, i, all) => i % Math.max(1, Math.ceil(all.length / 12)) === 0 || i === all.length - 1);
    lines.push(`- drain trace (s after restore → pending): ${points.map((p) => `${(p.t / 1000).toFixed(2)}→${p.pending}`).join(', ')}`);
  }
  if (tools) {
    const { backfill: b, verify: v } = tools;
    lines.push(
      `- tools: source seeded with ${tools.m} rows in one statement; \`tandem backfill ${shape.table} --json\`: exit ${b.code}, ${b.report.copied} copied, ${b.report.skipped} skipped, ` +
        `${b.report.durationMs} ms (Tandem reports ${b.report.rowsPerSecond} rows/s), ${fmt(b.wallMs / 1000, 2)} s wall with process start, peak RSS ${fmt(mb(b.peakRss), 0)} MB; ` +
        `\`tandem verify ${shape.table} --json\`: exit ${v.code}, ${v.report.clean ? 'clean' : 'DRIFT'}, ${v.report.matching} matching, ${v.report.mismatched} mismatched, ${v.report.missingInTarget} missing, ${v.report.extraInTarget} extra, ` +
        `${v.report.samples?.mismatched?.length ? `mismatch sample ${JSON.stringify(v.report.samples.mismatched[0])}, ` : ''}${v.report.chunks} chunks, ${v.report.durationMs} ms (Tandem reports ${v.report.rowsPerSecond} rows/s: it counts source + target rows), ${fmt(v.wallMs / 1000, 2)} s wall, peak RSS ${fmt(mb(v.peakRss), 0)} MB; ${tools.targetRows} rows in target.`,
    );
  }
  lines.push('');
  return lines;
}

// ---------------------------------------------------------------------------------------
// Main

/** The SQL front's phase: bench/wire.ts in its own process (pgbench direct and through Tandem); its markdown section, or a problem. */
function runWire(log: (s: string) => void): string | undefined {
  log('wire: pgbench direct and through the SQL front (bench/wire.ts)');
  const result = spawnSync(process.execPath, [...tsEntry(path.join(BENCH_DIR, 'wire.ts')), ...(smoke ? ['--smoke'] : [])], {
    cwd: ROOT,
    env: { ...process.env, TANDEM_BENCH_PG_URL: PG_ADMIN_URL, TANDEM_BENCH_MYSQL_URL: MYSQL_ADMIN_URL },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 15 * 60_000,
  });
  if (result.status !== 0) {
    problems.push(`the wire phase (bench/wire.ts) failed with exit ${result.status ?? result.signal}: see its output above`);
    crashed = true;
    return undefined;
  }
  return result.stdout.trim();
}

async function main(): Promise<number> {
  const startedAt = Date.now();
  let build = 'TANDEM_BENCH_CLI';
  if (!CLI_OVERRIDE) {
    if (!existsSync(CLI)) {
      process.stderr.write(`${path.relative(ROOT, CLI)} is missing: running npm run build…\n`);
      const result = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
      if (result.status !== 0) throw new Error('npm run build failed');
    } else if (existsSync(path.join(ROOT, 'src')) && newest(path.join(ROOT, 'src')) > newest(path.join(ROOT, 'dist'))) {
      problems.push('dist/ is older than src/: the benchmark ran the last build, not the current sources (run `npm run build`).');
    }
    const snap = await snapshotDist();
    CLI = snap.cli;
    build = `dist/ built ${snap.builtAt}, snapshot taken at start`;
  }
  const machine = machineInfo();
  const [pgVersion, myVersion] = await Promise.all([
    pgAdmin.raw('SHOW server_version').then((r: { rows: Array<{ server_version: string }> }) => `PostgreSQL ${r.rows[0]?.server_version}`),
    mysqlAdmin.raw('SELECT VERSION() AS v').then((r: [Array<{ v: string }>]) => `MariaDB/MySQL ${r[0][0]?.v}`),
  ]);
  const log = (s: string) => process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(1)}s] ${s}\n`);
  log(`${smoke ? 'smoke' : 'full'} run ${runId}; shapes ${shapes.map((s) => s.name).join(', ')}; PostgreSQL ${redact(PG_ADMIN_URL)}, MariaDB ${redact(MYSQL_ADMIN_URL)}; load ${machine.load}`);

  const results: ShapeResult[] = [];
  for (const shape of shapes) results.push(await runShape(shape, log));
  const wire = settings.wire ? runWire(log) : undefined;

  const endLoad = os.loadavg().map((l) => l.toFixed(2)).join(' / ');
  const elapsedS = (Date.now() - startedAt) / 1000;
  const lines: string[] = [];
  lines.push(`# Tandem benchmark (${smoke ? 'smoke' : 'full'} run)`, '');
  lines.push(`- date: ${machine.date}`);
  lines.push(`- machine: ${machine.cpus}; ${machine.memory}; ${machine.os}`);
  lines.push(`- Node ${machine.node}; ${pgVersion} and ${myVersion}, both local`);
  lines.push(`- Tandem: commit ${machine.git}; ${build}${machine.dirtySrc.length ? `; uncommitted in src/: ${machine.dirtySrc.join(', ')}` : ''}`);
  lines.push(`- load average (1/5/15 min) at start: ${machine.load}; at end: ${endLoad}`);
  lines.push(
    `- load: closed loop, ${settings.connections} keep-alive connections, ${settings.warmupS} s warm-up then ${settings.durationS} s measured per scenario` +
      `${settings.rounds > 1 ? `, median of ${settings.rounds} rounds` : ''}; pool size ${settings.poolMax} per store everywhere; fresh databases per scenario; each request inserts one row.` +
      `${process.env['TANDEM_BENCH_WORKERS'] ? ` Tandem ran with TANDEM_WORKERS=${process.env['TANDEM_BENCH_WORKERS']} (RSS and CPU summed over the primary and its workers).` : ' Tandem ran as one process (TANDEM_WORKERS=1).'}`,
  );
  lines.push(
    `- the load generator (bench/load.ts, its own process), the server under test, PostgreSQL and MariaDB all share these ${os.cpus().length} cores: absolute numbers are low and noisy; the ratios measured in the same run are what the budget judges.`,
  );
  lines.push('');
  lines.push('## Budget per table shape (DESIGN §12, thresholds in bench/budget.ts)', '');
  lines.push('| shape | check | measured | budget | result |');
  lines.push('|---|---|---|---|---|');
  for (const r of results) {
    for (const v of r.verdicts) {
      const note = r.notes[v.line.metric];
      const measuredText = v.value === null ? (smoke && v.line.metric.startsWith('p99') ? 'not run (smoke)' : 'not measured') : `${unitText(v.value, v.line.unit)}${note ? ` (${note})` : ''}`;
      lines.push(`| ${r.shape.name} | ${v.line.name} | ${measuredText} | ${v.line.comparison} ${unitText(v.line.threshold, v.line.unit)} | ${v.pass === null ? '—' : v.pass ? 'PASS' : 'MISS'} |`);
    }
  }
  lines.push('');
  const header = `| check | ${results.map((r) => r.shape.name).join(' | ')} |`;
  lines.push('Summary:', '', header, `|---|${results.map(() => '---|').join('')}`);
  for (const line of BUDGET) {
    const cells = results.map((r) => {
      const v = r.verdicts.find((x) => x.line.metric === line.metric);
      return !v || v.value === null ? '—' : `${unitText(v.value, line.unit)} ${v.pass ? 'PASS' : 'MISS'}`;
    });
    lines.push(`| ${line.name} (${line.comparison} ${unitText(line.threshold, line.unit)}) | ${cells.join(' | ')} |`);
  }
  lines.push('');
  lines.push('## Details', '');
  for (const r of results) lines.push(...shapeDetails(r));
  const noisy = results.flatMap((r) => [
    ...SCENARIOS.flatMap(({ key }) => (r.runs.get(key) ?? []).map((x) => [`${r.shape.name} ${key}`, x.otherCpu] as const)),
    ...Object.entries(r.fixed).flatMap(([key, list]) => (list ?? []).map((f) => [`${r.shape.name} ${key} fixed rate`, f.otherCpu] as const)),
    ...(r.drain ? [[`${r.shape.name} drain`, r.drain.otherCpu] as const] : []),
  ]).filter(([, cpu]) => cpu > 25);
  if (noisy.length > 0) {
    problems.push(
      `noisy machine: processes other than the server, the load generator and the databases used ${noisy.map(([k, c]) => `${fmt(c, 0)} % of a core during ${k}`).join(', ')}: those numbers are depressed.`,
    );
  }
  if (wire) lines.push(wire, '');
  lines.push(`- total run time ${fmt(elapsedS, 1)} s.`, '');
  lines.push('## Problems seen', '');
  if (problems.length === 0) lines.push('None: no crash, no non-2xx answer, no server output at level warn or above, every row converged.');
  else for (const p of problems) lines.push(`- ${p}`);
  lines.push('');

  const text = lines.join('\n');
  process.stdout.write(`${text}\n`);
  writeFileSync(OUT, `${text}\n`);
  if (logDir) log(`server logs kept in ${logDir}`);
  log(`report written to ${path.relative(process.cwd(), OUT) || OUT}`);
  const missed = results.some((r) => r.verdicts.some((v) => v.pass === false));
  return crashed ? 1 : args.strict && missed ? 1 : 0;
}

main().then(
  async (code) => {
    await cleanup();
    process.exitCode = code;
  },
  async (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    if (problems.length) process.stderr.write(`problems so far:\n${problems.map((p) => `- ${p}`).join('\n')}\n`);
    await cleanup();
    process.exitCode = 1;
  },
);
