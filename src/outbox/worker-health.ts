import type { BreakerState, OutboxTableStats } from '../events.js';

export interface WorkerHealthInput {
  now: number;
  /** When the worker last finished a claim round (an idle poll counts). */
  lastRoundAt: number;
  /** When a round last handled rows. */
  lastProgressAt: number;
  /** The outbox as last counted in the primary. */
  tables: readonly OutboxTableStats[];
  /** The secondary's breaker: while it is open, no progress is expected. */
  breaker: BreakerState | undefined;
  stallAfterMs: number;
}

export interface WorkerHealth {
  stalled: boolean;
  /** Why, in words, when stalled. */
  reason: string | null;
  secondsSinceRound: number;
  secondsSinceProgress: number;
}

/**
 * Is the outbox worker stuck? Either no claim round has finished for `stallAfterMs` (every
 * round, even an idle one, ends within a statement deadline, so this is a worker stuck
 * somewhere), or rows older than `stallAfterMs` are pending, nothing was handled for as
 * long, and the secondary's breaker is not open (so nothing explains the wait).
 */
export function workerHealth(input: WorkerHealthInput): WorkerHealth {
  const sinceRound = input.now - input.lastRoundAt;
  const sinceProgress = input.now - input.lastProgressAt;
  const oldest = Math.min(...input.tables.map((t) => t.oldestPendingAt ?? Infinity));
  const waiting = Number.isFinite(oldest) && input.now - oldest > input.stallAfterMs;
  let reason: string | null = null;
  if (sinceRound > input.stallAfterMs) {
    reason = `no claim round finished for ${Math.round(sinceRound / 1000)} s`;
  } else if (waiting && sinceProgress > input.stallAfterMs && input.breaker !== 'open') {
    reason = `rows have waited ${Math.round((input.now - oldest) / 1000)} s and none was handled for ${Math.round(sinceProgress / 1000)} s`;
  }
  return {
    stalled: reason !== null,
    reason,
    secondsSinceRound: Math.round(sinceRound / 100) / 10,
    secondsSinceProgress: Math.round(sinceProgress / 100) / 10,
  };
}
