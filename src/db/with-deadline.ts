import type { Knex } from 'knex';
import type { DeadlineRunner } from './dialects/dialect.js';
import type { Store } from './store.js';

/** Thrown when a unit of work on a store ran past its deadline and its connection was cut. */
export class DeadlineError extends Error {
  readonly code = 'ETANDEMDEADLINE';
  constructor(store: string, ms: number) {
    super(`${store}: no answer within ${ms} ms; connection destroyed`);
    this.name = 'DeadlineError';
  }
}

interface PoolClient {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<void> | void;
}

/**
 * Runs `work` on a pooled connection that must finish within `ms`. Past the deadline the
 * connection's socket is destroyed, so a query stuck on a black-holed network fails at once
 * instead of pinning the connection until TCP gives up (minutes); the pool replaces it.
 */
export async function withDeadlineConnection<T>(store: Store, ms: number, work: (connection: unknown) => Promise<T>): Promise<T> {
  const client = store.knex.client as PoolClient;
  let timedOut = false;
  let connection: unknown;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      if (connection !== undefined) store.adapter.destroyConnection(connection);
      reject(new DeadlineError(store.name, ms));
    }, ms);
    timer.unref();
  });
  deadline.catch(() => undefined);
  const acquiring = client.acquireConnection();
  try {
    connection = await Promise.race([acquiring, deadline]);
  } catch (error) {
    clearTimeout(timer);
    // The pool may still hand us a connection later: give it straight back.
    acquiring.then((c) => client.releaseConnection(c)).catch(() => undefined);
    throw error;
  }
  try {
    const running = work(connection);
    running.catch(() => undefined); // after a deadline its rejection is expected and unobserved
    return await Promise.race([running, deadline]);
  } finally {
    clearTimeout(timer);
    if (timedOut) store.adapter.destroyConnection(connection);
    await client.releaseConnection(connection);
  }
}

/** A transaction with a deadline (applies). An in-process engine (SQLite) runs a plain transaction. */
export function withDeadlineTransaction<T>(store: Store, ms: number, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  if (store.adapter.inProcess) return store.knex.transaction(work);
  return withDeadlineConnection(store, ms, (connection) => store.knex.transaction(work, { connection }));
}

/** One query with a deadline, no transaction (target and shadow reads). */
export async function withDeadlineQuery<T>(store: Store, ms: number, build: (knex: Knex) => Knex.QueryBuilder | Knex.Raw): Promise<T> {
  if (store.adapter.inProcess) return (await build(store.knex)) as T;
  return withDeadlineConnection(store, ms, (connection) => Promise.resolve(build(store.knex).connection(connection as never) as unknown as Promise<T>));
}

/** Deadline-bound work on one store, as the adapters' versioned apply takes it. */
export function deadlineRunner(store: Store, ms: number): DeadlineRunner {
  return {
    connection: (work) => withDeadlineConnection(store, ms, work),
    transaction: (work) => withDeadlineTransaction(store, ms, work),
  };
}
