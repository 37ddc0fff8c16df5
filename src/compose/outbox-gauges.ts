import type { OutboxTableStats } from '../events.js';
import type { TandemMetrics } from '../metrics/metrics.js';
import type { WorkerHealth } from '../outbox/worker-health.js';

/** Seconds since the oldest pending row was written (grows while the primary cannot be counted). */
export function lagOf(stats: OutboxTableStats, now: number): number {
  return stats.oldestPendingAt ? Math.max(0, (now - stats.oldestPendingAt) / 1000) : stats.lagSeconds;
}

/**
 * The replication lag is recomputed at every scrape from the oldest pending row last
 * counted, so it keeps growing while the primary cannot be counted (a frozen figure would
 * say "healthy"); the worker's stall gauges come from worker-health.ts.
 */
export function refreshOutboxGaugesOnCollect(metrics: TandemMetrics, stats: () => readonly OutboxTableStats[], worker: () => WorkerHealth): void {
  const refresh = () => {
    const now = Date.now();
    for (const t of stats()) metrics.lag.set({ table: t.table }, lagOf(t, now));
    const w = worker();
    metrics.workerStalled.set(w.stalled ? 1 : 0);
    metrics.workerSinceRound.set(w.secondsSinceRound);
  };
  for (const gauge of [metrics.lag, metrics.workerStalled, metrics.workerSinceRound]) {
    (gauge as unknown as { collect?: () => void }).collect = refresh;
  }
}
