/**
 * HTTP write-load generator for the benchmark. Runs in its own process so it never shares
 * an event loop with the server it measures. Uses `node:http` keep-alive agents only.
 *
 * Modes (all POST `{"values": …}` of the table shape --shape to --url + /v1/tables/<table>/rows):
 *   closed loop  --connections C --warmup W --duration D
 *                C workers, each sends its next request when the previous one answered.
 *   open loop    --rate R --warmup W --duration D [--connections C]
 *                R requests per second on a fixed schedule whatever the answers; latency is
 *                measured from the scheduled send time (no coordinated omission). C caps
 *                the sockets; requests beyond it wait in the agent, and that wait counts.
 *   fixed count  --requests N [--connections C]
 *                N requests in closed loop, as fast as they are answered (no warm-up).
 *
 * Prints one JSON object on stdout (see `report()`); exits 0 unless its own arguments are bad.
 */
import http from 'node:http';
import { Buffer } from 'node:buffer';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import process from 'node:process';
import { URL } from 'node:url';
import { percentile } from './lib.js';
import { shapeNamed } from './shapes.js';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    shape: { type: 'string', default: 'int' },
    connections: { type: 'string', default: '32' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    rate: { type: 'string' },
    requests: { type: 'string' },
    'count-header': { type: 'string' },
    'timeout-ms': { type: 'string', default: '30000' },
    label: { type: 'string', default: 'load' },
  },
  strict: true,
});

if (!opts.url) {
  process.stderr.write('load.ts: --url is required\n');
  process.exit(2);
}
const base = new URL(opts.url);
const shape = shapeNamed(opts.shape);
const requestPath = `/v1/tables/${shape.table}/rows`;
const connections = Math.max(1, Number(opts.connections));
const durationS = Number(opts.duration);
const warmupS = Number(opts.warmup);
const rate = opts.rate === undefined ? undefined : Number(opts.rate);
const fixedCount = opts.requests === undefined ? undefined : Number(opts.requests);
const countHeader = opts['count-header']?.toLowerCase();
const timeoutMs = Number(opts['timeout-ms']);
for (const [name, v] of Object.entries({ connections, durationS, warmupS, timeoutMs })) {
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`load.ts: bad --${name}\n`);
    process.exit(2);
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
let sequence = 0;

/** Measurement state; `recording` is false during warm-up. */
const stats = {
  recording: false,
  latencies: [] as number[],
  ok: 0,
  non2xx: 0,
  errors: 0,
  statusCounts: {} as Record<string, number>,
  errorCounts: {} as Record<string, number>,
  headerCounts: {} as Record<string, number>,
  samples: [] as string[],
};

function body(): string {
  sequence += 1;
  return JSON.stringify({ values: shape.values(sequence, tag) });
}

/**
 * One POST. Resolves (never rejects) when the answer has been read to the end or failed.
 * `startedAt`: performance.now() the latency is measured from; completions after `windowEnd`
 * (performance.now()) are not recorded.
 */
