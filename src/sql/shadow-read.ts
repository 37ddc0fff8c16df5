import type pg from 'pg';
import type { SqlTable, StatementPlan } from './classify.js';
import { translateRead, type ReadParams } from './knex-read.js';
import { renameForTarget } from './rename.js';
import type { SqlBackend } from './sql-backend.js';

type ReadPlan = Extract<StatementPlan, { kind: 'read' }>;
/** An answer as PostgreSQL's text forms, one array per row. */
type TextRows = Array<Array<string | null>>;

/** At most this many shadow reads run at once (they borrow the SQL front's pooled connections); more are skipped. */
const MAX_IN_FLIGHT = 4;
/** A differing answer is read again from both stores after this long: only a difference that stays counts. */
const RECHECK_MS = 1_000;

/** Values exactly as the server sent them (node-postgres would parse them into JavaScript values). */
const RAW_TEXT = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

/**
 * Shadow reads of the SQL front (DESIGN §4, §13): for the `shadow-read` share of the reads
 * it routes, the same SELECT is run on the other store — the client's text on the source,
 * its renamed form on a PostgreSQL target, its knex translation on another engine — off the
 * response path, and the two answers are compared as multisets of rows in PostgreSQL's text
 * forms. The result is the engine's `shadow` event (metrics, consistency ratio, safety
 * brake). A read gets no key of its own: a mismatch names the statement's fingerprint.
 *
 * Replication lag is not a mismatch: SQL-front writes do not pass through the pending-key
 * set the HTTP path consults, so a differing answer is read again from both stores after
 * RECHECK_MS and counts only if it still differs.
 */
export class SqlShadowReads {
  private inFlight = 0;

  constructor(private readonly backend: Pick<SqlBackend, 'primary' | 'target' | 'otherTarget' | 'classifier' | 'emit'>) {}

  /** Starts the comparison of an answer the client got (never throws, never waits); `params`: a parameterised read's values in text form. */
  compare(plan: ReadPlan, served: 'source' | 'target', answer: TextRows, fingerprint: string, params?: ReadParams): void {
    const table = this.backend.classifier.table(plan.table);
    const other = served === 'source' ? 'target' : 'source';
    const read = { source: this.reader(plan, table, 'source', params), target: this.reader(plan, table, 'target', params) };
    const readServed = read[served];
    const readOther = read[other];
    if (!readServed || !readOther || this.inFlight >= MAX_IN_FLIGHT) return;
    this.inFlight++;
    const emit = (result: 'match' | 'mismatch' | 'error', error?: Error) =>
      this.backend.emit({ type: 'sql.shadow', table: plan.table, result, shadowStore: other, key: `sql:${fingerprint}`, ...(error ? { error } : {}) });
    void (async () => {
      try {
        if (sameRows(answer, await readOther())) return emit('match');
        await new Promise((resolve) => setTimeout(resolve, RECHECK_MS).unref());
        const [again, otherAgain] = await Promise.all([readServed(), readOther()]);
        emit(sameRows(again, otherAgain) ? 'match' : 'mismatch');
      } catch (error) {
        emit('error', error as Error);
      } finally {
        this.inFlight--;
      }
    })();
  }

  /** How to read the statement's answer from a store, or undefined when that store cannot answer it. */
  private reader(plan: ReadPlan, table: SqlTable | undefined, store: 'source' | 'target', params: ReadParams | undefined): (() => Promise<TextRows>) | undefined {
    const { primary, target, otherTarget } = this.backend;
    const values = params?.values ?? [];
    if (store === 'source') return () => rawRows(primary, plan.sql, values);
    if (!table || plan.routable !== undefined) return undefined;
    // Without ORDER BY, LIMIT/OFFSET may pick different rows on each store: not comparable.
    if ((plan.select['limitCount'] || plan.select['limitOffset']) && !plan.select['sortClause']) return undefined;
    if (target) {
      const renamed = renameForTarget(plan.select, table);
      return 'sql' in renamed ? () => rawRows(target, renamed.sql, values) : undefined;
    }
    if (!otherTarget) return undefined;
    const translated = translateRead(plan.select, table, otherTarget, params);
    return 'reason' in translated ? undefined : () => translated.run(otherTarget.knex);
  }
}

async function rawRows(pool: pg.Pool, sql: string, values: ReadonlyArray<string | null>): Promise<TextRows> {
  const result = await pool.query<Array<string | null>>({ text: sql, values: [...values], rowMode: 'array', types: RAW_TEXT });
  return result.rows;
}

/** Equal as multisets of rows (a SELECT without ORDER BY may answer in any order). */
function sameRows(a: TextRows, b: TextRows): boolean {
  if (a.length !== b.length) return false;
  const key = (rows: TextRows) => rows.map((r) => JSON.stringify(r)).sort();
  const ka = key(a);
  const kb = key(b);
  return ka.every((row, i) => row === kb[i]);
}
