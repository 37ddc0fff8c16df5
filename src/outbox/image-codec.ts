import { parsePgText, PG_TEXT_IMAGE_PREFIX } from '../db/dialects/pg-types.js';
import type { Row } from '../shared/row.js';

/*
 * After-images travel through the outbox as JSON text. Binary values keep their bytes
 * (`{"$b64": …}`), dates become ISO-8601 UTC, bigints decimal strings. Keys of the row's
 * own JSON values that start with `$` get one more `$`, so no stored value can pose as
 * the binary marker.
 */

export function encodeImage(row: Row): string {
  return JSON.stringify(row, function replacer(this: Record<string, unknown>, key: string, value: unknown) {
    const raw = key === '' ? value : this[key];
    if (Buffer.isBuffer(raw)) return { $b64: raw.toString('base64') };
    if (typeof raw === 'bigint') return raw.toString();
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).some((k) => k.startsWith('$'))) {
      const escaped: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) escaped[k.startsWith('$') ? `$${k}` : k] = v;
      return escaped;
    }
    return value;
  });
}

export function decodeImage(text: string): Row {
  if (text.startsWith(PG_TEXT_IMAGE_PREFIX)) return decodePgTextImage(text);
  return JSON.parse(text, (_key, value: unknown) => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj);
      if (keys.length === 1 && keys[0] === '$b64' && typeof obj['$b64'] === 'string') return Buffer.from(obj['$b64'], 'base64');
      if (keys.some((k) => k.startsWith('$'))) {
        const unescaped: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(obj)) unescaped[k.startsWith('$') ? k.slice(1) : k] = v;
        return unescaped;
      }
    }
    return value;
  }) as Row;
}

/**
 * `decodeImage(encodeImage(row))` without the text, for the backfill, which sends every
 * row through the image path (its profile on a 20-column table: a quarter of its CPU in the
 * two JSON passes). Flat values take JSON's rules here — dates become ISO text (an invalid
 * one null), bigints decimal text, non-finite numbers null, -0 becomes 0, undefined drops
 * the column, bytes stay bytes; a row holding any other object (JSON, arrays, intervals)
 * takes the real round trip.
 */
export function throughImage(row: Row): Row {
  const out: Row = {};
  for (const key of Object.keys(row)) {
    const value = row[key];
    if (value === undefined) continue;
    if (value === null || typeof value === 'string' || typeof value === 'boolean') out[key] = value;
    else if (typeof value === 'number') out[key] = Number.isFinite(value) ? value + 0 : null;
    else if (typeof value === 'bigint') out[key] = value.toString();
    else if (value instanceof Date) out[key] = Number.isNaN(value.getTime()) ? null : value.toISOString();
    else if (Buffer.isBuffer(value)) out[key] = Buffer.from(value);
    else return decodeImage(encodeImage(row));
    if (key === '__proto__') return decodeImage(encodeImage(row));
  }
  return out;
}

/** decodeImage that reports instead of throwing (a corrupt or too deeply nested stored image). */
export function tryDecodeImage(text: string): { image: Row } | { reason: string } {
  try {
    const image = decodeImage(text);
    if (image === null || typeof image !== 'object' || Array.isArray(image)) return { reason: 'undecodable image: not a JSON object' };
    return { image };
  } catch (error) {
    const name = error instanceof Error ? error.name : 'Error';
    // The parser's message quotes the text around the fault: it stays out of the reason.
    return { reason: `undecodable image: ${name === 'RangeError' ? 'nested too deeply' : `${name} while parsing`}` };
  }
}

/** A row as the API returns it: binary as base64, bigints as strings (dates serialise as ISO strings). */
export function toApiRow(row: Row): Row {
  const out: Row = {};
  for (const [key, value] of Object.entries(row)) {
    if (Buffer.isBuffer(value)) out[key] = value.toString('base64');
    else if (typeof value === 'bigint') out[key] = value.toString();
    else out[key] = value;
  }
  return out;
}

/**
 * Parses each value with the driver's own parser for its type, then takes the JSON round
 * trip encodeImage's images take: the result equals what the classic path decodes for the
 * same row (dates as ISO strings, bigints as strings, bytes as Buffers).
 */
function decodePgTextImage(text: string): Row {
  const { $pgtypes: types, ...values } = JSON.parse(text) as { $pgtypes: Record<string, number> } & Record<string, string | null>;
  const row: Row = {};
  for (const [name, value] of Object.entries(values)) {
    const oid = types[name];
    row[name] = value === null || oid === undefined ? value : parsePgText(oid, value);
  }
  return decodeImage(encodeImage(row));
}
