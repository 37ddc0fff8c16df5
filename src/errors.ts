/** Stable error codes. Clients may switch on these; never rename one. */
export const ERROR_CODES = [
  'bad_request',
  'invalid_json',
  'invalid_value',
  'invalid_key',
  'unknown_table',
  'unknown_column',
  'not_found',
  'conflict',
  'payload_too_large',
  'unsupported_media_type',
  'unauthorized',
  'forbidden',
  'table_frozen',
  'primary_unavailable',
  'timeout',
  'config_invalid',
  'policy_invalid',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface TandemErrorOptions {
  cause?: unknown;
  /** Request field the error is about, e.g. `values.email` or `key`. */
  field?: string;
  /** Extra response headers, e.g. `Retry-After`. */
  headers?: Record<string, string>;
}

/** The one error vocabulary of Tandem; rendered as RFC 9457 problem+json by the HTTP layer. */
export class TandemError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly field: string | undefined;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, status: number, message: string, options: TandemErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TandemError';
    this.code = code;
    this.status = status;
    this.field = options.field;
    this.headers = options.headers ?? {};
  }
}

/** Turns anything thrown into an Error, keeping the original as `cause`. */
export function coerceError(value: unknown): Error {
  if (value instanceof Error) return value;
  const error = new Error(typeof value === 'string' ? value : `Non-error thrown: ${safeString(value)}`);
  (error as Error & { cause?: unknown }).cause = value;
  return error;
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
