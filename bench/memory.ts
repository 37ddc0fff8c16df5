/**
 * Where a running Tandem's memory goes (issue #10: RSS under load ≤ 200 MB, DESIGN §12).
 *
 *   node --import tsx bench/memory.ts [--configs sqlite,pg-mariadb] [--connections 50]
 *        [--duration 20] [--idle 5] [--snapshots DIR] [--cli dist/cli/main.js]
 *        [--node-options=--max-old-space-size=1024]
 *
 * For each configuration — `sqlite` (embedded SQLite source and target, the quickstart's
 * engines) and `pg-mariadb` (the local PostgreSQL source, MariaDB target) — it creates the
 * bench's `int` table on scratch databases, starts `--cli serve` (dual-write on, NODE_OPTIONS
 * from `--node-options`), waits `--idle` seconds, then drives the bench's load generator
 * (bench/load.ts, closed loop, inserts) for `--duration` seconds. A preloaded probe in the
 * server samples `process.memoryUsage()` and the V8 spaces every 200 ms; the report gives each
 * figure at idle and its peak under load, and RSS split by /proc into file-backed pages (the
 * node binary and libraries) and anonymous memory (V8's heap, wasm memory, malloc). With
 * --snapshots, a heap snapshot is written at idle and after the load
 * (`--heapsnapshot-signal`; writing one leaves native memory behind, so do not compare peaks
 * of runs with and without) and its largest constructors by self size are printed.
 */
import { readFileSync, readdirSync, statSync, mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { CLI, freePort, spawnNode, stopChild, waitReady, type NodeChild } from '../test/helpers/child.js';
import { createTestDatabase, type TestDatabase } from '../test/helpers/databases.js';
import { tsEntry } from './lib.js';
import { shapeNamed } from './shapes.js';

const { values: args } = parseArgs({
  options: {
    configs: { type: 'string', default: 'sqlite,pg-mariadb' },
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: '20' },
    idle: { type: 'string', default: '5' },
    snapshots: { type: 'string' },
    cli: { type: 'string', default: CLI },
    'node-options': { type: 'string', default: '' },
  },
  strict: true,
});

const BENCH_DIR = import.meta.dirname;
const shape = shapeNamed('int');
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

const CONFIGS = {
  sqlite: { source: 'sqlite', target: 'sqlite' },
  'pg-mariadb': { source: 'pg', target: 'mysql' },
} as const;
type ConfigName = keyof typeof CONFIGS;

/** Appends `process.memoryUsage()`, the V8 spaces' sizes and the time to $TANDEM_MEMORY_PROBE every 200 ms. */
const PROBE = `data:text/javascript,${encodeURIComponent(
  [
    "import { appendFileSync } from 'node:fs';",
    "import { getHeapSpaceStatistics } from 'node:v8';",
    'const f = process.env.TANDEM_MEMORY_PROBE;',
    'const spaces = () => Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]));',
    "setInterval(() => appendFileSync(f, JSON.stringify({ t: Date.now(), ...process.memoryUsage(), ...spaces() }) + '\\n'), 200).unref();",
  ].join(' '),
)}`;

const FIGURES = ['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers', 'new_space', 'old_space', 'code_space', 'large_object_space'] as const;
type Usage = Record<(typeof FIGURES)[number], number> & { t: number };

interface ProcMemory {
  rssFile: number;
  rssAnon: number;
}

/** RSS split into file-backed pages (the node binary, libraries) and anonymous memory (heaps, wasm, malloc). */
function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rssFile: kb('RssFile') + kb('RssShmem'), rssAnon: kb('RssAnon') };
}

function readProbe(file: string): Usage[] {
  try {
    return readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Usage);
  } catch {
    return [];
  }
}

/** Sends SIGUSR2 (`--heapsnapshot-signal`) and waits until the new snapshot file stops growing. */
async function heapSnapshot(child: NodeChild, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  child.process.kill('SIGUSR2');
  for (let last = -1; ; await sleep(500)) {
    const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (!file) continue;
    const size = statSync(path.join(dir, file)).size;
    if (size > 0 && size === last) return path.join(dir, file);
    last = size;
  }
}

/** The largest groups of a heap snapshot by self size: objects by constructor, the rest by node type. */
function summariseSnapshot(file: string, top = 15): string[] {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
  const groups = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + typeAt] as number] ?? '?';
    const key = type === 'object' || type === 'native' ? (snap.strings[snap.nodes[i + nameAt] as number] ?? '?') : `(${type})`;
    const size = snap.nodes[i + sizeAt] as number;
    const g = groups.get(key) ?? { bytes: 0, count: 0 };
    g.bytes += size;
    g.count += 1;
    groups.set(key, g);
    total += size;
  }
  const rows = [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top);
  return [
    `heap snapshot ${path.basename(file)}: ${mb(total)} MB live`,
    ...rows.map(([name, g]) => `  ${mb(g.bytes).padStart(7)} MB ${((g.bytes / total) * 100).toFixed(1).padStart(5)} % ${String(g.count).padStart(8)} × ${name.slice(0, 80)}`),
  ];
}

