import CircuitBreaker from 'opossum';
import { classifyDbError, isClientDataError, isSchemaError } from '../db/classify-error.js';
import type { StoreName } from '../db/store.js';
import type { BreakerState, EventSink } from '../events.js';

export interface BreakerOptions {
  timeoutMs: number;
  errorThresholdPercentage: number;
  resetTimeoutMs: number;
  volumeThreshold: number;
  rollingWindowMs: number;
  /** Failures in a row that open the breaker whatever the window's success count. */
  consecutiveFailures: number;
  /** Deadline of the worker's batches (a trial is one); sets how long half-open may last. */
  batchTimeoutMs?: number;
}

export interface RunOptions {
  /**
   * May this call be the trial of a half-open breaker? Requests say no: the outbox worker
   * sends the trials, so no client waits out a deadline on a store that just failed.
   */
  trial?: boolean;
}

/** A circuit breaker in front of one store. It runs whatever thunk it is fired with. */
export interface StoreBreaker {
  readonly store: StoreName;
  run<T>(work: () => Promise<T>, options?: RunOptions): Promise<T>;
  state(): BreakerState;
  shutdown(): void;
}

function openError(store: StoreName): Error {
  const error = new Error(`Breaker is open: ${store} is not being called`) as Error & { code: string };
  error.code = 'EOPENBREAKER';
  return error;
}

export function isBreakerOpenError(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'EOPENBREAKER';
}

/**
 * A breaker must always leave half-open. Its trial belongs to the outbox worker; when no
 * trial is taken (the worker is stuck on something else) or the trial never answers, the
 * breaker would stay half-open for good, refusing every request's apply. Past `ms` it
 * opens again, so the reset timer brings a fresh half-open and a fresh poke of the worker.
 */
function leaveHalfOpenByDeadline(breaker: CircuitBreaker, store: StoreName, ms: number, events: EventSink): void {
  let timer: NodeJS.Timeout | undefined;
  const clear = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
  breaker.on('halfOpen', () => {
    clear();
    timer = setTimeout(() => {
      timer = undefined;
      if (!breaker.halfOpen) return;
      events.emit({
        type: 'background.error',
        component: 'breaker.trial',
        error: new Error(`${store}: no trial call answered within ${ms} ms of half-open; opened again`),
      });
      breaker.open();
    }, ms);
    timer.unref();
  });
  breaker.on('close', clear);
  breaker.on('open', clear);
  breaker.on('shutdown', clear);
}

export function makeStoreBreaker(store: StoreName, options: BreakerOptions, events: EventSink): StoreBreaker {
  // opossum writes its defaults into the options object: hand it a fresh one.
  const breaker = new CircuitBreaker(async (work: () => Promise<unknown>) => work(), {
    // The work carries its own deadline, which destroys a stuck connection; opossum's timeout
    // would only abandon the promise, so it is off.
    timeout: false,
    errorThresholdPercentage: options.errorThresholdPercentage,
    resetTimeout: options.resetTimeoutMs,
    volumeThreshold: options.volumeThreshold,
    rollingCountTimeout: options.rollingWindowMs,
    rollingCountBuckets: 10,
    // A constraint or data error is about the row, a schema error about one table, not the
    // store: neither may open the breaker (and hold back every other table).
    errorFilter: (error: unknown) => {
      const kind = classifyDbError(error);
      return isClientDataError(kind) || isSchemaError(kind);
    },
  });
  breaker.on('open', () => events.emit({ type: 'breaker', store, state: 'open' }));
  breaker.on('halfOpen', () => events.emit({ type: 'breaker', store, state: 'half-open' }));
  breaker.on('close', () => events.emit({ type: 'breaker', store, state: 'closed' }));
  // The error rate alone needs more failures the more successes the window holds, so a store
  // that relapses right after a busy recovery would keep clients waiting out deadlines for
  // longer. Failures in a row bound that.
  let inARow = 0;
  breaker.on('success', () => {
    inARow = 0;
  });
  breaker.on('failure', () => {
    inARow += 1;
    if (inARow >= options.consecutiveFailures && breaker.closed) breaker.open();
  });
  breaker.on('open', () => {
    inARow = 0;
  });
  leaveHalfOpenByDeadline(breaker, store, Math.max(options.timeoutMs, options.batchTimeoutMs ?? 0) + options.timeoutMs, events);
  return {
    store,
    run: <T>(work: () => Promise<T>, runOptions: RunOptions = {}) => {
      // Refuse here, not in opossum: it would count each refused call as a fire, diluting
      // the failure rate so the breaker fails to re-open when the store relapses. Refused:
      // open, or half-open with the one trial already taken (or not ours to take).
      const mayPass = breaker.closed || (breaker.pendingClose && runOptions.trial !== false);
      if (!mayPass) return Promise.reject(openError(store));
      return breaker.fire(work) as Promise<T>;
    },
    state: () => (breaker.opened ? 'open' : breaker.halfOpen ? 'half-open' : 'closed'),
    shutdown: () => breaker.shutdown(),
  };
}
