import type { Logger } from 'pino';
import type { TandemEvent } from '../events.js';
import { describeDbError } from '../db/describe-error.js';
import { POLLED_ROUTES } from '../http/console/console-routes.js';
import type { Policy } from '../policy/policy.js';
import { shownKey } from '../policy/row-key.js';

/**
 * One log line per event worth a line. Values of rows never appear; tables do, and keys as
 * their policy allows (`policyOf`: a digest in place of a key with a redacted column).
 */
export function logEvent(logger: Logger, event: TandemEvent, policyOf: (table: string) => Policy | undefined = () => undefined): void {
  switch (event.type) {
    case 'http.request': {
      // One event per request: build nothing when the line would not be written.
      if (event.status < 500 && !logger.isLevelEnabled('info')) return;
      const fields = {
        reqId: event.requestId,
        method: event.method,
        route: event.route,
        ...(event.table ? { table: event.table } : {}),
        status: event.status,
        ms: Math.round(event.durationMs * 10) / 10,
        ...(event.code ? { code: event.code } : {}),
      };
      // The cause's text may quote row values (knex prefixes the statement): code and kind only.
      if (event.status >= 500) logger.error({ ...fields, err: event.error ? describeDbError(event.error.cause ?? event.error) : undefined, msg2: event.message }, 'request failed');
      else if (event.route === '/healthz' || event.route === '/readyz' || event.route === '/metrics') logger.debug(fields, 'request');
      else if (event.method === 'GET' && event.status < 400 && POLLED_ROUTES.has(event.route)) logger.debug(fields, 'request');
      else logger.info(fields, 'request');
      return;
    }
    case 'shadow':
      if (event.result === 'mismatch') {
        logger.warn({ table: event.table, key: event.key === undefined ? undefined : shownKey(policyOf(event.table), event.key), columns: event.columns, shadowStore: event.shadowStore }, 'shadow read mismatch');
      }
      return;
    case 'read':
      if (event.result === 'fallback') logger.warn({ table: event.table, err: event.error ? describeDbError(event.error) : undefined }, 'target read failed; served by the source');
      return;
    case 'brake':
      if (event.active) logger.error({ table: event.table, signal: event.signal, value: event.value, threshold: event.threshold }, `safety brake tripped: ${event.reason}`);
      else logger.warn({ table: event.table }, `safety brake released: ${event.reason}`);
      return;
    case 'brake.warn':
      logger.warn({ table: event.table, signal: event.signal, value: event.value, warnAt: event.threshold }, 'safety signal past its warning level');
      return;
    case 'verify': {
      const r = event.report;
      logger.info(
        { table: r.table, matching: r.matching, mismatched: r.mismatched, missingInTarget: r.missingInTarget, extraInTarget: r.extraInTarget, ms: r.durationMs, rowsPerSecond: r.rowsPerSecond },
        r.clean ? 'verify: clean' : 'verify: drift found',
      );
      return;
    }
    case 'apply.failed':
      logger.warn(
        { store: event.store, rows: event.rows, path: event.path, willRetry: event.willRetry, err: describeDbError(event.error) },
        'apply to secondary failed; rows stay queued',
      );
      return;
    case 'apply.schema':
      logger.error({ table: event.table, err: event.error }, 'the target schema is not ready for this table: its rows wait (longest backoff) until it is fixed');
      return;
    case 'outbox.orphaned':
      logger.error({ table: event.table, rows: event.rows }, 'outbox rows of a table without a policy were set aside (status orphan); they resume when its policy is back');
      return;
    case 'outbox.dead':
      logger.error({ table: event.table, key: shownKey(policyOf(event.table), event.rowKey), outboxId: event.id, err: event.error }, 'outbox row is dead: replay it after fixing the cause');
      return;
    case 'breaker':
      (event.state === 'closed' ? logger.info : logger.warn).call(logger, { store: event.store, state: event.state }, 'circuit breaker');
      return;
    case 'stage':
      logger.info({ table: event.table, stage: event.stage, stale: event.stale, reason: event.reason }, 'table stage');
      return;
    case 'flags.loaded':
      logger.info({ origin: event.origin, features: event.features }, 'flags loaded');
      return;
    case 'flags.error':
      logger.error({ origin: event.origin, err: event.error.message }, 'flags could not be refreshed; keeping the last good flags');
      return;
    case 'flag.conflict':
      logger.warn({ table: event.table, reason: event.reason }, 'flag combination refused; keeping the last good stage');
      return;
    case 'background.error':
      logger.error({ component: event.component, err: event.error.message }, 'background task failed; it carries on');
      return;
    case 'driver':
      logger.warn({ store: event.store, driverLevel: event.level }, event.message.slice(0, 500));
      return;
    case 'lifecycle':
      logger.info({ phase: event.phase, ...event.detail }, `tandem ${event.phase}`);
      return;
    default:
      return;
  }
}