async function measure(name: ConfigName): Promise<string[]> {
  const config = CONFIGS[name];
  const dir = mkdtempSync(path.join(os.tmpdir(), `tandem-memory-${name}-`));
  const servers = {
    pg: process.env['TANDEM_BENCH_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    mysql: process.env['TANDEM_BENCH_MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/mysql',
    prefix: 'tandem_mem',
  };
  const dbs: TestDatabase[] = [];
  let child: NodeChild | undefined;
  try {
    const source = await createTestDatabase(config.source, `${name}s`, servers);
    dbs.push(source);
    const target = await createTestDatabase(config.target, `${name}t`, servers);
    dbs.push(target);
    await shape.createSource(source.knex);
    await shape.createTarget(target.knex);
    // The server opens the SQLite files itself; the scratch handles would hold the writer lock.
    for (const db of dbs) if (db.dialect === 'sqlite') await db.knex.destroy();
    for (const d of ['policies', 'config', 'snapshots']) mkdirSync(path.join(dir, d));
    writeFileSync(path.join(dir, 'policies', `${shape.table}.yaml`), shape.policy);
    const flags = { version: 2, features: [{ name: `tandem.${shape.table}.dual-write`, enabled: true, strategies: [{ name: 'default' }] }] };
    writeFileSync(path.join(dir, 'flags.json'), JSON.stringify(flags));
    const probe = path.join(dir, 'probe.jsonl');
    const snapshots = args.snapshots ? path.resolve(args.snapshots, name) : path.join(dir, 'snapshots');
    mkdirSync(snapshots, { recursive: true });
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    child = spawnNode(name, ['--import', PROBE, '--heapsnapshot-signal=SIGUSR2', path.resolve(args.cli), 'serve'], {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '/tmp',
      TANDEM_MEMORY_PROBE: probe,
      TANDEM_SOURCE_URL: source.url,
      TANDEM_TARGET_URL: target.url,
      TANDEM_POLICIES_DIR: path.join(dir, 'policies'),
      TANDEM_FLAGS_FILE: path.join(dir, 'flags.json'),
      TANDEM_CONFIG_DIR: path.join(dir, 'config'),
      TANDEM_PORT: String(port),
      TANDEM_HOST: '127.0.0.1',
      TANDEM_LOG_LEVEL: 'warn',
      TANDEM_POOL_MAX: '10',
      ...(args['node-options'] ? { NODE_OPTIONS: args['node-options'] } : {}),
    }, { cwd: snapshots, maxOutput: 65_536 });
    const pid = child.process.pid as number;
    await waitReady(child, `${url}/readyz`);
    await sleep(Number(args.idle) * 1000);
    const idle = readProbe(probe).at(-1);
    const idleProc = procMemory(pid);
    const out = [`## ${name} (${config.source} → ${config.target}), pid ${pid}`];
    if (args.snapshots) out.push(...summariseSnapshot(await heapSnapshot(child, snapshots)));
    const loadStart = Date.now();
    let peakProc = idleProc;
    const sampler = setInterval(() => {
      const p = procMemory(pid);
      if (p.rssFile + p.rssAnon > peakProc.rssFile + peakProc.rssAnon) peakProc = p;
    }, 200);
    const load = spawn(process.execPath, [...tsEntry(path.join(BENCH_DIR, 'load.ts')), '--url', url, '--shape', shape.name, '--connections', args.connections, '--warmup', '0', '--duration', args.duration], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let report = '';
    load.stdout.on('data', (d: Buffer) => (report += d.toString()));
    const code = await new Promise<number | null>((resolve) => load.once('exit', resolve));
    clearInterval(sampler);
    if (code !== 0) throw new Error(`load generator exited with ${code}`);
    const result = JSON.parse(report.trim().split('\n').pop() ?? '{}') as { reqPerSec: number; non2xx: number; errors: number };
    await sleep(500);
    const during = readProbe(probe).filter((u) => u.t >= loadStart);
    const peak = Object.fromEntries(FIGURES.map((f) => [f, Math.max(...during.map((u) => u[f]))])) as Record<(typeof FIGURES)[number], number>;
    out.push(
      `load: ${args.connections} connections, ${args.duration} s of inserts: ${Math.round(result.reqPerSec)} req/s, ${result.non2xx + result.errors} non-2xx/errors`,
      `| MB | ${FIGURES.join(' | ')} | rss: file-backed | rss: anonymous |`,
      `|---|${FIGURES.map(() => '---:').join('|')}|---:|---:|`,
      `| idle after start | ${FIGURES.map((f) => mb(idle?.[f] ?? NaN)).join(' | ')} | ${mb(idleProc.rssFile)} | ${mb(idleProc.rssAnon)} |`,
      `| peak under load | ${FIGURES.map((f) => mb(peak[f])).join(' | ')} | ${mb(peakProc.rssFile)} | ${mb(peakProc.rssAnon)} |`,
      '(peaks of each column taken separately; the /proc split is the sample with the largest RSS)',
    );
    if (args.snapshots) out.push(...summariseSnapshot(await heapSnapshot(child, snapshots)));
    return out;
  } finally {
    if (child) await stopChild(child);
    for (const db of dbs) await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const name of args.configs.split(',')) {
  if (!(name in CONFIGS)) throw new Error(`--configs: unknown configuration ${name} (sqlite, pg-mariadb)`);
  process.stdout.write(`${(await measure(name as ConfigName)).join('\n')}\n\n`);
}
