import type { TandemMetrics } from '../metrics/metrics.js';
import type { ConsistencyWindow } from '../read/consistency-window.js';
import type { ReadRouting } from '../read/read-routing.js';

/**
 * Figures kept in memory (read-target percentage, consistency ratio and samples) are set
 * when the registry is read — a scrape here, or the cluster primary collecting from every
 * worker — through prom-client's `collect` hook of each gauge.
 */
export function refreshMemoryGaugesOnCollect(metrics: TandemMetrics, tables: readonly string[], routing: ReadRouting, consistency: ConsistencyWindow): void {
  const refresh = () => {
    for (const name of tables) {
      metrics.readTargetPercent.set({ table: name }, routing.percent(name, 'readTarget'));
      const { ratio, samples } = consistency.ratio(name);
      metrics.consistency.set({ table: name }, ratio);
      metrics.consistencySamples.set({ table: name }, samples);
    }
  };
  for (const gauge of [metrics.readTargetPercent, metrics.consistency, metrics.consistencySamples]) {
    (gauge as unknown as { collect?: () => void }).collect = refresh;
  }
}
