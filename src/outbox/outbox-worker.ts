import { withDeadlineQuery } from '../db/with-deadline.js';
import { coerceError } from '../errors.js';
import type { EventSink } from '../events.js';
import type { StoreBreaker } from '../db/breaker.js';
import type { Store } from '../db/store.js';
import { claimOutboxRows } from './claim-outbox-rows.js';
import type { OutboxEntry } from './outbox-entry.js';

/** Where changes flow: the outbox lives in `primary`, its rows are applied to `secondary`. */
export interface OutboxRoute {
  primary: Store;
  secondary: Store;
  /** The secondary's breaker. */
  breaker: StoreBreaker;
}

/** Applies claimed rows and settles them (src/write/applier.ts). */
export interface ClaimedApplier {
  /** `too-big` when a batch of several keys ran past its deadline and was released for a smaller one. */
  applyClaimed(route: OutboxRoute, entries: readonly OutboxEntry[]): Promise<'done' | 'too-big'>;
}

export interface OutboxWorkerOptions {
  /** Deadline of the probe sent through a half-open breaker when there is nothing to apply, ms. */
  probeTimeoutMs?: number;
  pollIntervalMs: number;
  batchSize: number;
  /** Batch loops running side by side: one claims while another applies (applies take turns). Default 1. */
  concurrency?: number;
  leaseMs: number;
  /**
   * False while this direction has nothing to carry (the reverse worker before any cutover):
   * the worker then sends nothing to its outbox's store. Default: always active.
   */
  isActive?: () => boolean;
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
  private readonly wakers = new Set<() => void>();
  private applying: Promise<unknown> = Promise.resolve();
  /** Set while claims come back full (a backlog): then every loop claims. */
  private backlog = false;
  /** When a claim round last finished (idle or not) and when one last handled rows: see worker-health.ts. */
  lastRoundAt = Date.now();
  lastProgressAt = Date.now();

  constructor(
    private readonly route: OutboxRoute,
    private readonly applier: ClaimedApplier,
    private readonly events: EventSink,
    private readonly options: OutboxWorkerOptions,
  ) {
    this.batch = options.batchSize;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const loops = Array.from({ length: Math.max(1, this.options.concurrency ?? 1) }, (_, i) => this.loop(i));
    this.loopDone = Promise.all(loops).then(() => undefined);
  }

  /** Wakes the worker now (after the breaker closes, or a replay). */
  poke(): void {
    for (const wake of [...this.wakers]) wake();
  }

  /** Stops after the batch in flight has been settled. Safe to call twice. */
  async stop(): Promise<void> {
    this.running = false;
    this.poke();
    await this.loopDone;
  }

  /** One claim-and-apply round; returns how many rows it handled. */
  async drainOnce(): Promise<number> {
    if (this.options.isActive && !this.options.isActive()) {
      this.backlog = false;
      return 0;
    }
    const state = this.route.breaker.state();
    if (state === 'open') {
      this.backlog = false;
      return 0;
    }
    // While half-open, send one small batch as the trial.
    const limit = state === 'half-open' ? 1 : this.batch;
    const entries = await claimOutboxRows(this.route.primary, limit, this.options.leaseMs);
    if (entries.length === 0) {
      this.backlog = false;
      // Nothing to apply, but a half-open breaker needs a trial call to close again;
      // without one, target reads would wait for the next write.
      if (state === 'half-open') {
        const to = this.route.secondary;
        await this.route.breaker
          .run(() => withDeadlineQuery(to, this.options.probeTimeoutMs ?? 1_000, (knex) => knex.raw('SELECT 1')))
          .catch(() => undefined);
      }
      return 0;
    }
    // A full batch of the full size means a backlog: the other loops join in until a batch
    // comes back short. (Not while batches are still growing after a trial: a small drain
    // would be split into more batches, each one more success in the breaker's window.)
    this.backlog = limit >= this.options.batchSize && entries.length >= limit;
    const outcome = await this.serially(() => this.applier.applyClaimed(this.route, entries));
    if (outcome === 'too-big') this.batch = Math.max(1, Math.floor(entries.length / 2));
    else if (state === 'closed') this.batch = Math.min(this.options.batchSize, this.batch * 2);
    return entries.length;
  }

  /**
   * Applies run one at a time while claims overlap them: concurrent batches of neighbouring
   * keys deadlock on InnoDB's next-key locks of the ledger.
   */
  private serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.applying.then(work);
    this.applying = run.catch(() => undefined);
    return run;
  }

  private async loop(index: number): Promise<void> {
    while (this.running) {
      // Extra loops only help a backlog; otherwise they would split small drains into more,
      // smaller batches (and the breaker would count each one).
      if (index > 0 && !this.backlog) {
        await this.sleep(this.options.pollIntervalMs);
        continue;
      }
      let handled = 0;
      try {
        handled = await this.drainOnce();
      } catch (error) {
        this.events.emit({ type: 'background.error', component: 'outbox.worker', error: coerceError(error) });
      }
      this.lastRoundAt = Date.now();
      if (handled > 0) this.lastProgressAt = this.lastRoundAt;
      if (handled === 0 && this.running) await this.sleep(this.options.pollIntervalMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      const wakers = this.wakers;
      function done() {
        clearTimeout(timer);
        wakers.delete(done);
        resolve();
      }
      wakers.add(done);
    });
  }
}
