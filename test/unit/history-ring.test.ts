import { describe, expect, it } from 'vitest';
import { HistoryRing } from '../../src/history/history-ring.js';

describe('history ring', () => {
  it('turns events into per-interval rates and keeps a fixed number of samples', () => {
    let now = 1_000_000;
    const ring = new HistoryRing(['t'], { intervalMs: 2_000, points: 3, now: () => now });
    for (let i = 0; i < 10; i++) ring.observe({ type: 'write', table: 't', store: 'source', result: 'ok', op: 'insert' });
    ring.observe({ type: 'write', table: 't', store: 'source', result: 'error', op: 'insert' });
    ring.observe({ type: 'apply', table: 't', store: 'target', result: 'applied', count: 6 });
    ring.observe({ type: 'apply', table: 't', store: 'target', result: 'failed', count: 2 });
    ring.observe({ type: 'read', table: 't', store: 'target', result: 'ok' });
    ring.observe({ type: 'read', table: 't', store: 'target', result: 'fallback' });
    ring.observe({ type: 'outbox.stats', tables: [{ table: 't', pending: 3, dead: 0, lagSeconds: 4.5 }] });
    ring.observe({ type: 'consistency', table: 't', ratio: 0.98, samples: 50 });
    ring.observe({ type: 'write', table: 'other', store: 'source', result: 'ok', op: 'insert' });
    ring.sample();
    let h = ring.history('t');
    expect(h?.t).toEqual([1000]);
    expect(h?.series).toMatchObject({
      sourceWritesPerSecond: [5],
      targetWritesPerSecond: [3],
      applied: [6],
      applyFailed: [2],
      skippedStale: [0],
      lagSeconds: [4.5],
      consistency: [0.98],
      targetErrorRate: [0.3], // 3 errors (2 failed applies, 1 fallback) of 10 target operations
    });
    for (let i = 0; i < 4; i++) {
      now += 2_000;
      ring.sample();
    }
    h = ring.history('t');
    expect(h?.t).toEqual([1004, 1006, 1008]);
    expect(h?.series.sourceWritesPerSecond).toEqual([0, 0, 0]);
    expect(h?.series.targetErrorRate).toEqual([null, null, null]); // no target operations: no rate
    expect(ring.history('other')).toBeUndefined();
  });
});
