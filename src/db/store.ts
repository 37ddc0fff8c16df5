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
  readonly knex: Knex;
  readonly displayUrl: string;
  /** The target's sessions are replication sessions (replication-session.ts): whether its FK checks are off. */
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
  const knex = knexFactory({
    // The target only ever receives replicated rows (a cutover is refused by this build).
    ...withSessionSetup(adapter.knexConfig(url, `tandem-${name}`, options), adapter, name === 'target', session, options.statementTimeoutMs),
    log: {
      warn: (message: unknown) => onLog('warn', String(message)),
      error: (message: unknown) => onLog('error', String(message)),
      deprecate: (message: unknown) => onLog('deprecate', String(message)),
      debug: () => undefined,
    },
  });
  return Object.freeze({ name, dialect: adapter.name, adapter, knex, displayUrl: redactUrl(url), session });
}
