import { createHash } from 'node:crypto';
import { TandemError } from '../errors.js';
import type { Policy } from './policy.js';

/** Primary-key values in policy order. */
export type KeyValues = readonly unknown[];

function keyPart(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return value.toString('base64');
  return String(value);
}

/**
 * A row key as it may be shown outside the databases (log lines, the dead-row listing,
 * verify's samples): as it is, or — when the policy redacts one of its key columns — a
 * digest that still tells keys apart and matches across log lines, never the value.
 */
export function shownKey(policy: Pick<Policy, 'primaryKey' | 'redact'> | undefined, rowKey: string): string {
  if (!policy || !policy.primaryKey.some((c) => policy.redact.has(c))) return rowKey;
  return `redacted:${createHash('sha256').update(rowKey).digest('hex').slice(0, 16)}`;
}

/** The canonical key string: URL-encoded parts joined by `,` (the `{key}` of the API). */
export function formatKey(values: KeyValues): string {
  return values.map((v) => encodeURIComponent(keyPart(v))).join(',');
}

export function keyOfRow(policy: Policy, row: Record<string, unknown>): KeyValues {
  return policy.primaryKey.map((col) => row[col]);
}

/** Parses a raw (still URL-encoded) `{key}` path segment; 400 naming `key` when malformed. */
export function parseKey(policy: Policy, raw: string, field = 'key'): KeyValues {
  const parts = raw.split(',');
  if (parts.length !== policy.primaryKey.length) {
    throw new TandemError(
      'invalid_key',
      400,
      `${field}: expected ${policy.primaryKey.length} part(s) (${policy.primaryKey.join(', ')}) joined by ",", got ${parts.length}`,
      { field },
    );
  }
  return parts.map((part, i) => {
    const col = policy.primaryKey[i] as string;
    let text: string;
    try {
      text = decodeURIComponent(part);
    } catch {
      throw new TandemError('invalid_key', 400, `${field}: part ${i + 1} (${col}) is not valid URL encoding`, { field });
    }
    const kind = policy.columns.get(col)?.kind;
    if (kind === 'integer') {
      if (!/^-?\d{1,20}$/.test(text)) throw new TandemError('invalid_key', 400, `${field}: ${col} must be an integer`, { field });
      const range = policy.columns.get(col)?.range;
      if (range && (BigInt(text) < range[0] || BigInt(text) > range[1])) {
        throw new TandemError('invalid_key', 400, `${field}: ${col} is outside the column's range ${range[0]}..${range[1]}`, { field });
      }
      const n = Number(text);
      return Number.isSafeInteger(n) ? n : text;
    }
    if (text.length === 0) throw new TandemError('invalid_key', 400, `${field}: ${col} is empty`, { field });
    return text;
  });
}

/** Parses a key given in a JSON body: a scalar for one-column keys, an object or an array otherwise. */
export function keyFromJson(policy: Policy, value: unknown, field: string): KeyValues {
  if (typeof value === 'string') return parseKey(policy, value, field);
  if (typeof value === 'number' && policy.primaryKey.length === 1) return parseKey(policy, String(value), field);
  if (Array.isArray(value)) return parseKey(policy, value.map((v) => encodeURIComponent(String(v))).join(','), field);
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return parseKey(
      policy,
      policy.primaryKey.map((c) => encodeURIComponent(String(obj[c] ?? ''))).join(','),
      field,
    );
  }
  throw new TandemError('invalid_key', 400, `${field}: required (the primary-key value)`, { field });
}
