import pg from 'pg';

/**
 * PostgreSQL values as Tandem compares them: DATE stays the calendar day it is, and a
 * TIMESTAMP without zone is read as UTC (as MariaDB's DATETIME is with time_zone +00:00).
 */
export const PG_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 1082) return (text: string) => text;
    if (oid === 1114) {
      return (text: string) => {
        const date = new Date(`${text.replace(' ', 'T')}Z`);
        return Number.isNaN(date.getTime()) ? text : date;
      };
    }
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

/** The JS value node-postgres (with Tandem's parsers) makes of a value's text form. */
export function parsePgText(oid: number, text: string): unknown {
  return PG_TYPES.getTypeParser(oid, 'text')(text);
}

/**
 * The opening of an image PostgreSQL wrote itself (the folded write path): the row as
 * `{"$pgtypes":{column: type oid, …}, column: text | null, …}`, each value in PostgreSQL's
 * text form. encodeImage never starts so: it escapes a `$pgtypes` column as `$$pgtypes`.
 */
export const PG_TEXT_IMAGE_PREFIX = '{"$pgtypes":';