function send(startedAt: number, windowEnd = Infinity): Promise<void> {
  return (
    new Promise((resolve) => {
      const payload = body();
      let settled = false;
      const done = (status: number | undefined, header: string | undefined, error: string | undefined, text = '') => {
        if (settled) return;
        settled = true;
        const now = performance.now();
        if (stats.recording && now <= windowEnd) {
          if (error !== undefined) {
            stats.errors += 1;
            stats.errorCounts[error] = (stats.errorCounts[error] ?? 0) + 1;
          } else if (status !== undefined) {
            stats.latencies.push(now - startedAt);
            stats.statusCounts[status] = (stats.statusCounts[status] ?? 0) + 1;
            if (status >= 200 && status < 300) stats.ok += 1;
            else {
              stats.non2xx += 1;
              if (stats.samples.length < 3) stats.samples.push(`${status} ${text.slice(0, 300)}`);
            }
            if (countHeader) {
              const key = header ?? '(none)';
              stats.headerCounts[key] = (stats.headerCounts[key] ?? 0) + 1;
            }
          }
        }
        resolve();
      };
      const req = http.request(
        {
          agent,
          host: base.hostname,
          port: base.port,
          method: 'POST',
          path: requestPath,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const headerValue = countHeader ? res.headers[countHeader] : undefined;
          const header = Array.isArray(headerValue) ? headerValue.join(',') : headerValue;
          const keepText = status < 200 || status >= 300;
          let text = '';
          res.on('data', (chunk: Buffer) => {
            if (keepText && text.length < 1000) text += chunk.toString();
          });
          res.on('end', () => done(status, header, undefined, text));
          res.on('error', (e) => done(undefined, undefined, e.message));
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (e: NodeJS.ErrnoException) => done(undefined, undefined, e.code ?? e.message));
      req.end(payload);
    })
  );
}

/** Closed loop: `connections` workers until `until` (performance.now()), or until `budget` requests. */
async function closedLoop(until: number, budget: { left: number } | undefined, windowEnd = Infinity): Promise<void> {
  const worker = async () => {
    for (;;) {
      if (performance.now() >= until) return;
      if (budget) {
        if (budget.left <= 0) return;
        budget.left -= 1;
      }
      await send(performance.now(), windowEnd);
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
}

/** Open loop: one request every 1/rate s from `from` until `until`; returns the in-flight promises. */
async function openLoop(from: number, until: number, perSecond: number, windowEnd = Infinity): Promise<number> {
  const interval = 1000 / perSecond;
  const pending = new Set<Promise<void>>();
  let i = 0;
  for (;;) {
    const due = from + i * interval;
    if (due >= until) break;
    const now = performance.now();
    if (due > now) {
      await delay(Math.max(0, due - now));
      continue;
    }
    // Send everything that is due, timing each from its own scheduled instant.
    const p = send(due, windowEnd);
    pending.add(p);
    void p.then(() => pending.delete(p));
    i += 1;
  }
  await Promise.all(pending);
  return i;
}

async function main() {
  const started = performance.now();
  let mode: 'fixed-count' | 'open-loop' | 'closed-loop';
  let windowMs: number;
  let scheduled: number | undefined;
  if (fixedCount !== undefined) {
    mode = 'fixed-count';
    stats.recording = true;
    await closedLoop(Infinity, { left: fixedCount });
    windowMs = performance.now() - started;
  } else if (rate !== undefined) {
    mode = 'open-loop';
    const warmEnd = started + warmupS * 1000;
    if (warmupS > 0) await openLoop(started, warmEnd, rate);
    const measureStart = performance.now();
    stats.recording = true;
    scheduled = await openLoop(measureStart, measureStart + durationS * 1000, rate);
    windowMs = performance.now() - measureStart;
  } else {
    mode = 'closed-loop';
    // Warm-up and measurement run as one loop so connections never go idle in between:
    // completions before the window opens are not recorded, nor those after it closes.
    const measureStart = started + warmupS * 1000;
    const measureEnd = measureStart + durationS * 1000;
    const timer = setTimeout(() => (stats.recording = true), Math.max(0, measureStart - performance.now()));
    await closedLoop(measureEnd, undefined, measureEnd);
    clearTimeout(timer);
    windowMs = durationS * 1000;
  }
  agent.destroy();
  const sorted = Float64Array.from(stats.latencies).sort();
  const total = stats.ok + stats.non2xx + stats.errors;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  const result: LoadResult = {
    label: opts.label,
    mode,
    url: `${base.origin}${requestPath}`,
    connections,
    rate: rate ?? null,
    scheduled: scheduled ?? null,
    warmupS: mode === 'fixed-count' ? 0 : warmupS,
    windowS: round(windowMs / 1000),
    completed: total,
    ok: stats.ok,
    non2xx: stats.non2xx,
    errors: stats.errors,
    reqPerSec: round(stats.ok / (windowMs / 1000)),
    latencyMs: {
      p50: round(percentile(sorted, 50)),
      p90: round(percentile(sorted, 90)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted.length ? (sorted[sorted.length - 1] as number) : NaN),
      mean: round(sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1)),
    },
    statusCounts: stats.statusCounts,
    errorCounts: stats.errorCounts,
    headerCounts: countHeader ? stats.headerCounts : undefined,
    samples: stats.samples,
    cpuSeconds: round((process.cpuUsage().user + process.cpuUsage().system) / 1e6),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** What the load generator prints (one JSON line). */
export interface LoadResult {
  label: string;
  mode: string;
  url: string;
  connections: number;
  rate: number | null;
  scheduled: number | null;
  warmupS: number;
  windowS: number;
  completed: number;
  ok: number;
  non2xx: number;
  errors: number;
  reqPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  statusCounts: Record<string, number>;
  errorCounts: Record<string, number>;
  headerCounts: Record<string, number> | undefined;
  samples: string[];
  /** CPU this load generator used (user + system, whole run), seconds. */
  cpuSeconds: number;
}

main().catch((error: unknown) => {
  process.stderr.write(`load.ts: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
