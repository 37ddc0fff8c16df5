import type { TandemEvent } from '../events.js';

/** The series kept per table, one value per sample (uPlot's columnar shape). */
export const HISTORY_SERIES = [
  'sourceWritesPerSecond',
  'targetWritesPerSecond',
  'applied',
  'skippedStale',
  'applyFailed',
  'lagSeconds',
  'consistency',
  'targetErrorRate',
] as const;
export type HistorySeries = (typeof HISTORY_SERIES)[number];

export interface TableHistory {
  table: string;
  intervalSeconds: number;
  /** Sample times, Unix seconds. */
  t: number[];
  series: Record<HistorySeries, Array<number | null>>;
}

export interface HistoryRingOptions {
  /** Seconds between samples. Default 5. */
  intervalMs?: number;
  /** Samples kept per table. Default 720 (an hour at 5 s). */
  points?: number;
  now?: () => number;
}

interface Counters {
  sourceWrites: number;
  targetWrites: number;
  applied: number;
  skippedStale: number;
  applyFailed: number;
  targetOk: number;
  targetErrors: number;
}

interface TableRing {
  counters: Counters;
  lagSeconds: number;
  consistency: number | null;
  t: number[];
  series: Record<HistorySeries, Array<number | null>>;
}

const zero = (): Counters => ({ sourceWrites: 0, targetWrites: 0, applied: 0, skippedStale: 0, applyFailed: 0, targetOk: 0, targetErrors: 0 });

/**
 * A small in-process history, so the console draws the last hour without Prometheus: it
 * counts events between samples and keeps a fixed number of samples per table (oldest
 * dropped). Memory is bounded: tables × points × series numbers.
 */
export class HistoryRing {
  readonly intervalMs: number;
  private readonly points: number;
  private readonly now: () => number;
  private readonly tables = new Map<string, TableRing>();
  private timer: NodeJS.Timeout | undefined;

  constructor(tables: Iterable<string>, options: HistoryRingOptions = {}) {
    this.intervalMs = options.intervalMs ?? 5_000;
    this.points = options.points ?? 720;
    this.now = options.now ?? Date.now;
    for (const table of tables) {
      const series = Object.fromEntries(HISTORY_SERIES.map((s) => [s, [] as Array<number | null>])) as TableRing['series'];
      this.tables.set(table, { counters: zero(), lagSeconds: 0, consistency: null, t: [], series });
    }
  }

  /** Counts one event (subscribe this to the event bus). */
  observe(event: TandemEvent): void {
    switch (event.type) {
      case 'write': {
        const ring = this.tables.get(event.table);
        if (!ring || event.result !== 'ok') return;
        if (event.store === 'source') ring.counters.sourceWrites++;
        else ring.counters.targetWrites++;
        return;
      }
      case 'apply': {
        const ring = this.tables.get(event.table);
        if (!ring) return;
        if (event.result === 'applied') {
          ring.counters.applied += event.count;
          if (event.store === 'target') ring.counters.targetWrites += event.count;
          else ring.counters.sourceWrites += event.count;
        } else if (event.result === 'skipped_stale') ring.counters.skippedStale += event.count;
        else ring.counters.applyFailed += event.count;
        if (event.store === 'target') {
          if (event.result === 'failed') ring.counters.targetErrors += event.count;
          else ring.counters.targetOk += event.count;
        }
        return;
      }
      case 'read': {
        const ring = this.tables.get(event.table);
        if (!ring || event.store !== 'target') return;
        if (event.result === 'ok') ring.counters.targetOk++;
        else ring.counters.targetErrors++;
        return;
      }
      case 'outbox.stats':
        for (const s of event.tables) {
          const ring = this.tables.get(s.table);
          if (ring) ring.lagSeconds = s.lagSeconds;
        }
        return;
      case 'consistency': {
        const ring = this.tables.get(event.table);
        if (ring) ring.consistency = event.ratio;
        return;
      }
      default:
        return;
    }
  }

  /** Closes the current interval: one sample per table. */
  sample(): void {
    const now = this.now();
    for (const ring of this.tables.values()) {
      const c = ring.counters;
      const seconds = this.intervalMs / 1000;
      const targetOps = c.targetOk + c.targetErrors;
      const values: Record<HistorySeries, number | null> = {
        sourceWritesPerSecond: round(c.sourceWrites / seconds),
        targetWritesPerSecond: round(c.targetWrites / seconds),
        applied: c.applied,
        skippedStale: c.skippedStale,
        applyFailed: c.applyFailed,
        lagSeconds: round(ring.lagSeconds),
        consistency: ring.consistency,
        targetErrorRate: targetOps > 0 ? round(c.targetErrors / targetOps) : null,
      };
      ring.t.push(Math.round(now / 1000));
      for (const name of HISTORY_SERIES) ring.series[name].push(values[name]);
      if (ring.t.length > this.points) {
        ring.t.shift();
        for (const name of HISTORY_SERIES) ring.series[name].shift();
      }
      ring.counters = zero();
    }
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  history(table: string): TableHistory | undefined {
    const ring = this.tables.get(table);
    if (!ring) return undefined;
    const series = Object.fromEntries(HISTORY_SERIES.map((s) => [s, [...ring.series[s]]])) as TableHistory['series'];
    return { table, intervalSeconds: this.intervalMs / 1000, t: [...ring.t], series };
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
