import knexFactory, { type Knex } from 'knex';
import type { Dialect, DialectAdapter } from './dialects/dialect.js';
import { dialectOf, makeAdapter } from './dialects/index.js';

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
  // knex prints its warnings with console.log: route them into Tandem's JSON logs instead,
  // so stdout stays one JSON document per line.
  const knex = knexFactory({
    ...adapter.knexConfig(url, `tandem-${name}`, options),
    log: {
      warn: (message: unknown) => onLog('warn', String(message)),
      error: (message: unknown) => onLog('error', String(message)),
      deprecate: (message: unknown) => onLog('deprecate', String(message)),
      debug: () => undefined,
    },
  });
  return Object.freeze({ name, dialect: adapter.name, adapter, knex, displayUrl: redactUrl(url) });
}
