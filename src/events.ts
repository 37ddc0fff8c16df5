import type { StoreName } from './shared/store-name.js';
import type { VerifyReport } from './shared/verify-report.js';

export const BREAKER_STATES = ['closed', 'half-open', 'open'] as const;
export type BreakerState = (typeof BREAKER_STATES)[number];

export const STAGES = ['source-only', 'dual-write', 'target-primary', 'target-only'] as const;
export type Stage = (typeof STAGES)[number];

export interface OutboxTableStats {
  table: string;
  pending: number;
  dead: number;
  /** Age of the oldest pending row in seconds, 0 when none. */
  lagSeconds: number;
  /** When the oldest pending row was written (ms since epoch), null when none: the lag keeps growing from it. */
  oldestPendingAt?: number | null;
}

/**
 * Everything domain code reports. Only `app.ts` turns these into log lines and metrics,
 * so no domain module imports pino or prom-client.
 */
export type TandemEvent =
  | {
      type: 'http.request';
      requestId: string;
      method: string;
      route: string;
      table?: string;
      status: number;
      durationMs: number;
      code?: string;
      message?: string;
      error?: Error;
    }
  /** durationMs: the primary transaction, from its first try to its commit (or its last failure). */
  | { type: 'write'; table: string; store: StoreName; result: 'ok' | 'error'; op: string; requestId?: string; durationMs?: number }
  | { type: 'read'; table: string; store: StoreName; result: 'ok' | 'fallback' | 'error'; error?: Error }
  | {
      type: 'shadow';
      table: string;
      result: 'match' | 'mismatch' | 'error';
      key?: string;
      columns?: string[];
      shadowStore?: StoreName;
      error?: Error;
    }
  | { type: 'consistency'; table: string; ratio: number; samples: number }
  | {
      type: 'brake';
      table: string;
      active: boolean;
      signal?: BrakeSignal;
      value?: number;
      threshold?: number;
      reason: string;
    }
  | { type: 'verify'; report: VerifyReport }
  | { type: 'brake.warn'; table: string; signal: BrakeSignal; value: number; threshold: number }
  | {
      type: 'apply';
      table: string;
      store: StoreName;
      result: 'applied' | 'skipped_stale' | 'failed';
      count: number;
      /** A failure that heals by itself once other rows arrive (a child before its parent): no target error for the brake. */
      ordering?: boolean;
    }
  | { type: 'apply.failed'; store: StoreName; rows: number; error: Error; willRetry: boolean; path: 'inline' | 'worker' }
  | { type: 'outbox.dead'; table: string; rowKey: string; id: string; error: string }
  /** The target's schema refused a table's rows (missing table or column, privilege): retried at the longest backoff. */
  | { type: 'apply.schema'; table: string; error: string }
  /** Rows of a table without a policy were set aside (status `orphan`). */
  | { type: 'outbox.orphaned'; table: string; rows: number }
  | { type: 'outbox.stats'; tables: OutboxTableStats[] }
  | { type: 'breaker'; store: StoreName; state: BreakerState }
  | { type: 'stage'; table: string; stage: Stage; stale: boolean; reason: string }
  | {
      type: 'cutover.step';
      table: string;
      from: StoreName;
      to: StoreName;
      /** frozen, drained, identity, promoted, released */
      step: string;
      phase: 'started' | 'step' | 'resumed' | 'done';
      replica: string;
      /** Whole switch duration (phase done). */
      ms?: number;
    }
  | { type: 'cutover.switched'; table: string; to: StoreName; epoch: number; ms: number; stage: Stage }
  | { type: 'cutover.identity'; table: string; store: StoreName; oldMax: string | null; movedTo: string | null }
  | { type: 'cutover.abandoned'; table: string; from: StoreName; reason: string }
  | { type: 'cutover.refused'; table: string; to: StoreName; reason: string }
  | { type: 'reverse.stats'; tables: OutboxTableStats[] }
  | { type: 'flags.loaded'; origin: 'unleash' | 'file'; features: number }
  | { type: 'flags.error'; origin: 'unleash' | 'file'; error: Error }
  | { type: 'flag.conflict'; table: string; reason: string }
  | { type: 'background.error'; component: string; error: Error }
  | { type: 'lifecycle'; phase: string; detail?: Record<string, unknown> }
  | { type: 'driver'; store: StoreName; level: 'warn' | 'error' | 'deprecate'; message: string };

export const BRAKE_SIGNALS = ['error_rate', 'consistency', 'lag', 'latency'] as const;
export type BrakeSignal = (typeof BRAKE_SIGNALS)[number];


export interface EventSink {
  emit(event: TandemEvent): void;
}

/** A tiny synchronous fan-out. A throwing listener never breaks the emitter. */
export class EventBus implements EventSink {
  private readonly listeners: Array<(event: TandemEvent) => void> = [];

  on(listener: (event: TandemEvent) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  emit(event: TandemEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A broken subscriber (a log transport, say) must not break a write.
      }
    }
  }
}
