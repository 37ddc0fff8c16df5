import type { Knex } from 'knex';
import pg from 'pg';
import { SqlClassifier, loadParser, type SqlTable } from './classify.js';
import { SqlShadowReads } from './shadow-read.js';
import type { SqlBackend, SqlEvent } from './sql-backend.js';

/** The policy facts the SQL front needs (a narrow copy of the engine's Policy). */
export interface SqlPolicy {
  name: string;
  sourceTable: string;
  targetTable: string;
  primaryKey: readonly string[];
  targetPrimaryKey: readonly string[];
  /** source column → target column (null: excluded). */
  targetColumns: ReadonlyMap<string, string | null>;
}

export interface SqlBackendDeps {
  sourceUrl: string;
  /** Set when the target is PostgreSQL (reads may be served by it). */
  targetUrl: string | undefined;
  /** Set when the target is another engine: reads of the safe subset are rebuilt with knex. */
  otherTarget: { knex: Knex; dialect: string; translatesReads: boolean } | undefined;
  targetDialect: string;
  policies: Iterable<SqlPolicy>;
  poolMax: number;
  statementTimeoutMs: number;
  connectTimeoutMs: number;
  dualWriting: (table: string) => boolean;
  primaryOf: (table: string) => 'source' | 'target';
  refresh: (tables: readonly string[]) => Promise<void>;
  holdMs: number;
  sourceStale: (table: string) => boolean;
  routeRead: (table: string, stickyKey: string) => { store: 'source' | 'target'; reason: string; shadow: boolean };
  committed: (tables: readonly string[]) => void;
  emit: (event: SqlEvent) => void;
  /** Warm the parser up before answering (the SQL port at start; see loadParser). */
  warmUp: boolean;
}

export interface SqlBackendParts {
  backend: SqlBackend;
  parameters: Map<string, string>;
  close(): Promise<void>;
}

/** Builds the SQL front's backend: pools, the classifier with each table's columns, and the primary's parameters. */
export async function makeSqlBackend(deps: SqlBackendDeps): Promise<SqlBackendParts> {
  await loadParser({ warmUp: deps.warmUp });
  const poolOptions = (url: string, name: string): pg.PoolConfig => ({
    connectionString: url,
    max: deps.poolMax,
    application_name: name,
    statement_timeout: deps.statementTimeoutMs,
    connectionTimeoutMillis: deps.connectTimeoutMs,
    keepAlive: true,
  });
  const primary = new pg.Pool(poolOptions(deps.sourceUrl, 'tandem-sql'));
  const target = deps.targetUrl ? new pg.Pool(poolOptions(deps.targetUrl, 'tandem-sql-target')) : undefined;
  // An idle pooled connection that breaks is dropped by the pool; the error must not crash the process.
  primary.on('error', (error) => deps.emit({ type: 'sql.error', session: 0, error }));
  target?.on('error', (error) => deps.emit({ type: 'sql.error', session: 0, error }));
  const learning: { retry?: NodeJS.Timeout; closed: boolean } = { closed: false };
  const close = async () => {
    learning.closed = true;
    clearTimeout(learning.retry);
    await Promise.all([primary.end(), target?.end()]);
  };
  try {
    const parameters = new Map<string, string>();
    const policies = [...deps.policies];
    const client = await primary.connect();
    try {
      const tables: SqlTable[] = [];
      for (const policy of policies) tables.push({ ...policy, columns: await columnsOf(client, policy.sourceTable) });
      const classifier = new SqlClassifier(tables);
      if (target) {
        // Each table as the PostgreSQL target knows it: the SQL front writes there after
        // cutover. Learnt in the background (the target may be down at start, or its tables
        // not created yet), again every 5 s until every table is known.
        const again = () => {
          if (!learning.closed) learning.retry = setTimeout(learn, 5_000).unref();
        };
        const learn = () => {
          void targetTables(target, policies).then((known) => {
            classifier.setTargetTables(known);
            if (known.length < policies.length) again();
          }, again);
        };
        learn();
      }
      const { rows } = await client.query<{ name: string; setting: string }>(
        `SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'server_encoding', 'client_encoding', 'DateStyle', 'IntervalStyle', 'TimeZone', 'integer_datetimes', 'standard_conforming_strings')`,
      );
      for (const r of rows) parameters.set(r.name, r.name === 'client_encoding' ? 'UTF8' : r.setting);
      parameters.set('is_superuser', 'off');
      return {
        backend: {
          primary,
          target,
          otherTarget: deps.otherTarget,
          classifier,
          targetDialect: deps.targetDialect,
          dualWriting: deps.dualWriting,
          primaryOf: deps.primaryOf,
          refresh: deps.refresh,
          holdMs: deps.holdMs,
          sourceStale: deps.sourceStale,
          routeRead: deps.routeRead,
          committed: deps.committed,
          emit: deps.emit,
          shadowReads: new SqlShadowReads({ primary, target, otherTarget: deps.otherTarget, classifier, emit: deps.emit }),
        },
        parameters,
        close,
      };
    } finally {
      client.release();
    }
  } catch (error) {
    await close();
    throw error;
  }
}

/** The policy tables the target has, as it knows them (its names, columns and key). */
async function targetTables(target: pg.Pool, policies: readonly SqlPolicy[]): Promise<SqlTable[]> {
  const known: SqlTable[] = [];
  for (const policy of policies) {
    const columns = await columnsOf(target, policy.targetTable);
    if (columns.length === 0) continue;
    const back = new Map([...policy.targetColumns].filter((e): e is [string, string] => e[1] !== null).map(([from, to]) => [to, from]));
    known.push({ name: policy.name, sourceTable: policy.targetTable, primaryKey: policy.targetPrimaryKey, columns, targetTable: policy.sourceTable, targetColumns: back });
  }
  return known;
}

/** A table's columns in attnum order with their type OIDs (none when it does not exist). */
async function columnsOf(db: pg.Pool | pg.PoolClient, table: string): Promise<Array<{ name: string; oid: number }>> {
  const { rows } = await db.query<{ name: string; oid: number }>(
    `SELECT a.attname AS name, a.atttypid::int AS oid FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [`"${table.replace(/"/g, '""')}"`],
  );
  return rows.map((r) => ({ name: r.name, oid: Number(r.oid) }));
}
