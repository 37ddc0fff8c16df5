import type { Dialect, DialectAdapter } from './dialect.js';
import { makeMysqlAdapter } from './mysql.js';
import { postgresAdapter } from './postgres.js';
import { sqliteAdapter } from './sqlite.js';

/** The engine a database URL names. */
export function dialectOf(url: string): Dialect {
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
  const dialect = SCHEMES[scheme];
  if (!dialect) throw new Error(`unsupported database URL scheme "${scheme}"`);
  return dialect;
}

const SCHEMES: Record<string, Dialect> = { postgres: 'pg', postgresql: 'pg', mysql: 'mysql', mariadb: 'mysql', sqlite: 'sqlite' };

const MAKERS: Record<Dialect, () => DialectAdapter> = {
  pg: () => postgresAdapter,
  // Per pool: it learns from the server whether RETURNING is there (MariaDB 10.5+).
  mysql: makeMysqlAdapter,
  sqlite: () => sqliteAdapter,
};

/** A fresh adapter for one store (a pool) of this engine. */
export function makeAdapter(dialect: Dialect): DialectAdapter {
  return MAKERS[dialect]();
}
