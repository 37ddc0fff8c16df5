import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { SqlEvent } from '../sql/sql-backend.js';

/** The SQL front's metrics (README "SQL front"), registered on the app's registry. */
export function makeSqlMetrics(registry: Registry) {
  return {
    statements: new Counter({
      name: 'tandem_sql_statements_total',
      help: 'SQL-front statements by kind, policy table (empty: none), store and result (ok, error, refused)',
      labelNames: ['kind', 'table', 'store', 'result'] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'tandem_sql_statement_duration_seconds',
      help: 'SQL-front statement duration (first byte sent to the database to its completion) by kind',
      labelNames: ['kind'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    sessions: new Gauge({
      name: 'tandem_sql_sessions',
      help: 'Open SQL-front client sessions',
      registers: [registry],
    }),
    parseErrors: new Counter({
      name: 'tandem_sql_parse_errors_total',
      help: 'Statements the PostgreSQL parser refused (answered 42601)',
      registers: [registry],
    }),
    refused: new Counter({
      name: 'tandem_sql_refused_total',
      help: 'Statements and connections the SQL front refused, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    switchHolds: new Histogram({
      name: 'tandem_sql_switch_hold_seconds',
      help: 'How long SQL-front writes waited for a table to finish switching its primary before running (cutover.holdMs at most), by table',
      labelNames: ['table'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    readRoutes: new Counter({
      name: 'tandem_sql_read_routes_total',
      help: 'SQL reads of policy tables by the store that served them and why',
      labelNames: ['table', 'store', 'reason'] as const,
      registers: [registry],
    }),
  };
}

export type SqlMetrics = ReturnType<typeof makeSqlMetrics>;

export function recordSqlEvent(m: SqlMetrics, event: SqlEvent): void {
  switch (event.type) {
    case 'sql.statement':
      m.statements.inc({ kind: event.kind, table: event.table, store: event.store, result: event.result });
      m.duration.observe({ kind: event.kind }, event.durationMs / 1000);
      return;
    case 'sql.parse_error':
      m.parseErrors.inc();
      return;
    case 'sql.refused':
      m.refused.inc({ reason: event.reason });
      return;
    case 'sql.session':
      m.sessions.set(event.active);
      return;
    case 'sql.switch_hold':
      m.switchHolds.observe({ table: event.table }, event.waitedMs / 1000);
      return;
    case 'sql.read_route':
      m.readRoutes.inc({ table: event.table, store: event.store, reason: event.reason });
      return;
    default:
      return;
  }
}
