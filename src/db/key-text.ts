import { canonicalNumber } from '../shared/canonical-number.js';

const NUMERIC = /^[-+]?(\d+(\.\d*)?|\.\d+)$/;

/**
 * One spelling of a key value as the database returns it and as Tandem binds it, so that
 * "does this key exist" compares like with like: dates as ISO-8601, bytes as base64,
 * numbers without insignificant zeros.
 */
export function keyText(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (typeof value === 'number' || typeof value === 'bigint') return canonicalNumber(String(value));
  if (typeof value === 'string' && NUMERIC.test(value)) return canonicalNumber(value);
  return String(value);
}
