import type { ColumnKind } from '../policy/column-kind.js';
import type { Dialect } from './store.js';

const ISO_WITH_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;

/**
 * Turns a JSON-ish value into what the dialect's driver binds correctly for a column of
 * this kind. Every value still travels as a bound parameter; this only fixes its JS type.
 */
export function bindValue(value: unknown, kind: ColumnKind | null, dialect: Dialect): unknown {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Date) return dialect === 'sqlite' ? value.toISOString() : value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return dialect === 'sqlite' || kind === 'integer' ? (value ? 1 : 0) : value;
  if (typeof value === 'object') return JSON.stringify(value); // node-pg would turn arrays into PG arrays
  if (typeof value === 'string') {
    if (kind === 'binary') return Buffer.from(value, 'base64');
    if (kind === 'json' && dialect === 'pg') return value;
    if (kind === 'datetime' && dialect === 'mysql' && ISO_WITH_TIME.test(value)) {
      // MariaDB rejects ISO strings with a zone suffix; mysql2 writes a Date in the session zone (UTC).
      const date = new Date(/[zZ]|[+-]\d{2}:?\d{2}$/.test(value) ? value : `${value.replace(' ', 'T')}Z`);
      return Number.isNaN(date.getTime()) ? value : date;
    }
  }
  return value;
}
