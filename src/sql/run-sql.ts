import type pg from 'pg';
import { SqlParseError, type StatementPlan } from './classify.js';
import { SQLSTATE } from './protocol.js';
import { placeAfterCutover, refuseStaleRead, refuseWriteAfterCutover } from './refuse-after-cutover.js';
import type { SqlBackend } from './sql-backend.js';

/** One statement of `POST /v1/sql`. */
export interface HttpStatement {
  sql: string;
  params: unknown[];
}

/** The answer to one statement: PostgreSQL's command tag parts, the columns and the rows. */
export interface HttpResultSet {
  command: string;
  rowCount: number;
  fields: Array<{ name: string; dataTypeID: number }>;
  rows: Array<Record<string, unknown>>;
}

/** A statement that failed or was refused: its SQLSTATE (and position) travel in the problem+json answer. */
export class SqlStatementError extends Error {
  constructor(
    message: string,
    readonly sqlstate: string,
    readonly statement: number,
    readonly position: number | undefined,
    readonly refused: boolean,
  ) {
    super(message);
  }
}

/**
 * SQL over HTTP (DESIGN §13): the same classifier and write rewrite as the wire protocol, on
 * a pooled primary connection. Several statements run in one transaction; one runs alone
 * (a rewritten write is one statement: atomic by itself). Reads are served by the primary.
 * Writes to tables whose primary moved to a PostgreSQL target run there (renamed) when
 * every statement of the request is such a write, as on the wire.
 */
export async function runSqlOverHttp(backend: SqlBackend, statements: readonly HttpStatement[]): Promise<HttpResultSet[]> {
  const plans: Array<Exclude<StatementPlan, { kind: 'refuse' }>> = [];
  const fingerprints: string[] = [];
  const classified = statements.map((s, i) => classifyOne(backend, s.sql, i));
  const onTarget = classified.map((c) => {
    const placed = placeAfterCutover(backend, c.plan, true);
    return placed && 'write' in placed ? placed.write : undefined;
  });
  const store: 'source' | 'target' = backend.target && onTarget.every((w) => w !== undefined) ? 'target' : 'source';
  statements.forEach((_s, i) => {
    const started = performance.now();
    let { plan } = classified[i] as { plan: StatementPlan };
    const { fingerprint } = classified[i] as { fingerprint: string };
    const written = onTarget[i];
    if (store === 'target' && written) {
      plans.push(written);
      fingerprints.push(fingerprint);
      return;
    }
    // Every statement here runs on the source.
    const moved = refuseWriteAfterCutover(backend, plan) ?? refuseStaleRead(backend, plan);
    if (moved) plan = moved;
    else if (plan.kind === 'guarded' && backend.dualWriting(plan.table)) plan = { kind: 'refuse', stmtKind: plan.stmtKind, table: plan.table, reason: plan.reason, message: plan.message };
    if (plan.stmtKind === 'tx') plan = { kind: 'refuse', stmtKind: 'tx', table: '', reason: 'uncapturable_write', message: 'transaction control is not accepted here: send several statements as "statements" to run them in one transaction' };
    if (plan.kind === 'refuse') {
      backend.emit({ type: 'sql.refused', reason: plan.reason, table: plan.table });
      backend.emit({ type: 'sql.statement', session: 0, kind: plan.stmtKind, table: plan.table, store: 'none', result: 'refused', durationMs: performance.now() - started, fingerprint, reason: plan.reason, via: 'http' });
      throw new SqlStatementError(plan.message, SQLSTATE.refused, i, undefined, true);
    }
    plans.push(plan);
    fingerprints.push(fingerprint);
  });

  const client = await (store === 'target' && backend.target ? backend.target : backend.primary).connect();
  const several = statements.length > 1;
  const written = new Set<string>();
  let broken: Error | undefined;
  try {
    if (several) await client.query('BEGIN');
    const out: HttpResultSet[] = [];
    for (const [i, plan] of plans.entries()) {
      const started = performance.now();
      const table = plan.kind === 'forward' ? '' : plan.table;
      const event = { type: 'sql.statement' as const, session: 0, kind: plan.stmtKind, table, store, fingerprint: fingerprints[i] ?? '', via: 'http' as const };
      let result: pg.QueryResult;
      try {
        result = await client.query({ text: plan.sql, values: statements[i]?.params ?? [] });
      } catch (error) {
        const e = error as { code?: string; position?: string; message?: string };
        backend.emit({ ...event, result: 'error', durationMs: performance.now() - started, ...(e.code ? { sqlstate: e.code } : {}) });
        if (several) await client.query('ROLLBACK').catch(() => undefined);
        if (!e.code) {
          broken = error as Error;
          throw error;
        }
        throw new SqlStatementError(e.message ?? 'statement failed', e.code, i, e.position ? Number(e.position) : undefined, false);
      }
      backend.emit({ ...event, result: 'ok', durationMs: performance.now() - started });
      out.push(toResultSet(plan, result));
      if (plan.kind === 'write') written.add(plan.table);
    }
    if (several) await client.query('COMMIT');
    if (written.size > 0) backend.committed([...written]);
    return out;
  } finally {
    client.release(broken);
  }
}

/** One statement of the request parsed and classified (it must be one). Throws SqlStatementError. */
function classifyOne(backend: SqlBackend, sql: string, index: number): { plan: StatementPlan; fingerprint: string } {
  try {
    const classified = backend.classifier.classify(sql);
    if (classified.statements.length !== 1) throw new SqlParseError('cannot run several commands in one statement: send them as "statements"', undefined);
    return { plan: classified.statements[0] as StatementPlan, fingerprint: classified.fingerprint };
  } catch (error) {
    if (!(error instanceof SqlParseError)) throw error;
    backend.emit({ type: 'sql.parse_error' });
    throw new SqlStatementError(error.message, SQLSTATE.syntax, index, error.position, false);
  }
}

function toResultSet(plan: StatementPlan, result: pg.QueryResult): HttpResultSet {
  if (plan.kind === 'write') {
    const rowCount = plan.returning ? (result.rowCount ?? 0) : Number((result.rows[0] as { count?: unknown } | undefined)?.count ?? 0);
    return {
      command: plan.tag,
      rowCount,
      fields: plan.returning ? result.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })) : [],
      rows: plan.returning ? result.rows.map(jsonRow) : [],
    };
  }
  return {
    command: result.command ?? '',
    rowCount: result.rowCount ?? 0,
    fields: (result.fields ?? []).map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })),
    rows: (result.rows ?? []).map(jsonRow),
  };
}

/** Values as JSON carries them: bytes as base64 (dates become ISO strings, int8 and numeric stay strings). */
function jsonRow(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k] = Buffer.isBuffer(v) ? v.toString('base64') : v;
  return out;
}
