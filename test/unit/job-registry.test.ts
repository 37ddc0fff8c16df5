import { describe, expect, it } from 'vitest';
import { JobRegistry, type JobView } from '../../src/jobs/job-registry.js';

const settle = async (registry: JobRegistry, id: string): Promise<JobView> => {
  for (let i = 0; i < 200; i++) {
    const job = registry.get(id);
    if (job && job.state !== 'running') return job;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('job did not finish');
};

describe('job registry', () => {
  it('runs work in the background, with progress, rate, ETA and result; one job per kind and table', async () => {
    const started: string[] = [];
    const finished: JobView[] = [];
    const registry = new JobRegistry((j) => started.push(j.id), (j) => finished.push(j));
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const job = registry.start('verify', 't', {}, async (ctx) => {
      ctx.progress({ phase: 'source', done: 50, total: 200 });
      await gate;
      return { clean: true };
    });
    expect(job.state).toBe('running');
    expect(started).toEqual([job.id]);
    expect(() => registry.start('verify', 't', {}, async () => undefined)).toThrow(/already running/);
    const other = registry.start('backfill', 't', {}, async () => ({ copied: 0 }));
    await new Promise((r) => setTimeout(r, 20));
    const running = registry.get(job.id) as JobView;
    expect(running.progress).toMatchObject({ phase: 'source', done: 50, total: 200 });
    expect(running.progress.rowsPerSecond).toBeGreaterThan(0);
    expect(running.progress.etaSeconds).toBeGreaterThanOrEqual(0);
    release();
    expect(await settle(registry, job.id)).toMatchObject({ state: 'succeeded', result: { clean: true }, error: null });
    expect((await settle(registry, other.id)).state).toBe('succeeded');
    expect(finished.map((j) => j.id).sort()).toEqual([job.id, other.id].sort());
  });

  it('reports a failure in words, stops on request, and forgets the oldest finished jobs', async () => {
    const registry = new JobRegistry(undefined, undefined, 2);
    const failed = registry.start('verify', 'a', {}, async () => {
      throw new Error('target unreachable');
    });
    expect(await settle(registry, failed.id)).toMatchObject({ state: 'failed', error: 'target unreachable' });
    const stoppable = registry.start('backfill', 'a', {}, async (ctx) => {
      while (!ctx.shouldStop()) await new Promise((r) => setTimeout(r, 2));
      return { finished: false };
    });
    expect(registry.stop(stoppable.id)).toBe(true);
    expect((await settle(registry, stoppable.id)).state).toBe('stopped');
    expect(registry.stop(stoppable.id)).toBe(false);
    const third = registry.start('verify', 'b', {}, async () => 1);
    await settle(registry, third.id);
    expect(registry.list().map((j) => j.id)).toEqual([third.id, stoppable.id]);
    expect(registry.get(failed.id)).toBeUndefined();
  });
});
