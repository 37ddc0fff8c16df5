/** What a column holds, independent of the dialect's type name. */
export const COLUMN_KINDS = [
  'integer',
  'decimal',
  'float',
  'boolean',
  'string',
  'datetime',
  'date',
  'json',
  'binary',
  'other',
] as const;
export type ColumnKind = (typeof COLUMN_KINDS)[number];

/**
 * The range of an integer column, or undefined when it is not a fixed-width integer.
 * SQLite's INTEGER is 64-bit whatever it is called; elsewhere `int`/`integer` is 32-bit.
 */
export function integerRange(type: string, dialect: 'pg' | 'mysql' | 'sqlite'): [bigint, bigint] | undefined {
  const t = type.toLowerCase().trim();
  const bits = (n: number, unsigned = false): [bigint, bigint] =>
    unsigned ? [0n, 2n ** BigInt(n) - 1n] : [-(2n ** BigInt(n - 1)), 2n ** BigInt(n - 1) - 1n];
  if (dialect === 'sqlite') return /int/.test(t) ? bits(64) : undefined;
  const unsigned = /unsigned/.test(t);
  if (/^(tinyint)\b/.test(t)) return bits(8, unsigned);
  if (/^(smallint|int2|smallserial)\b/.test(t)) return bits(16, unsigned);
  if (/^mediumint\b/.test(t)) return bits(24, unsigned);
  if (/^(bigint|int8|bigserial)\b/.test(t)) return bits(64, unsigned);
  if (/^(int|integer|int4|serial)\b/.test(t)) return bits(32, unsigned);
  return undefined;
}

/**
 * SQL's fixed-length `CHAR(n)`: trailing blanks are padding, not data (PostgreSQL keeps them
 * on read, MySQL/MariaDB strip them with PAD SPACE), so comparisons ignore them. `VARCHAR`,
 * `character varying` and `text` keep every blank.
 *
 * @see https://www.postgresql.org/docs/current/datatype-character.html
 * @see https://mariadb.com/kb/en/char/
 */
export function isBlankPadded(type: string | null | undefined): boolean {
  if (!type) return false;
  return /^(n?char|character|bpchar|nchar)\b(?!\s+varying)/i.test(type.trim());
}

/** Maps a catalog type name (PostgreSQL, MySQL/MariaDB or SQLite) to a kind. */
export function columnKind(type: string): ColumnKind {
  const t = type.toLowerCase().trim();
  if (/^(bool|boolean)$/.test(t)) return 'boolean';
  if (/^(tinyint|smallint|mediumint|int|integer|bigint|int2|int4|int8|serial|bigserial|smallserial)\b/.test(t)) {
    return 'integer';
  }
  if (/^(decimal|numeric|money)\b/.test(t)) return 'decimal';
  if (/^(real|float|double|float4|float8)\b/.test(t)) return 'float';
  if (/^(timestamp|datetime)\b/.test(t)) return 'datetime';
  if (/^date$/.test(t)) return 'date';
  if (/^(json|jsonb)$/.test(t)) return 'json';
  if (/^(bytea|blob|tinyblob|mediumblob|longblob|binary|varbinary)\b/.test(t)) return 'binary';
  if (/(char|text|clob|uuid|enum|citext|string)/.test(t)) return 'string';
  return 'other';
}
