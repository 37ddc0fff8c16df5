import { TandemError } from '../errors.js';
import type { BoundColumn, Policy } from './policy.js';

const INTEGER_TEXT = /^-?\d{1,20}$/;
const NUMERIC_TEXT = /^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;
const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_TEXT = /^(\d{4})-(\d{2})-(\d{2})([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?$/i;
const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Checks a request's `values` against the policy's columns: every name must be a column,
 * every value must fit the column's kind. Returns a fresh object; throws 400 naming the field.
 */
export function validateValues(policy: Policy, values: unknown, field = 'values'): Record<string, unknown> {
  if (values === null || typeof values !== 'object' || Array.isArray(values)) {
    throw new TandemError('bad_request', 400, `${field}: must be an object of column → value`, { field });
  }
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(values as Record<string, unknown>)) {
    const column = policy.columns.get(name);
    const where = `${field}.${name}`;
    if (!column) {
      throw new TandemError('unknown_column', 400, `${where}: unknown column of table ${policy.name}`, { field: where });
    }
    const problem = checkValue(column, value);
    if (problem) throw new TandemError('invalid_value', 400, `${where}: ${problem}`, { field: where });
    out[name] = value;
  }
  return out;
}

function checkValue(column: BoundColumn, value: unknown): string | undefined {
  if (value === null) return undefined;
  switch (column.kind) {
    case 'integer': {
      if (typeof value === 'boolean' && /^(tinyint|bool)/.test(column.type)) return undefined;
      const ok = (typeof value === 'number' && Number.isSafeInteger(value)) || (typeof value === 'string' && INTEGER_TEXT.test(value));
      if (!ok) return `expected an integer (${column.type})`;
      const n = BigInt(value as number | string);
      if (column.range && (n < column.range[0] || n > column.range[1])) {
        return `outside the range of ${column.type} (${column.range[0]}..${column.range[1]})`;
      }
      return undefined;
    }
    case 'decimal':
    case 'float':
      if (typeof value === 'number' && Number.isFinite(value)) return undefined;
      if (typeof value === 'string' && NUMERIC_TEXT.test(value)) return undefined;
      return `expected a number (${column.type})`;
    case 'boolean':
      if (typeof value === 'boolean' || value === 0 || value === 1) return undefined;
      return 'expected a boolean';
    case 'string':
      if (typeof value !== 'string') return `expected a string (${column.type})`;
      if (column.maxLength !== null && [...value].length > column.maxLength) {
        return `longer than ${column.maxLength} characters`;
      }
      return undefined;
    case 'datetime': {
      const m = typeof value === 'string' ? DATETIME_TEXT.exec(value) : null;
      if (m && realDate(m[1], m[2], m[3]) && !Number.isNaN(Date.parse(value as string))) return undefined;
      return 'expected an ISO-8601 date-time string such as 2024-05-01T12:30:00Z';
    }
    case 'date': {
      const m = typeof value === 'string' ? DATE_TEXT.exec(value) : null;
      if (m && realDate(m[1], m[2], m[3])) return undefined;
      return 'expected a date YYYY-MM-DD';
    }
    case 'json':
      return undefined;
    case 'binary':
      if (typeof value === 'string' && BASE64_TEXT.test(value)) return undefined;
      return 'expected base64 text';
    default:
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return undefined;
      return `expected a scalar (${column.type})`;
  }
}

/** True when year-month-day names a day that exists (no 2023-02-30). */
function realDate(year: string | undefined, month: string | undefined, day: string | undefined): boolean {
  const y = Number(year);
  const mo = Number(month);
  const d = Number(day);
  const date = new Date(Date.UTC(y, mo - 1, d));
  return date.getUTCFullYear() === y && date.getUTCMonth() === mo - 1 && date.getUTCDate() === d;
}
