import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { TandemConfig } from '../config/schema.js';
import type { PrimaryDirectory } from '../cutover/primary-directory.js';
import type { StageReconciler } from '../cutover/stage-reconciler.js';
import type { Store } from '../db/store.js';
import type { EventBus } from '../events.js';
import { TandemError } from '../errors.js';
import type { Policy } from '../policy/policy.js';
import type { ReadRouting } from '../read/read-routing.js';
import { makeSqlBackend, type SqlBackendDeps, type SqlBackendParts } from '../sql/make-sql-backend.js';
import { runSqlOverHttp } from '../sql/run-sql.js';
import type { SqlBackend, SqlEvent } from '../sql/sql-backend.js';
import { SqlFront } from '../sql/sql-front.js';
import { recordSqlEvent, type SqlMetrics } from './sql-metrics.js';

export interface SqlFrontParts {
  /** The listener, when `sql.port` is set. */
  front: SqlFront | undefined;
  /** POST /v1/sql's runner. */
  runHttp: typeof runSqlOverHttp extends (b: SqlBackend, ...rest: infer A) => infer R ? (...args: A) => R : never;
  close(): Promise<void>;
}

export interface SqlFrontDeps {
  config: Readonly<TandemConfig>;
  source: Store;
  target: Store;
  policies: ReadonlyMap<string, Policy>;
  reconciler: StageReconciler;
  /** Each table's primary, as the HTTP write path picks it. */
  directory: PrimaryDirectory;
  routing: ReadRouting;
  /** Wakes both outbox workers (a transaction with captured writes committed; with the target as primary, the reverse worker drains it). */
  poke: () => void;
  metrics: SqlMetrics;
  logger: Logger;
  /** The engine's events: the SQL front's shadow reads feed the consistency ratio and the brake as the HTTP path's do. */
  events: EventBus;
}

/**
 * The SQL front (DESIGN §13) wired to the engine: PostgreSQL primaries only. Undefined when
 * the primary speaks another engine and no SQL port is asked for; an error when one is.
 */
export async function makeSqlFront(d: SqlFrontDeps): Promise<SqlFrontParts | undefined> {
  const { config, source, target } = d;
  if (!source.adapter.speaksPostgresWire) {
    if (config.sql.port === undefined) return undefined;
    throw new TandemError(
      'config_invalid',
      500,
      `sql.port is set but the primary (source) is ${source.dialect}: the SQL front speaks PostgreSQL and needs a PostgreSQL primary (the HTTP API serves other engines)`,
    );
  }
  const emit = (event: SqlEvent) => {
    if (event.type === 'sql.shadow') {
      const { table, result, key, shadowStore, error } = event;
      d.events.emit({ type: 'shadow', table, result, key, shadowStore, columns: ['(the SELECT answer)'], ...(error ? { error } : {}) });
      return;
    }
    recordSqlEvent(d.metrics, event);
    logSqlEvent(d.logger, event);
  };
  const backendDeps = (warmUp: boolean): SqlBackendDeps => ({
    sourceUrl: config.source.url,
    targetUrl: target.adapter.speaksPostgresWire ? config.target.url : undefined,
    otherTarget: target.adapter.speaksPostgresWire ? undefined : { knex: target.knex, dialect: target.dialect, translatesReads: target.adapter.translatesReads },
    policies: [...d.policies.values()].map((p) => ({
      name: p.name,
      sourceTable: p.sourceTable,
      targetTable: p.targetTable,
      primaryKey: p.primaryKey,
      targetPrimaryKey: p.targetPrimaryKey,
      targetColumns: new Map([...p.columns.values()].map((c) => [c.name, c.targetName])),
    })),
    poolMax: config.sql.poolMax,
    statementTimeoutMs: config.sql.statementTimeoutMs,
    connectTimeoutMs: config.db.connectTimeoutMs,
    targetDialect: target.dialect,
    dualWriting: (table) => (d.reconciler.get(table)?.stage ?? 'dual-write') !== 'source-only',
    // Mid-switch the table still belongs to the store it is leaving (as for reads): there the
    // rewrite's state-row check fails a write while the row says frozen.
    primaryOf: (table) => {
      const view = d.directory.get(table);
      return view?.primary ?? view?.switching?.from ?? 'source';
    },
    refresh: async (tables) => {
      await Promise.all(tables.map((t) => d.directory.refresh(t))).catch(() => undefined);
    },
    holdMs: config.cutover.holdMs,
    // After a cutover the target's state row records the staleness of the source (its secondary).
    sourceStale: (table) => {
      const view = d.directory.get(table);
      return view?.primary === 'target' && view.target.stale;
    },
    routeRead: (table, stickyKey) => {
      const policy = d.policies.get(table);
      if (!policy) return { store: 'source', reason: 'unknown table', shadow: false };
      const decision = d.routing.decide(policy, { stickyKey, rowKey: undefined });
      return { store: decision.store, reason: decision.reason, shadow: decision.shadow };
    },
    committed: d.poke,
    emit,
    warmUp,
  });
  if (config.sql.port === undefined) return lazySqlOverHttp(() => makeSqlBackend(backendDeps(false)), d.logger);
  const built = await makeSqlBackend(backendDeps(true));
  const front = new SqlFront(built.backend, {
    host: config.sql.host,
    port: config.sql.port,
    users: config.sql.users,
    maxSessions: config.sql.maxSessions,
    maxMessageBytes: config.sql.maxMessageBytes,
    parameters: built.parameters,
    ...(config.sql.tls ? { tls: { context: tlsContext(config.sql.tls), required: config.sql.tls.required } } : {}),
  });
  return { front, runHttp: (statements) => runSqlOverHttp(built.backend, statements), close: built.close };
}

