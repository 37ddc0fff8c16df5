import knexFactory, { type Knex } from 'knex';
import type { Dialect, DialectAdapter } from './dialects/dialect.js';
import { dialectOf, makeAdapter } from './dialects/index.js';
import { makeSessionState, type SessionState } from './replication-session.js';
import { withSessionSetup } from './session-setup.js';

export { DIALECTS, type Dialect } from './dialects/dialect.js';

import type { StoreName } from '../shared/store-name.js';

export type { StoreName } from '../shared/store-name.js';

/** One database Tandem talks to: its pool, its engine's adapter and a printable (password-free) URL. */
export interface Store {
  readonly name: StoreName;
  readonly dialect: Dialect;
  /** Everything engine-specific, for this store in whichever role it plays. */
  readonly adapter: DialectAdapter;
  /** Client sessions: the writes this store acknowledges as a primary, reads, tools. Foreign keys checked. */
  readonly knex: Knex;
  /**
   * Replication sessions (replication-session.ts: foreign-key checks off): the apply and the
   * backfill write this store through them while it is the secondary. A pool of its own, so
   * a store that becomes the primary at a cutover keeps checking its clients' writes; the
   * same pool as `knex` where the engine runs in process (SQLite: one writer, checks off by default).
   */
  readonly replica: Knex;
  readonly displayUrl: string;
  /** Whether the replication sessions' foreign-key checks are off (or why not). */
  readonly session: SessionState;
}

export interface StoreOptions {
  /** knex's own warnings (e.g. a pooled connection that dropped); default: silent. */
  onLog?: (level: 'warn' | 'error' | 'deprecate', message: string) => void;
  statementTimeoutMs: number;
  poolMax: number;
  acquireTimeoutMs: number;
  connectTimeoutMs: number;
}

export { dialectOf };

/** The URL without its password, for logs and status. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, '//$1:***@');
}

export function makeStore(name: StoreName, url: string, options: StoreOptions): Store {
  const adapter = makeAdapter(dialectOf(url));
  const onLog = options.onLog ?? (() => undefined);
  const session = makeSessionState();
  // knex prints its warnings with console.log: route them into Tandem's JSON logs instead,
  // so stdout stays one JSON document per line.
  const log = {
    warn: (message: unknown) => onLog('warn', String(message)),
    error: (message: unknown) => onLog('error', String(message)),
    deprecate: (message: unknown) => onLog('deprecate', String(message)),
    debug: () => undefined,
  };
  const pool = (applicationName: string, replica: boolean): Knex =>
    knexFactory({ ...withSessionSetup(adapter.knexConfig(url, applicationName, options), adapter, replica, session, options.statementTimeoutMs), log });
  // Pools open connections on demand (min 0): a store that is never a secondary never opens a replication session.
  const knex = pool(`tandem-${name}`, adapter.inProcess);
  const replica = adapter.inProcess ? knex : pool(`tandem-${name}-replica`, true);
  return Object.freeze({ name, dialect: adapter.name, adapter, knex, replica, displayUrl: redactUrl(url), session });
}

/** The store as the apply and the backfill write it: through its replication sessions. */
export function replicaView(store: Store): Store {
  return store.replica === store.knex ? store : Object.freeze({ ...store, knex: store.replica });
}

/** Closes both pools. */
export async function destroyStore(store: Store | undefined): Promise<void> {
  if (!store) return;
  await Promise.all([store.knex.destroy(), store.replica === store.knex ? undefined : store.replica.destroy()]);
}
