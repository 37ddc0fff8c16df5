import { randomUUID } from 'node:crypto';
import express, { type Express, type RequestHandler } from 'express';
import type { EventSink } from '../events.js';
import { TandemError } from '../errors.js';
import { adminRoutes, type AdminApi } from './admin-routes.js';
import { requireBearer } from './auth.js';
import { dataRoutes, type DataRouteDeps } from './data-routes.js';
import { problemHandler } from './problem.js';
import { requestDeadline } from './request-deadline.js';
import { checkBodyShape } from './body-limits.js';
import { sqlRoutes, type RunSql } from './sql-routes.js';
import type { ConsoleApi } from './console/console-api.js';
import { consoleAdminRoutes, consolePageRoutes } from './console/console-routes.js';
import { openApiDocument } from './openapi.js';

export interface HttpAppDeps extends DataRouteDeps {
  events: EventSink;
  admin: AdminApi;
  bodyLimit: string;
  /** Undefined: open (loopback only). */
  apiTokens: readonly string[] | undefined;
  /** Undefined: open (loopback only); empty: admin API closed. */
  adminTokens: readonly string[] | undefined;
  health(): Promise<{ ready: boolean; checks: Record<string, unknown> }>;
  metrics(): Promise<{ contentType: string; body: string }>;
  /** False while shutting down: new requests get 503. */
  accepting(): boolean;
  /** Every data API request is answered within this many ms (504 past it). */
  requestDeadlineMs?: number;
  /** Deepest JSON nesting accepted in a body. Default: 64. */
  maxJsonDepth?: number;
  /** POST /v1/sql's runner (absent: the primary is not PostgreSQL). */
  sql?: RunSql;
  /** The console's admin endpoints (history, jobs, flags); the page itself is always served. */
  console?: ConsoleApi;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function makeHttpApp(deps: HttpAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use(requestTracking(deps.events));
  // The data API only: admin verify and backfill run as long as the table takes.
  if (deps.requestDeadlineMs) app.use('/v1', requestDeadline(deps.requestDeadlineMs));
  app.use((_req, _res, next) => {
    if (!deps.accepting()) {
      return next(new TandemError('primary_unavailable', 503, 'Tandem is shutting down', { headers: { 'Retry-After': '1', Connection: 'close' } }));
    }
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.locals['route'] = '/healthz';
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    res.locals['route'] = '/readyz';
    const health = await deps.health();
    res.status(health.ready ? 200 : 503).json({ ready: health.ready, ...health.checks });
  });
  app.get('/metrics', async (_req, res) => {
    res.locals['route'] = '/metrics';
    const { contentType, body } = await deps.metrics();
    res.type(contentType).send(body);
  });

  app.get('/openapi.json', (_req, res) => {
    res.locals['route'] = '/openapi.json';
    res.json(openApiDocument());
  });
  app.use(consolePageRoutes());

  const json = express.json({ limit: deps.bodyLimit, strict: false });
  app.use('/v1', requireBearer(deps.apiTokens, 'tandem'), json, checkBodyShape(deps.maxJsonDepth ?? 64));
  app.use(dataRoutes(deps));
  app.use(sqlRoutes(deps.sql));
  // A data token on the admin API is a 403 (known, not allowed), not a 401.
  app.use('/admin', requireBearer(deps.adminTokens, 'tandem-admin', deps.apiTokens), json);
  app.use(adminRoutes(deps.admin));
  if (deps.console) app.use(consoleAdminRoutes(deps.console));

  app.use((req, res, next) => {
    res.locals['route'] = 'unmatched';
    next(new TandemError('not_found', 404, `path: nothing at ${req.method} ${req.path.slice(0, 128)}`, { field: 'path' }));
  });
  app.use(problemHandler);
  return app;
}

/** Request id (kept from `X-Request-Id` when sane), duration, and one event per request. */
function requestTracking(events: EventSink): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    const given = req.get('x-request-id');
    const requestId = given && REQUEST_ID.test(given) ? given : randomUUID();
    res.locals['requestId'] = requestId;
    res.setHeader('X-Request-Id', requestId);
    res.on('finish', () => {
      const error = res.locals['error'] as Error | undefined;
      events.emit({
        type: 'http.request',
        requestId,
        method: req.method,
        route: (res.locals['route'] as string | undefined) ?? 'unmatched',
        ...(res.locals['table'] ? { table: res.locals['table'] as string } : {}),
        status: res.statusCode,
        durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        ...(res.locals['errorCode'] ? { code: res.locals['errorCode'] as string } : {}),
        ...(res.locals['errorMessage'] ? { message: res.locals['errorMessage'] as string } : {}),
        ...(error ? { error } : {}),
      });
    });
    next();
  };
}
