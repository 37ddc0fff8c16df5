import { withDeadlineQuery } from '../db/with-deadline.js';
import { coerceError } from '../errors.js';
import type { EventSink } from '../events.js';
import type { Applier, ApplyRoute } from './applier.js';
import { claimOutboxRows } from './outbox/claim-outbox-rows.js';

export interface OutboxWorkerOptions {
  /** Deadline of the probe sent through a half-open breaker when there is nothing to apply, ms. */
  probeTimeoutMs?: number;
  pollIntervalMs: number;
  batchSize: number;
  leaseMs: number;
}

/**
 * Drains one route's outbox: claim due rows, apply them (coalesced per key), settle them.
 * Never crashes and never goes silent: every failure is an event, then it carries on.
 */
export class OutboxWorker {
  private running = false;
  /** Shrinks when a batch runs past its deadline, grows back after successes. */
  private batch: number;
  private loopDone: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly route: ApplyRoute,
    private readonly applier: Applier,
    private readonly events: EventSink,
    private readonly options: OutboxWorkerOptions,
  ) {
    this.batch = options.batchSize;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** Wakes the worker now (after the breaker closes, or a replay). */
  poke(): void {
    this.wake?.();
  }

  /** Stops after the batch in flight has been settled. Safe to call twice. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loopDone;
  }

  /** One claim-and-apply round; returns how many rows it handled. */
  async drainOnce(): Promise<number> {
    const state = this.route.breaker.state();
    if (state === 'open') return 0;
    // While half-open, send one small batch as the trial.
    const limit = state === 'half-open' ? 1 : this.batch;
    const entries = await claimOutboxRows(this.route.from, limit, this.options.leaseMs);
    if (entries.length === 0) {
      // Nothing to apply, but a half-open breaker needs a trial call to close again;
      // without one, target reads would wait for the next write.
      if (state === 'half-open') {
        const to = this.route.to;
        await this.route.breaker
          .run(() => withDeadlineQuery(to, this.options.probeTimeoutMs ?? 1_000, (knex) => knex.raw('SELECT 1')))
          .catch(() => undefined);
      }
      return 0;
    }
    const outcome = await this.applier.applyClaimed(this.route, entries);
    if (outcome === 'too-big') this.batch = Math.max(1, Math.floor(entries.length / 2));
    else if (state === 'closed') this.batch = Math.min(this.options.batchSize, this.batch * 2);
    return entries.length;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      let handled = 0;
      try {
        handled = await this.drainOnce();
      } catch (error) {
        this.events.emit({ type: 'background.error', component: 'outbox.worker', error: coerceError(error) });
      }
      if (handled === 0 && this.running) await this.sleep(this.options.pollIntervalMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}
