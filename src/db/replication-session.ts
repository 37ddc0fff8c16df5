import type { Dialect } from './dialects/dialect.js';

/**
 * The secondary's sessions are replication sessions: its foreign-key checks are off, as
 * real replication tools do (the primary already enforced every constraint; the secondary
 * receives the same rows, only in another order — an outbox apply groups tables by name, so
 * `order_lines` reaches the target before `orders`, and a backfill of a child table may run
 * while its parents are still queued). Checks stay on where the role may not turn them off,
 * and the status says so.
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

export function replicationSessionSql(dialect: Dialect): string {
  if (dialect === 'pg') return 'SET session_replication_role = replica';
  if (dialect === 'mysql') return 'SET SESSION FOREIGN_KEY_CHECKS = 0';
  return 'PRAGMA foreign_keys = OFF';
}

/** Runs the statement on a fresh callback-style connection (pg, mysql2); never fails the connection. */
export function startReplicationSession(dialect: Dialect, conn: unknown, state: SessionState, done: () => void): void {
  const sql = replicationSessionSql(dialect);
  (conn as { query(sql: string, cb: (err: Error | null) => void): void }).query(sql, (err) => {
    record(state, err, dialect);
    done();
  });
}

/** SQLite's synchronous connection (better-sqlite3). */
export function startSqliteReplicationSession(conn: { pragma(sql: string): unknown }, state: SessionState): void {
  try {
    conn.pragma('foreign_keys = OFF');
    record(state, null, 'sqlite');
  } catch (error) {
    record(state, error as Error, 'sqlite');
  }
}

function record(state: SessionState, err: Error | null, dialect: Dialect): void {
  if (!err) {
    state.foreignKeyChecks = 'off';
    state.note = null;
    return;
  }
  state.foreignKeyChecks = 'on';
  const code = (err as { code?: unknown }).code;
  state.note =
    dialect === 'pg'
      ? `foreign-key checks stay on: this role may not set session_replication_role (${String(code ?? err.name)}); make it superuser or GRANT SET ON PARAMETER session_replication_role (PostgreSQL 15+), or expect child rows queued until their parents arrive`
      : `foreign-key checks stay on: ${String(code ?? err.name)}`;
}
