import type { RequestHandler } from 'express';
import { TandemError } from '../errors.js';

/**
 * Refuses request bodies Tandem could store but not carry: JSON nested deeper than
 * `maxDepth` (a 3,000-deep value committed on the primary could not be decoded again from
 * the outbox, overflowing the worker's stack), and strings with a lone UTF-16 surrogate
 * (which every database and JSON encoder would silently turn into U+FFFD — a changed value).
 * Walks the parsed body iteratively, so the check itself cannot overflow. 400 naming the field.
 */
/** With the `u` flag a paired surrogate is one astral code point; only a lone one is in category Cs. */
const LONE_SURROGATE = /\p{Cs}/u;

export function checkBodyShape(maxDepth: number): RequestHandler {
  return (req, _res, next) => {
    const body: unknown = req.body;
    if (body === undefined || body === null || typeof body !== 'object') return next();
    const stack: Array<{ value: unknown; path: string; depth: number }> = [{ value: body, path: 'body', depth: 0 }];
    while (stack.length > 0) {
      const { value, path, depth } = stack.pop() as { value: unknown; path: string; depth: number };
      if (typeof value === 'string') {
        if (LONE_SURROGATE.test(value)) {
          return next(new TandemError('invalid_value', 400, `${field(path)}: contains a lone UTF-16 surrogate (not valid Unicode)`, { field: field(path) }));
        }
        continue;
      }
      if (value === null || typeof value !== 'object') continue;
      if (depth >= maxDepth) {
        return next(new TandemError('invalid_value', 400, `${field(path)}: JSON nested deeper than ${maxDepth} levels`, { field: field(path) }));
      }
      for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
        if (LONE_SURROGATE.test(key)) {
          return next(new TandemError('invalid_value', 400, `${field(path)}: a member name contains a lone UTF-16 surrogate`, { field: field(path) }));
        }
        stack.push({ value: child, path: `${path}.${key}`, depth: depth + 1 });
      }
    }
    next();
  };
}

/** `body.values.email` → `values.email` (the field names the API uses), cut short for deep paths. */
function field(path: string): string {
  const name = path === 'body' ? 'body' : path.slice('body.'.length);
  return name.length > 120 ? `${name.slice(0, 120)}…` : name;
}
