import type { ColumnKind } from '../shared/column-kind.js';

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
