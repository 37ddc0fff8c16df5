import { Router, type Response } from 'express';
import { TandemError } from '../errors.js';

/** One statement of the request body. */
export interface HttpStatement {
  sql: string;
  params: unknown[];
}

/** Runs statements through the SQL front's classifier and write path (built by the app). */
export type RunSql = (statements: readonly HttpStatement[]) => Promise<unknown[]>;

/** A statement's failure as the SQL front reports it (its SQLSTATE travels to the client). */
interface StatementFailure extends Error {
  sqlstate: string;
  statement: number;
  position: number | undefined;
  refused: boolean;
}

function isStatementFailure(error: unknown): error is StatementFailure {
  return error instanceof Error && typeof (error as Partial<StatementFailure>).sqlstate === 'string' && typeof (error as Partial<StatementFailure>).refused === 'boolean';
}

const MAX_STATEMENTS = 100;

/**
 * `POST /v1/sql`: `{"sql", "params"}` or `{"statements": [{"sql", "params"}, …]}` (one
 * transaction) → `{"command", "rowCount", "fields", "rows"}` (or `{"results": [...]}`).
 * Errors are problem+json with the statement's SQLSTATE.
 */
export function sqlRoutes(run: RunSql | undefined): Router {
  const router = Router();
  router.post('/v1/sql', async (req, res, next) => {
    res.locals['route'] = '/v1/sql';
    try {
      if (!run) throw new TandemError('bad_request', 400, 'sql: SQL over HTTP needs a PostgreSQL primary; use the row API', { field: 'sql' });
      const body = (req.body ?? {}) as Record<string, unknown>;
      const several = body['statements'] !== undefined;
      const statements = several ? readStatements(body['statements']) : [readStatement(body, '')];
      const results = await run(statements);
      res.json(several ? { results } : results[0]);
    } catch (error) {
      if (isStatementFailure(error)) {
        sendSqlProblem(res, error);
        return;
      }
      next(error);
    }
  });
  return router;
}

function readStatements(value: unknown): HttpStatement[] {
  if (!Array.isArray(value) || value.length === 0) throw new TandemError('bad_request', 400, 'statements: a non-empty array of {"sql", "params"}', { field: 'statements' });
  if (value.length > MAX_STATEMENTS) throw new TandemError('bad_request', 400, `statements: at most ${MAX_STATEMENTS}`, { field: 'statements' });
  return value.map((s, i) => readStatement(s, `statements[${i}].`));
}

function readStatement(value: unknown, prefix: string): HttpStatement {
  const s = (value ?? {}) as Record<string, unknown>;
  if (typeof s['sql'] !== 'string' || s['sql'].trim() === '') throw new TandemError('bad_request', 400, `${prefix}sql: required, a SQL statement`, { field: `${prefix}sql` });
  const params = s['params'] ?? [];
  if (!Array.isArray(params)) throw new TandemError('bad_request', 400, `${prefix}params: must be an array of values`, { field: `${prefix}params` });
  return { sql: s['sql'], params };
}

function sendSqlProblem(res: Response, error: StatementFailure): void {
  const status = error.refused ? 422 : error.sqlstate.startsWith('23') ? 409 : error.sqlstate.startsWith('57') || error.sqlstate.startsWith('08') ? 503 : 400;
  const code = error.refused ? 'sql_refused' : 'sql_error';
  res.locals['errorCode'] = code;
  res.locals['errorMessage'] = error.message;
  res
    .status(status)
    .type('application/problem+json')
    .send(
      JSON.stringify({
        type: `urn:tandem:problem:${code}`,
        title: code.replace(/_/g, ' '),
        status,
        detail: error.message,
        code,
        sqlstate: error.sqlstate,
        statement: error.statement,
        ...(error.position !== undefined ? { position: error.position } : {}),
        ...(res.locals['requestId'] ? { requestId: res.locals['requestId'] as string } : {}),
      }),
    );
}
