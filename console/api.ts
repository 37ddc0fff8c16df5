/** The admin API as the console calls it: the token from this tab, errors in words. */

const TOKEN_KEY = 'tandem.adminToken';

export function savedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer that was not 2xx, with the server's words (problem+json `detail`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = savedToken();
  if (token) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, `Tandem did not answer (${(error as Error).message}). Is it still running?`, undefined);
  }
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!response.ok) {
    const problem = (parsed ?? {}) as { detail?: string; code?: string };
    throw new ApiError(response.status, problem.detail ?? `HTTP ${response.status} ${response.statusText}`, problem.code);
  }
  return parsed as T;
}

export interface BrakeStatus {
  active: boolean;
  signal: string | null;
  value: number | null;
  threshold: number | null;
  trippedAt: string | null;
  window: { seconds: number; targetOps: number; targetErrorRate: number; shadowSamples: number; consistency: number; lagSeconds: number };
}

export interface TableStatus {
  table: string;
  targetTable: string;
  stage: string;
  primary: string;
  stale: boolean;
  staleReason: string | null;
  flagConflict: string | null;
  readTargetPercent: number;
  shadowReadPercent: number;
  consistency: { ratio: number; samples: number };
  brake: BrakeStatus | null;
  lastVerify: {
    finishedAt: string;
    clean: boolean;
    matching: number;
    mismatched: number;
    missingInTarget: number;
    extraInTarget: number;
  } | null;
  outbox: { pending: number; dead: number; lagSeconds: number };
}

export interface Status {
  version: string;
  uptimeSeconds: number;
  stores: Record<string, { url?: string; dialect?: string; breaker: string | null; role: string }>;
  flags: { origin: string; synchronized: boolean; lastError: string | null; killSwitch: boolean };
  tables: TableStatus[];
}

export interface FlagView {
  name: string;
  role: string;
  kind: 'switch' | 'percent';
  enabled: boolean;
  percent: number | null;
  link: string | null;
}

export interface Flags {
  origin: 'file' | 'unleash';
  editable: boolean;
  file: string | null;
  unleashUi: string | null;
  killSwitch: FlagView;
  tables: Array<{ table: string; flags: FlagView[] }>;
}

export interface Capabilities {
  cutover: boolean;
  rollback: boolean;
  flagsEditable: boolean;
}

export interface Job {
  id: string;
  kind: 'verify' | 'backfill';
  table: string;
  options: Record<string, unknown>;
  state: 'running' | 'succeeded' | 'failed' | 'stopped';
  startedAt: string;
  finishedAt: string | null;
  progress: { phase: string; done: number; total: number; rowsPerSecond: number; etaSeconds: number | null };
  result: Record<string, unknown> | null;
  error: string | null;
}

export interface DeadRow {
  /** The store whose outbox holds it (the target's after a cutover). */
  store: 'source' | 'target';
  id: string;
  table: string;
  rowKey: string;
  op: string;
  attempts: number;
  lastError: string | null;
  createdAt: string;
}

export interface History {
  table: string;
  intervalSeconds: number;
  t: number[];
  series: Record<string, Array<number | null>>;
}
