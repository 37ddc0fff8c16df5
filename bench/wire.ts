/**
 * The SQL front's benchmark (DESIGN §12): pgbench's TPC-B-like script direct to the source
 * and through Tandem's PostgreSQL front — Tandem `source-only` and `dual-write` — in the same
 * run, with the same client count, for `-M simple`, `extended` and `prepared`.
 *
 *   node --import tsx bench/wire.ts [--smoke] [--duration S] [--clients N] [--target pg|mysql]
 *
 * `npm run bench` runs it as its `wire` phase and appends its report. pgbench_accounts,
 * _branches and _tellers are policy tables (pgbench_history has no primary key: it is left
 * unreplicated and forwarded). Scratch databases on the local servers (the benchmark's own
 * URLs), Tandem as a child process of the built CLI (`dist/`), cleaned up on exit. Prints one
 * markdown section: TPS and ratios against direct, the budget verdicts (≥ 0.8 × source-only,
 * ≥ 0.6 × dual-write), and the p50/p99 latency Tandem adds per statement (from pgbench's
 * per-transaction log, over the script's 7 statements).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { SqlClassifier, loadParser, type SqlTable } from '../src/sql/classify.js';
import { freePort, spawnTandem, type TandemChild } from '../test/helpers/child.js';
import { createTestDatabase, type TestDatabase } from '../test/helpers/databases.js';

const run = promisify(execFile);
const { values: args } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    duration: { type: 'string' },
    clients: { type: 'string' },
    target: { type: 'string', default: 'pg' },
  },
});
const SMOKE = args.smoke;
const SECONDS = Number(args.duration ?? (SMOKE ? 1 : 8));
const CLIENTS = Number(args.clients ?? 8);
const MODES = ['simple', 'extended', 'prepared'] as const;
/** Statements of one TPC-B-like transaction: BEGIN, 3 UPDATE, SELECT, INSERT, END. */
const STATEMENTS = 7;
const TABLES = { pgbench_accounts: 'aid', pgbench_branches: 'bid', pgbench_tellers: 'tid' } as const;
const SERVERS = { pg: process.env['TANDEM_BENCH_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres', mysql: process.env['TANDEM_BENCH_MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/mysql', prefix: 'tandem_bw' };

interface Run {
  tps: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function pgArgs(url: URL): string[] {
  return ['-h', url.hostname, '-p', url.port || '5432', '-U', decodeURIComponent(url.username || 'postgres'), url.pathname.slice(1)];
}

/** One pgbench run; latencies from its per-transaction log (`-l`: the third field is the latency in µs). */
async function pgbench(url: URL, mode: string, seconds: number, logDir: string): Promise<Run> {
  rmSync(logDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  const { stdout } = await run('pgbench', ['-n', '-c', String(CLIENTS), '-j', '2', '-T', String(seconds), '-M', mode, '-l', `--log-prefix=${path.join(logDir, 'tx')}`, ...pgArgs(url)], {
    env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
    timeout: (seconds + 120) * 1000,
  });
  const latencies: number[] = [];
  for (const file of readdirSync(logDir)) {
    for (const line of readFileSync(path.join(logDir, file), 'utf8').split('\n')) {
      const us = Number(line.split(' ')[2]);
      if (Number.isFinite(us) && line.length > 0) latencies.push(us / 1000);
    }
  }
  latencies.sort((a, b) => a - b);
  return {
    tps: Number(/tps = ([\d.]+)/.exec(stdout)?.[1]),
    failed: Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}

async function pgbenchInit(url: string, steps: string): Promise<void> {
  await run('pgbench', ['-i', '-s', '1', '-I', steps, '-q', ...pgArgs(new URL(url))]);
}

/** The TPC-B-like script's statements with fresh literals each time (what `-M simple` sends). */
const SCRIPT: ReadonlyArray<(i: number) => string> = [
  (i) => `UPDATE pgbench_accounts SET abalance = abalance + ${i % 5000} WHERE aid = ${i % 100000};`,
  (i) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${i % 100000};`,
  (i) => `UPDATE pgbench_tellers SET tbalance = tbalance + ${i % 5000} WHERE tid = ${i % 10};`,
  (i) => `UPDATE pgbench_branches SET bbalance = bbalance + ${i % 5000} WHERE bid = 1;`,
  (i) => `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${i % 10}, 1, ${i % 100000}, ${i % 5000}, CURRENT_TIMESTAMP);`,
];

/**
 * Parse + classify per statement, in this process: the script's statements with literals
 * never seen before (a cache miss each: libpg-query's parse and fingerprint, the plan, the
 * outbox rewrite of a write), and seen before (the cache by text, what prepared statements
 * and repeated texts get).
 */
async function classifyCost(): Promise<{ newUs: number; cachedUs: number; perShape: string }> {
  await loadParser({ warmUp: true });
  const columns = (names: string[]) => names.map((name) => ({ name, oid: name === 'filler' ? 1042 : 23 }));
  const table = (name: string, key: string, cols: string[]): SqlTable => ({ name, sourceTable: name, targetTable: name, primaryKey: [key], targetColumns: new Map(), columns: columns(cols) });
  const classifier = new SqlClassifier([
    table('pgbench_accounts', 'aid', ['aid', 'bid', 'abalance', 'filler']),
    table('pgbench_tellers', 'tid', ['tid', 'bid', 'tbalance', 'filler']),
    table('pgbench_branches', 'bid', ['bid', 'bbalance', 'filler']),
  ]);
  const n = SMOKE ? 2_000 : 20_000;
  for (let i = 0; i < 3_000; i++) classifier.classify((SCRIPT[i % SCRIPT.length] as (i: number) => string)(10_000_000 + i));
  const perShape: string[] = [];
  let total = 0;
  for (const [k, shape] of SCRIPT.entries()) {
    const started = performance.now();
    for (let i = 0; i < n; i++) classifier.classify(shape(20_000_000 + k * n + i));
    const us = ((performance.now() - started) * 1000) / n;
    total += us;
    perShape.push(`${shape(1).split(' ').slice(0, 2).join(' ')} ${us.toFixed(1)} µs`);
  }
  const text = (SCRIPT[0] as (i: number) => string)(1);
  classifier.classify(text);
  const started = performance.now();
  for (let i = 0; i < n; i++) classifier.classify(text);
  return { newUs: total / SCRIPT.length, cachedUs: ((performance.now() - started) * 1000) / n, perShape: perShape.join(', ') };
}

async function main(): Promise<string> {
  const dbs: TestDatabase[] = [];
  const dirs: string[] = [];
  let tandem: TandemChild | undefined;
  const stopTandem = async () => {
    if (tandem && tandem.process.exitCode === null && tandem.process.signalCode === null) {
      tandem.process.kill('SIGTERM');
      await tandem.exited;
    }
    tandem = undefined;
  };
  try {
    const source = await createTestDatabase('pg', 'wiresrc', SERVERS);
    dbs.push(source);
    const target = await createTestDatabase(args.target === 'mysql' ? 'mysql' : 'pg', 'wiretgt', SERVERS);
    dbs.push(target);
    await pgbenchInit(source.url, 'dtgvp');
    if (target.dialect === 'pg') await pgbenchInit(target.url, 'dtp');
    else {
      await target.knex.raw('CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler varchar(84))');
      await target.knex.raw('CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler varchar(88))');
      await target.knex.raw('CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler varchar(84))');
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tandem-bench-wire-'));
    dirs.push(dir);
    const policies = path.join(dir, 'policies');
    const config = path.join(dir, 'config');
    for (const d of [policies, config]) mkdirSync(d, { recursive: true });
    for (const [table, key] of Object.entries(TABLES)) writeFileSync(path.join(policies, `${table}.yaml`), `table: ${table}\nprimaryKey: [${key}]\n`);
    const flagsFile = path.join(dir, 'flags.json');
    const sqlPort = await freePort();
    const startTandem = async (dualWrite: boolean) => {
      writeFileSync(flagsFile, JSON.stringify({ version: 2, features: Object.keys(TABLES).map((t) => ({ name: `tandem.${t}.dual-write`, enabled: dualWrite, strategies: [{ name: 'default' }] })) }));
      tandem = await spawnTandem(['serve'], {
        TANDEM_SOURCE_URL: source.url,
        TANDEM_TARGET_URL: target.url,
        TANDEM_POLICIES_DIR: policies,
        TANDEM_FLAGS_FILE: flagsFile,
        TANDEM_CONFIG_DIR: config,
        TANDEM_SQL_PORT: String(sqlPort),
        TANDEM_LOG_LEVEL: 'warn',
      });
    };
    const direct = new URL(source.url);
    const through = new URL(`postgres://app@127.0.0.1:${sqlPort}/app`);
    const results = new Map<string, Run>();
    const measure = async (label: string, url: URL) => {
      for (const mode of MODES) {
        // Warm-up (connections, prepared statements, the JIT) before each measured run.
        await pgbench(url, mode, 1, path.join(dir, 'warm'));
        results.set(`${label}/${mode}`, await pgbench(url, mode, SECONDS, path.join(dir, `${label}-${mode}`)));
        process.stderr.write(`[bench wire] ${label} -M ${mode}: ${results.get(`${label}/${mode}`)?.tps.toFixed(0)} tps\n`);
      }
    };
    // Direct before and after each Tandem configuration: the ratio uses the mean of the two.
    await measure('direct-1', direct);
    await startTandem(false);
    await measure('source-only', through);
    await stopTandem();
    await measure('direct-2', direct);
    await startTandem(true);
    await measure('dual-write', through);
    await stopTandem();
    await measure('direct-3', direct);

    const lines: string[] = [];
    lines.push(`## SQL front: pgbench through Tandem (${SMOKE ? 'smoke' : 'full'}; PostgreSQL → ${target.dialect === 'pg' ? 'PostgreSQL' : 'MariaDB'})`, '');
    lines.push(
      `pgbench TPC-B-like, scale 1, ${CLIENTS} clients, ${SECONDS} s per run after a 1 s warm-up; direct runs on the source itself before, between and after the two Tandem runs (each ratio uses the mean of the direct runs either side); Tandem is the built CLI as a child process with its default pools. Latency added per statement = (Tandem's per-transaction percentile − direct's) / ${STATEMENTS} statements.`,
      '',
    );
    lines.push('| mode | direct tps | source-only tps (× direct) | dual-write tps (× direct) | failed tx | p50 / p99 added per statement, source-only | dual-write |');
    lines.push('|---|---|---|---|---|---|---|');
    const verdicts: string[] = [];
    for (const mode of MODES) {
      const d1 = results.get(`direct-1/${mode}`) as Run;
      const d2 = results.get(`direct-2/${mode}`) as Run;
      const d3 = results.get(`direct-3/${mode}`) as Run;
      const so = results.get(`source-only/${mode}`) as Run;
      const dw = results.get(`dual-write/${mode}`) as Run;
      const baseSo = (d1.tps + d2.tps) / 2;
      const baseDw = (d2.tps + d3.tps) / 2;
      const added = (r: Run, a: Run, b: Run) =>
        `${(((r.p50Ms - (a.p50Ms + b.p50Ms) / 2) * 1000) / STATEMENTS).toFixed(0)} / ${(((r.p99Ms - (a.p99Ms + b.p99Ms) / 2) * 1000) / STATEMENTS).toFixed(0)} µs`;
      const failed = d1.failed + d2.failed + d3.failed + so.failed + dw.failed;
      lines.push(
        `| ${mode} | ${baseSo.toFixed(0)} / ${baseDw.toFixed(0)} | ${so.tps.toFixed(0)} (${(so.tps / baseSo).toFixed(2)}×) | ${dw.tps.toFixed(0)} (${(dw.tps / baseDw).toFixed(2)}×) | ${failed} | ${added(so, d1, d2)} | ${added(dw, d2, d3)} |`,
      );
      verdicts.push(`${mode}: source-only ${(so.tps / baseSo).toFixed(2)}× (≥ 0.8: ${so.tps / baseSo >= 0.8 ? 'PASS' : 'MISS'}), dual-write ${(dw.tps / baseDw).toFixed(2)}× (≥ 0.6: ${dw.tps / baseDw >= 0.6 ? 'PASS' : 'MISS'})`);
    }
    const parse = await classifyCost();
    lines.push(
      '',
      `Parse + classify per statement (this process, libpg-query + Tandem's plan and rewrite): ${parse.newUs.toFixed(1)} µs for a statement never seen before (mean over the script: ${parse.perShape}), ${parse.cachedUs.toFixed(2)} µs for one seen before (cached by text).`,
    );
    verdicts.push(`parse + classify ${parse.newUs.toFixed(1)} µs (≤ 50: ${parse.newUs <= 50 ? 'PASS' : 'MISS'})`);
    lines.push('', `Budget (DESIGN §12): ${verdicts.join('; ')}.`, '');
    return lines.join('\n');
  } finally {
    await stopTandem();
    for (const db of dbs.reverse()) await db.drop().catch(() => undefined);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

main().then(
  (report) => {
    process.stdout.write(`${report}\n`);
  },
  (error: unknown) => {
    process.stderr.write(`bench wire: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
