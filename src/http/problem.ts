import type { ErrorRequestHandler, Response } from 'express';
import { TandemError } from '../errors.js';

/** Renders an error as RFC 9457 problem+json with Tandem's stable `code`. */
export function sendProblem(res: Response, error: TandemError, requestId: string | undefined): void {
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value);
  res.locals['errorCode'] = error.code;
  res.locals['errorMessage'] = error.message;
  if (error.status >= 500 && error.cause !== undefined) res.locals['error'] = error;
  res
    .status(error.status)
    .type('application/problem+json')
    .send(
      JSON.stringify({
        type: `urn:tandem:problem:${error.code}`,
        title: error.code.replace(/_/g, ' '),
        status: error.status,
        detail: error.message,
        code: error.code,
        ...(error.field ? { field: error.field } : {}),
        ...(requestId ? { requestId } : {}),
      }),
    );
}

/** Maps body-parser failures to clear 4xx answers; anything unknown is a 500 with no details. */
export function toTandemError(error: unknown): TandemError {
  if (error instanceof TandemError) return error;
  const e = error as { type?: unknown; status?: unknown; limit?: unknown } | null;
  if (e?.type === 'entity.too.large') {
    return new TandemError('payload_too_large', 413, `body: larger than the limit of ${String(e.limit)} bytes`, { field: 'body' });
  }
  if (e?.type === 'entity.parse.failed') return new TandemError('invalid_json', 400, 'body: not valid JSON', { field: 'body' });
  if (error instanceof URIError) return new TandemError('bad_request', 400, 'path: not valid URL encoding', { field: 'path', cause: error });
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    const what = typeof e.type === 'string' ? e.type : 'malformed request';
    return new TandemError('bad_request', 400, `request: ${what}`, { cause: error });
  }
  return new TandemError('internal', 500, 'internal error', { cause: error });
}

export const problemHandler: ErrorRequestHandler = (error, _req, res, _next) => {
  if (res.headersSent) return; // already answered (the request deadline)
  const tandemError = toTandemError(error);
  if (tandemError.code === 'internal') res.locals['error'] = error;
  sendProblem(res, tandemError, res.locals['requestId'] as string | undefined);
};
