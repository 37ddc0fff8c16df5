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
