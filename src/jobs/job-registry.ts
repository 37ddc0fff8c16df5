import { randomUUID } from 'node:crypto';
import { coerceError, TandemError } from '../errors.js';

export const JOB_KINDS = ['verify', 'backfill'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

export interface JobProgress {
  phase: string;
  done: number;
  total: number;
  rowsPerSecond: number;
  etaSeconds: number | null;
}

export interface JobView {
  id: string;
  kind: JobKind;
  table: string;
  options: Record<string, unknown>;
  state: 'running' | 'succeeded' | 'failed' | 'stopped';
  startedAt: string;
  finishedAt: string | null;
  progress: JobProgress;
  result: unknown;
  error: string | null;
}

export interface JobContext {
  /** Report progress; rate and ETA are computed here when the work does not give them. */
  progress(p: { phase: string; done: number; total: number; rowsPerSecond?: number; etaSeconds?: number | null }): void;
  shouldStop(): boolean;
}

/**
 * Long admin work (verify, backfill) run in the background so an HTTP caller can start it
 * and poll its progress. One running job per kind and table; the last `keep` finished jobs
 * stay listed.
 */
export class JobRegistry {
  private readonly jobs = new Map<string, JobView & { stop: boolean }>();

  constructor(
    private readonly onStart: (job: JobView) => void = () => undefined,
    private readonly onFinish: (job: JobView) => void = () => undefined,
    private readonly keep = 50,
  ) {}

  start(kind: JobKind, table: string, options: Record<string, unknown>, run: (ctx: JobContext) => Promise<unknown>): JobView {
    for (const job of this.jobs.values()) {
      if (job.state === 'running' && job.kind === kind && job.table === table) {
        throw new TandemError('conflict', 409, `table: a ${kind} of ${table} is already running (job ${job.id})`, { field: 'table' });
      }
    }
    const started = Date.now();
    const job: JobView & { stop: boolean } = {
      id: randomUUID(),
      kind,
      table,
      options,
      state: 'running',
      startedAt: new Date(started).toISOString(),
      finishedAt: null,
      progress: { phase: 'starting', done: 0, total: 0, rowsPerSecond: 0, etaSeconds: null },
      result: null,
      error: null,
      stop: false,
    };
    this.jobs.set(job.id, job);
    this.onStart(this.view(job));
    let phaseStarted = started;
    const ctx: JobContext = {
      progress: (p) => {
        if (p.phase !== job.progress.phase) phaseStarted = Date.now();
        const elapsed = Math.max((Date.now() - phaseStarted) / 1000, 0.001);
        const rate = p.rowsPerSecond ?? Math.round(p.done / elapsed);
        const eta = p.etaSeconds !== undefined ? p.etaSeconds : rate > 0 && p.total > p.done ? Math.ceil((p.total - p.done) / rate) : null;
        job.progress = { phase: p.phase, done: p.done, total: p.total, rowsPerSecond: rate, etaSeconds: eta };
      },
      shouldStop: () => job.stop,
    };
    // The work starts on the next tick, so the caller gets the job before any progress.
    setImmediate(() => {
      run(ctx).then(
        (result) => {
          job.result = result;
          job.state = job.stop ? 'stopped' : 'succeeded';
          this.finish(job);
        },
        (error: unknown) => {
          job.error = coerceError(error).message;
          job.state = 'failed';
          this.finish(job);
        },
      );
    });
    return this.view(job);
  }

  get(id: string): JobView | undefined {
    const job = this.jobs.get(id);
    return job ? this.view(job) : undefined;
  }

  list(): JobView[] {
    return [...this.jobs.values()].reverse().map((j) => this.view(j));
  }

  /** Asks a running job to stop between chunks. */
  stop(id: string): boolean {
    const job = this.jobs.get(id);
    if (!job || job.state !== 'running') return false;
    job.stop = true;
    return true;
  }

  /** Asks every running job to stop (shutdown). */
  stopAll(): void {
    for (const job of this.jobs.values()) job.stop = true;
  }

  private finish(job: JobView & { stop: boolean }): void {
    job.finishedAt = new Date().toISOString();
    this.onFinish(this.view(job));
    const finished = [...this.jobs.values()].filter((j) => j.state !== 'running');
    for (const old of finished.slice(0, Math.max(0, finished.length - this.keep))) this.jobs.delete(old.id);
  }

  private view(job: JobView & { stop: boolean }): JobView {
    const { stop: _stop, ...rest } = job;
    return { ...rest, progress: { ...rest.progress } };
  }
}
