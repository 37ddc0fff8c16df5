import { performance } from 'node:perf_hooks';

/** One HTTP exchange with Tandem, as a load generator records it. */
export interface CallResult {
  /** HTTP status; 0 when no response arrived (connection refused/reset, timeout). */
  status: number;
  /** The `Tandem-Write` header, when present. */
  write: string | null;
  /** The `Tandem-Primary` header (the store that acknowledged a write), when present. */
  primary?: string | null;
  /** Parsed JSON body (or text), undefined for empty bodies. */
  body: unknown;
  /** Time the request was sent and the time its answer (or failure) arrived, `performance.now()` ms. */
  sentAt: number;
  doneAt: number;
  ms: number;
  /** The network error when status is 0. */
  error?: Error;
}

/** Sends one JSON request over real HTTP; never throws (a failure is status 0). */
export async function call(base: string, method: string, path: string, body?: unknown, timeoutMs = 20_000): Promise<CallResult> {
  const sentAt = performance.now();
  try {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    const doneAt = performance.now();
    return { status: res.status, write: res.headers.get('tandem-write'), primary: res.headers.get('tandem-primary'), body: parsed, sentAt, doneAt, ms: doneAt - sentAt };
  } catch (error) {
    const doneAt = performance.now();
    return { status: 0, write: null, body: undefined, sentAt, doneAt, ms: doneAt - sentAt, error: error as Error };
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A small seeded PRNG (mulberry32) so a failing run can be replayed with the same choices. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

