import type { DialectAdapter } from './dialects/dialect.js';

/**
 * The secondary's sessions are replication sessions: its foreign-key checks are off, as
 * real replication tools do (the primary already enforced every constraint; the secondary
 * receives the same rows, only in another order — an outbox apply groups tables by name, so
 * `order_lines` reaches the target before `orders`, and a backfill of a child table may run
 * while its parents are still queued). Checks stay on where the role may not turn them off,
 * and the status says so. Each adapter holds its statement (`replicationSessionSql`):
 *
 * - MySQL/MariaDB: `SET SESSION FOREIGN_KEY_CHECKS = 0`.
 * - PostgreSQL: `SET session_replication_role = replica` (superuser, or PostgreSQL 15+ with
 *   `GRANT SET ON PARAMETER session_replication_role`); it also skips ordinary triggers on
 *   the target, as logical replication does.
 * - SQLite: `PRAGMA foreign_keys = OFF`.
 *
 * @see https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SESSION-REPLICATION-ROLE
 * @see https://mariadb.com/kb/en/server-system-variables/#foreign_key_checks
 */
export interface SessionState {
  /** `off` once a session turned them off; `on` with the reason when it could not. */
  foreignKeyChecks: 'on' | 'off' | 'unknown';
  note: string | null;
}

export function makeSessionState(): SessionState {
  return { foreignKeyChecks: 'unknown', note: null };
}

/** Turns a fresh connection's foreign-key checks off with its adapter's statement; never fails the connection. */
export function startReplicationSession(adapter: DialectAdapter, conn: unknown, state: SessionState, done: () => void): void {
  adapter.startReplicationSession(conn, (err) => {
    record(state, err, adapter);
    done();
  });
}

function record(state: SessionState, err: Error | null, adapter: DialectAdapter): void {
  if (!err) {
    state.foreignKeyChecks = 'off';
    state.note = null;
    return;
  }
  state.foreignKeyChecks = 'on';
  const code = (err as { code?: unknown }).code;
  state.note = adapter.foreignKeyChecksNote(String(code ?? err.name));
}
