/**
 * After-images travel through the outbox as JSON text. Binary values keep their bytes
 * (`{"$b64": …}`), dates become ISO-8601 UTC, bigints decimal strings. Keys of the row's
 * own JSON values that start with `$` get one more `$`, so no stored value can pose as
 * the binary marker.
 */
export type Row = Record<string, unknown>;

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
