import type { Store } from './store.js';

interface PgPoolClient {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<void> | void;
}

interface PgConnection {
  query(config: { name?: string; text: string; values: readonly unknown[] }): Promise<{ rows: unknown[] }>;
}

/**
 * One parameterised statement on a pooled PostgreSQL connection, without knex's query
 * builder: for the hot write path, where building the query per request showed in the
 * profile. The connection comes from, and goes back to, the store's knex pool (its
 * settings, statement timeout and type parsers); a connection that broke is disposed of by
 * knex on its next checkout. Unnamed statements: a prepared plan would break on a schema
 * change of the table (`cached plan must not change result type`).
 */
export async function pgQuery<R>(store: Store, text: string, values: readonly unknown[], name?: string): Promise<R[]> {
  const pool = store.knex.client as PgPoolClient;
  const connection = (await pool.acquireConnection()) as PgConnection;
  try {
    const result = await connection.query(name === undefined ? { text, values } : { name, text, values });
    return result.rows as R[];
  } finally {
    await pool.releaseConnection(connection);
  }
}
