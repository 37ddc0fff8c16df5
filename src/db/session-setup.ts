import type { Knex } from 'knex';
import type { DialectAdapter } from './dialects/dialect.js';
import { addQueryDeadline } from './query-deadline.js';
import { startReplicationSession, type SessionState } from './replication-session.js';

type Done = (err: Error | null, conn: unknown) => void;

/**
 * Chains Tandem's own session set-up after the adapter's `afterCreate`: the replication
 * session of the target (FK checks off, replication-session.ts) and the client-side statement
 * deadline of every network connection (query-deadline.ts: `statementTimeoutMs` + 1 s).
 */
export function withSessionSetup(config: Knex.Config, adapter: DialectAdapter, replica: boolean, session: SessionState, statementTimeoutMs: number): Knex.Config {
  const pool = (config.pool ?? {}) as Knex.PoolConfig & { afterCreate?: (conn: unknown, done: Done) => void };
  const original = pool.afterCreate;
  const finish = (conn: unknown, done: Done) => {
    // In process: no network to lose.
    if (!adapter.inProcess) addQueryDeadline(conn, statementTimeoutMs + 1_000, (c) => adapter.destroyConnection(c));
    if (!replica) return done(null, conn);
    startReplicationSession(adapter, conn, session, () => done(null, conn));
  };
  return {
    ...config,
    pool: {
      ...pool,
      afterCreate: (conn: unknown, done: Done) => {
        if (!original) return finish(conn, done);
        original(conn, (err, created) => (err ? done(err, created) : finish(created ?? conn, done)));
      },
    },
  };
}
