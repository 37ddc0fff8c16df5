import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { TandemError } from '../errors.js';

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * Bearer-token check. `tokens` undefined means open (only possible on loopback, which
 * configuration enforces); an empty list means closed to everyone. A token in `forbidden`
 * (valid elsewhere, e.g. a data token on the admin API) gets 403 instead of 401.
 */
export function requireBearer(tokens: readonly string[] | undefined, realm: string, forbidden: readonly string[] = []): RequestHandler {
  const digests = tokens?.map(digest);
  const forbiddenDigests = forbidden.map(digest);
  return (req, res, next) => {
    if (!digests) return next();
    res.setHeader('WWW-Authenticate', `Bearer realm="${realm}"`);
    const header = req.get('authorization') ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) return next(new TandemError('unauthorized', 401, 'authorization: a bearer token is required', { field: 'authorization' }));
    const given = digest((match[1] as string).trim());
    if (!digests.some((d) => timingSafeEqual(d, given))) {
      if (forbiddenDigests.some((d) => timingSafeEqual(d, given))) {
        res.removeHeader('WWW-Authenticate');
        return next(new TandemError('forbidden', 403, `authorization: this token is not allowed here (${realm} needs its own token)`, { field: 'authorization' }));
      }
      return next(new TandemError('unauthorized', 401, 'authorization: the token is not valid', { field: 'authorization' }));
    }
    res.removeHeader('WWW-Authenticate');
    next();
  };
}
