import type { Store } from '../db/store.js';
import { coerceError } from '../errors.js';
import type { FlagSource } from '../flags/flag-source.js';
import type { BreakerState } from '../events.js';
import type { WorkerHealth } from '../outbox/worker-health.js';

/**
 * `/readyz` (DESIGN §7): this instance can take writes — the primary answers `SELECT 1`
 * within a second, flags are loaded and the app accepts requests. The secondary's health and
 * the outbox worker's are reported but are no reason to take a working Tandem out of a load
 * balancer (during a target outage writes are still accepted, queued in the outbox). A failed
 * flag refresh is reported, not a failure (the last flags serve).
 */
export async function checkHealth(
  stores: { source?: Store | undefined; target?: Store | undefined },
  flags: FlagSource | undefined,
  accepting: boolean,
  reported: { targetBreaker?: BreakerState | undefined; worker?: WorkerHealth | undefined } = {},
): Promise<{ ready: boolean; checks: Record<string, unknown> }> {
  const ping = async (store: Store | undefined) => {
    if (!store) return 'not started';
    try {
      await withTimeout(store.knex.raw('SELECT 1'), 1_000);
      return 'ok';
    } catch (error) {
      return `unreachable: ${coerceError(error).message}`;
    }
  };
  const [source, target] = await Promise.all([ping(stores.source), ping(stores.target)]);
  const lastError = flags?.lastError();
  const synchronized = flags?.synchronized() === true;
  const flagCheck = synchronized
    ? lastError
      ? `ok, but the last refresh failed (serving the last flags): ${lastError}`
      : 'ok'
    : `not synchronized${lastError ? `: ${lastError}` : ''}`;
  const worker = reported.worker?.stalled ? `stalled: ${reported.worker.reason}` : 'ok';
  return {
    ready: source === 'ok' && synchronized && accepting,
    checks: { source, flags: flagCheck, secondary: { target, breaker: reported.targetBreaker ?? null }, worker },
  };
}

function withTimeout<T>(promise: PromiseLike<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
    Promise.resolve(promise).then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(coerceError(e));
      },
    );
  });
}
