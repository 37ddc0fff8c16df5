import type { Store } from '../db/store.js';
import { coerceError } from '../errors.js';
import type { FlagSource } from '../flags/flag-source.js';

/**
 * `/readyz`: both pools answer `SELECT 1` within a second, flags are loaded and the app
 * accepts requests. A failed flag refresh is reported, not a failure (the last flags serve).
 */
export async function checkHealth(
  stores: { source?: Store | undefined; target?: Store | undefined },
  flags: FlagSource | undefined,
  accepting: boolean,
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
  return { ready: source === 'ok' && target === 'ok' && synchronized && accepting, checks: { source, target, flags: flagCheck } };
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
