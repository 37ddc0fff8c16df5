import cluster, { type Worker } from 'node:cluster';
import { pino } from 'pino';
import { dialectOf, makeAdapter } from '../db/dialects/index.js';
import type { TandemConfig } from '../config/schema.js';
import { TandemError } from '../errors.js';
import { serveClusterMetrics } from '../metrics/cluster-metrics.js';

/** Restarts allowed within RESTART_WINDOW_MS before the primary gives up (a crash loop). */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 1_000;

/**
 * `serve` with TANDEM_WORKERS > 1: this process forks the workers (each a full Tandem on
 * the shared port, with its own pools and outbox worker), restarts one that dies, answers
 * their /metrics with the cluster's, and on SIGTERM/SIGINT stops them all (each drains).
 * Resolves with the exit code.
 */
export function runClusterPrimary(config: TandemConfig): Promise<number> {
  const embedded = [config.source.url, config.target.url].filter((url) => makeAdapter(dialectOf(url)).inProcess);
  if (embedded.length > 0) {
    throw new TandemError('config_invalid', 500, 'workers: more than one worker needs server databases (SQLite has a single writer); set TANDEM_WORKERS=1');
  }
  const logger = pino({ level: config.log.level, base: { service: 'tandem', role: 'cluster-primary' } });
  serveClusterMetrics();
  const restarts: number[] = [];
  let stopping = false;

  const fork = (): Worker => {
    const worker = cluster.fork();
    logger.info({ worker: worker.id, pid: worker.process.pid }, 'worker started');
    return worker;
  };

  return new Promise<number>((resolve) => {
    let exitCode = 0;
    cluster.on('exit', (worker, code, signal) => {
      const alive = Object.keys(cluster.workers ?? {}).length;
      if (stopping) {
        if (code !== 0) exitCode = 1;
        if (alive === 0) resolve(exitCode);
        return;
      }
      if (code === 2) {
        // Configuration or policies are invalid: every restart would fail the same way.
        logger.fatal({ worker: worker.id, code }, 'a worker refused the configuration; stopping');
        stop('configuration error', 2);
        return;
      }
      const now = Date.now();
      restarts.push(now);
      while (restarts.length > 0 && (restarts[0] ?? now) < now - RESTART_WINDOW_MS) restarts.shift();
      if (restarts.length > MAX_RESTARTS) {
        logger.fatal({ worker: worker.id, code, signal }, `workers died ${restarts.length} times within ${RESTART_WINDOW_MS / 1000} s; stopping`);
        stop('crash loop', 1);
        return;
      }
      logger.error({ worker: worker.id, code, signal }, 'worker died; starting another');
      setTimeout(() => {
        if (!stopping) fork();
      }, RESTART_DELAY_MS).unref();
    });

    const stop = (reason: string, code: number) => {
      if (stopping) return;
      stopping = true;
      exitCode = code;
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
      logger.info({ reason, workers: workers.length }, 'stopping workers; each drains');
      if (workers.length === 0) resolve(exitCode);
      for (const worker of workers) worker.process.kill('SIGTERM');
      // A worker that does not finish its drain in time is killed.
      setTimeout(() => {
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      }, config.shutdown.drainTimeoutMs + 5_000).unref();
    };
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: killing workers now');
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
        process.exit(1);
      }
      stop(signal, 0);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);

    logger.info({ workers: config.workers }, 'starting workers');
    for (let i = 0; i < config.workers; i++) fork();
  });
}
