import { describe, expect, it } from 'vitest';
import { workerHealth } from '../../src/outbox/worker-health.js';

const now = 1_000_000;
const base = { now, lastRoundAt: now - 100, lastProgressAt: now - 100, tables: [], breaker: 'closed' as const, stallAfterMs: 60_000 };

describe('outbox worker health', () => {
  it('idle and recent: not stalled', () => {
    expect(workerHealth(base)).toMatchObject({ stalled: false, reason: null });
  });
  it('no claim round for longer than the threshold: stalled, whatever the breaker', () => {
    const h = workerHealth({ ...base, lastRoundAt: now - 61_000, breaker: 'open' });
    expect(h.stalled).toBe(true);
    expect(h.reason).toMatch(/no claim round finished for 61 s/);
  });
  it('old rows waiting, nothing handled, breaker closed: stalled; breaker open explains it', () => {
    const tables = [{ table: 'kv', pending: 3, dead: 0, lagSeconds: 90, oldestPendingAt: now - 90_000 }];
    const stuck = { ...base, tables, lastProgressAt: now - 70_000 };
    expect(workerHealth(stuck).stalled).toBe(true);
    expect(workerHealth({ ...stuck, breaker: 'open' }).stalled).toBe(false);
    expect(workerHealth({ ...stuck, lastProgressAt: now - 1_000 }).stalled).toBe(false);
  });
});
