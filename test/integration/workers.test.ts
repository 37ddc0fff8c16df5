import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnTandem, type TandemChild } from '../helpers/child.js';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { convergence, createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, waitFor, writeFlags } from '../helpers/tandem.js';

/** The cluster primary's "worker started" lines: worker id → pid. */
function workersStarted(output: string): Map<number, number> {
  const started = new Map<number, number>();
  for (const line of output.split('\n')) {
    if (!line.includes('"msg":"worker started"')) continue;
    const entry = JSON.parse(line) as { worker: number; pid: number };
    started.set(entry.worker, entry.pid);
  }
  return started;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// One server pair is enough: the cluster is process plumbing, the same for every dialect.
const [pair] = runnablePairs().filter((p) => p.source !== 'sqlite' && p.target !== 'sqlite');

describe.runIf(pair)(`TANDEM_WORKERS: several serve processes on one port (${pair?.name ?? 'no server pair'})`, () => {
  let source: TestDatabase;
  let target: TestDatabase;
  let tandem: TandemChild | undefined;
  let env: Record<string, string>;

  beforeAll(async () => {
    if (!pair) return;
    source = await createTestDatabase(pair.source, 'wrksrc');
    target = await createTestDatabase(pair.target, 'wrktgt');
    await createTestTables(source.knex, target.knex);
    const flagsFile = path.join(mkdtempSync(path.join(tmpdir(), 'tandem-workers-')), 'flags.json');
    writeFlags(flagsFile, DUAL_WRITE_ALL);
    env = {
      TANDEM_WORKERS: '2',
      TANDEM_SOURCE_URL: source.url,
      TANDEM_TARGET_URL: target.url,
      TANDEM_POLICIES_DIR: writeTestPolicies(),
      TANDEM_FLAGS_FILE: flagsFile,
      TANDEM_LOG_LEVEL: 'info',
    };
  });

  afterAll(async () => {
    if (tandem && tandem.process.exitCode === null) {
      tandem.process.kill('SIGKILL');
      for (const pid of workersStarted(tandem.output()).values()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await source?.drop();
    await target?.drop();
  });

  const post = async (child: TandemChild, n: number, from: number) => {
    const statuses: number[] = [];
    for (let i = from; i < from + n; i += 8) {
      const batch = Array.from({ length: Math.min(8, from + n - i) }, (_, j) =>
        fetch(`${child.url}/v1/tables/people/rows`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ values: { email: `w${i + j}@example.com`, full_name: `Worker ${i + j}` } }),
        }).then((r) => r.status),
      );
      statuses.push(...(await Promise.all(batch)));
    }
    return statuses;
  };

  it('serves from every worker, reports the cluster in /metrics, replaces a killed worker and stops cleanly', async () => {
    const child = await spawnTandem(['serve'], env);
    tandem = child;
    await waitFor(() => workersStarted(child.output()).size === 2, { what: 'two workers to start' });
    // Both workers listen before the writes, so the kernel spreads connections over both.
    await waitFor(() => (child.output().match(/"msg":"tandem listening"/g) ?? []).length === 2, { what: 'both workers to listen' });

    const first = await post(child, 60, 0);
    expect(first.filter((s) => s === 201)).toHaveLength(60);
    const servedBy = new Set(
      child
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"request"') && l.includes('"method":"POST"'))
        .map((l) => (JSON.parse(l) as { worker?: number }).worker),
    );
    expect([...servedBy].sort()).toEqual([1, 2]);

    // Whichever worker answers, /metrics is the sum over both.
    const metrics = await (await fetch(`${child.url}/metrics`)).text();
    expect(metrics).toMatch(/^tandem_writes_total\{table="people",store="source",result="ok"\} 60$/m);
    expect(metrics).toMatch(/^tandem_stage\{table="people",stage="dual-write"\} 1$/m);

    const [victimId, victimPid] = [...workersStarted(child.output()).entries()][0] as [number, number];
    process.kill(victimPid, 'SIGKILL');
    await waitFor(() => child.output().includes('"msg":"worker died; starting another"'), { what: 'the primary to notice the dead worker' });
    await waitFor(() => workersStarted(child.output()).size === 3, { what: 'a replacement worker', timeoutMs: 10_000 });
    expect(alive(victimPid)).toBe(false);
    expect(child.output()).toContain(`"worker":${victimId},"code":null,"signal":"SIGKILL"`);
    await waitFor(() => (child.output().match(/"msg":"tandem listening"/g) ?? []).length === 3, { what: 'the replacement to listen' });

    const second = await post(child, 20, 60);
    expect(second.filter((s) => s === 201)).toHaveLength(20);
    await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox to drain' });
    const state = await convergence(source.knex, target.knex);
    expect(state.people.actual).toHaveLength(80);
    expect(state.people.actual).toEqual(state.people.expected);

    const workerPids = [...workersStarted(child.output()).values()];
    child.process.kill('SIGTERM');
    const exit = await child.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    for (const pid of workerPids) expect(alive(pid)).toBe(false);
    expect(child.output()).toContain('"msg":"stopping workers; each drains"');
  });

  it('refuses more than one worker on SQLite, naming the setting', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-workers-sqlite-'));
    const child = await spawnTandem(
      ['serve'],
      { ...env, TANDEM_SOURCE_URL: `sqlite:${dir}/s.db`, TANDEM_TARGET_URL: `sqlite:${dir}/t.db` },
      { waitReady: false },
    );
    const exit = await child.exited;
    expect(exit.code).toBe(2);
    expect(child.output()).toContain('workers: more than one worker needs server databases');
  });
});