/**
 * `POST /v1/sql` without a SQL port: the parser (a WebAssembly module) and the SQL pools are
 * built by the first request, not at start, so a server that never gets one does not carry
 * them (30 MB of RSS loaded, about 155 MB once warm; bench/RESULTS.md, "Memory"). Without the
 * warm-up the first request waits for the load only (0.4 s). A build that fails (the primary
 * unreachable) answers 503 and the next request tries again.
 */
function lazySqlOverHttp(build: () => Promise<SqlBackendParts>, logger: Logger): SqlFrontParts {
  let built: Promise<SqlBackendParts> | undefined;
  let closed = false;
  const backend = (): Promise<SqlBackendParts> => {
    const started = performance.now();
    built ??= build().then(
      async (parts) => {
        if (closed) {
          await parts.close();
          throw new TandemError('primary_unavailable', 503, 'Tandem is shutting down', { headers: { 'Retry-After': '1' } });
        }
        logger.info({ ms: Math.round(performance.now() - started) }, 'sql over http: parser loaded, pools open');
        return parts;
      },
      (error: unknown) => {
        built = undefined;
        throw new TandemError('primary_unavailable', 503, `SQL over HTTP could not start: ${(error as Error).message}`, { cause: error, headers: { 'Retry-After': '1' } });
      },
    );
    return built;
  };
  return {
    front: undefined,
    runHttp: async (statements) => runSqlOverHttp((await backend()).backend, statements),
    async close() {
      closed = true;
      await (await built?.catch(() => undefined))?.close();
    },
  };
}

/** The SQL front's certificate and key, read once at start; an unreadable or invalid file stops the start with its path. */
function tlsContext(files: { cert: string; key: string }): tls.SecureContext {
  try {
    return tls.createSecureContext({ cert: readFileSync(files.cert), key: readFileSync(files.key) });
  } catch (error) {
    throw new TandemError('config_invalid', 500, `sql.tls: cannot use the certificate ${files.cert} with the key ${files.key}: ${(error as Error).message}`, { cause: error });
  }
}

/** SQL-front log lines: one per statement with its fingerprint (never its text or parameter values). */
function logSqlEvent(logger: Logger, event: SqlEvent): void {
  switch (event.type) {
    case 'sql.statement': {
      if (event.result === 'ok' && !logger.isLevelEnabled('info')) return;
      const fields = {
        session: event.session,
        via: event.via,
        kind: event.kind,
        ...(event.table ? { table: event.table } : {}),
        store: event.store,
        result: event.result,
        ms: Math.round(event.durationMs * 100) / 100,
        fingerprint: event.fingerprint,
        ...(event.sqlstate ? { sqlstate: event.sqlstate } : {}),
        ...(event.reason ? { reason: event.reason } : {}),
      };
      (event.result === 'refused' ? logger.warn : logger.info).call(logger, fields, 'sql statement');
      return;
    }
    case 'sql.session':
      logger.info({ session: event.session, phase: event.phase, user: event.user, reason: event.reason, active: event.active }, 'sql session');
      return;
    case 'sql.switch_hold':
      (event.settled ? logger.info : logger.warn).call(
        logger,
        { table: event.table, waitedMs: event.waitedMs },
        event.settled ? 'sql write waited for a primary switch' : 'sql write waited cutover.holdMs for a primary switch and runs anyway',
      );
      return;
    case 'sql.error':
      logger.error({ session: event.session, err: event.error.message }, 'sql front: primary connection failed');
      return;
    default:
      return;
  }
}
