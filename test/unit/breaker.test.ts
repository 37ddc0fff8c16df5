import { afterEach, describe, expect, it, vi } from 'vitest';
import { EventBus } from '../../src/events.js';
import { isBreakerOpenError, makeStoreBreaker, type StoreBreaker } from '../../src/db/breaker.js';

// The breaker's own rules, driven by thunks that succeed or fail; the integration suites
// (convergence, shadow-compare) drive it with a real black-holed network.
const options = {
  timeoutMs: 100,
  errorThresholdPercentage: 50,
  resetTimeoutMs: 60,
  volumeThreshold: 10,
  rollingWindowMs: 10_000,
  consecutiveFailures: 4,
};
const ok = () => Promise.resolve('ok');
const down = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('store breaker', () => {
  const breakers: StoreBreaker[] = [];
  afterEach(() => breakers.splice(0).forEach((b) => b.shutdown()));
  function make() {
    const states: string[] = [];
    const events = new EventBus();
    events.on((e) => {
      if (e.type === 'breaker') states.push(e.state);
    });
    const breaker = makeStoreBreaker('target', options, events);
    breakers.push(breaker);
    return { breaker, states };
  }

  it('opens after consecutiveFailures failures in a row, however many successes the window holds', async () => {
    const { breaker } = make();
    for (let i = 0; i < 20; i++) await breaker.run(ok);
    for (let i = 1; i <= 3; i++) {
      await expect(breaker.run(down)).rejects.toThrow('ECONNREFUSED');
      expect(breaker.state(), `after ${i} failures`).toBe('closed');
    }
    await expect(breaker.run(down)).rejects.toThrow('ECONNREFUSED');
    expect(breaker.state()).toBe('open');
    await expect(breaker.run(ok)).rejects.toSatisfy(isBreakerOpenError);
  });

  it('a success in between restarts the count', async () => {
    const { breaker } = make();
    for (let i = 0; i < 20; i++) await breaker.run(ok);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) await expect(breaker.run(down)).rejects.toThrow('ECONNREFUSED');
      await breaker.run(ok);
    }
    expect(breaker.state()).toBe('closed');
  });

  it('a request never takes the half-open trial; the trial decides', async () => {
    const { breaker, states } = make();
    for (let i = 0; i < 4; i++) await expect(breaker.run(down)).rejects.toThrow('ECONNREFUSED');
    expect(breaker.state()).toBe('open');
    await sleep(options.resetTimeoutMs + 40);
    expect(breaker.state()).toBe('half-open');
    let ran = false;
    const request = () => {
      ran = true;
      return ok();
    };
    await expect(breaker.run(request, { trial: false })).rejects.toSatisfy(isBreakerOpenError);
    expect(ran, 'the request was refused without running').toBe(false);
    await breaker.run(ok);
    expect(breaker.state()).toBe('closed');
    expect(states).toEqual(['open', 'half-open', 'closed']);
    await breaker.run(request, { trial: false });
    expect(ran, 'requests pass again once closed').toBe(true);
  });

  it('a row the store rejects (constraint) is not a store failure', async () => {
    const { breaker } = make();
    const duplicate = () => Promise.reject(Object.assign(new Error('duplicate key value'), { code: '23505' }));
    for (let i = 0; i < 10; i++) await expect(breaker.run(duplicate)).rejects.toThrow('duplicate');
    expect(breaker.state()).toBe('closed');
  });

  it('always leaves half-open: no trial taken, or a trial that never answers, opens it again after the deadline', async () => {
    const { breaker, states } = make();
    for (let i = 0; i < 4; i++) await expect(breaker.run(down)).rejects.toThrow('ECONNREFUSED');
    await sleep(options.resetTimeoutMs + 40);
    expect(breaker.state()).toBe('half-open');
    // Nobody takes the trial: past the deadline (2 × timeoutMs here) it is open again, then half-open again.
    const halfOpenAt = Date.now();
    await vi.waitFor(() => expect(states.slice(2)).toContain('open'), { timeout: 2_000, interval: 10 });
    const leftAfter = Date.now() - halfOpenAt;
    expect(leftAfter).toBeLessThan(2 * options.timeoutMs + 300);
    await vi.waitFor(() => expect(breaker.state()).toBe('half-open'), { timeout: 2_000, interval: 10 });
    // A trial that hangs: the breaker does not wait for it.
    void breaker.run(() => new Promise(() => undefined)).catch(() => undefined);
    await vi.waitFor(() => expect(states.filter((s) => s === 'open').length).toBe(3), { timeout: 2_000, interval: 10 });
    // And a trial that answers closes it.
    await vi.waitFor(() => expect(breaker.state()).toBe('half-open'), { timeout: 2_000, interval: 10 });
    await breaker.run(ok);
    expect(breaker.state()).toBe('closed');
  });
});
