import type { RequestHandler } from 'express';
import { TandemError } from '../errors.js';
import { sendProblem } from './problem.js';

/**
 * Answers every request within `ms`: past it, 504 (`timeout`) with `Retry-After`, whatever
 * the handler is still waiting on. The handler's own answer, if it comes later, is dropped
 * (the problem handler sees the headers already sent). A write answered so may still have
 * committed on the primary — the 504 says "outcome unknown", as a gateway timeout does; the
 * client's retry of an upsert, patch or delete is safe.
 */
export function requestDeadline(ms: number): RequestHandler {
  return (_req, res, next) => {
    const timer = setTimeout(() => {
      if (res.headersSent) return;
      const error = new TandemError('timeout', 504, `request: no answer from the databases within ${ms} ms; try again`, {
        headers: { 'Retry-After': String(Math.max(1, Math.ceil(ms / 1000))) },
      });
      sendProblem(res, error, res.locals['requestId'] as string | undefined);
    }, ms);
    timer.unref();
    res.on('finish', () => clearTimeout(timer));
    res.on('close', () => clearTimeout(timer));
    next();
  };
}
