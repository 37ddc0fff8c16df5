import type { Store } from '../db/store.js';
import { coerceError } from '../errors.js';
import type { EventSink, OutboxTableStats } from '../events.js';
import { outboxStats } from './outbox-stats.js';
import type { PendingKeys } from './pending-keys.js';
import { stillPending } from './still-pending.js';

/**
 * Periodically publishes pending/dead/lag per table (metrics, status) and forgets the
 * read-your-writes keys another replica applied. Keeps the last statistics for `/admin/status`.
 */
export class Housekeeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private latest: OutboxTableStats[] = [];
  /** When `stats()` was counted (ms since epoch), 0 before the first count. */
  countedAt = 0;

  constructor(
    private readonly primary: Store,
    private readonly tables: readonly string[],
    private readonly events: EventSink,
    private readonly intervalMs: number,
    /** Read-your-writes bookkeeping: rows another replica applied are forgotten here. */
    private readonly pending?: PendingKeys,
    /** False while this outbox's store is nobody's primary (the target before a cutover): no queries then. */
    private readonly isActive: () => boolean = () => true,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (!this.running) this.running = this.runOnce().finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  stats(): OutboxTableStats[] {
    return this.latest;
  }

  async runOnce(): Promise<void> {
    if (!this.isActive()) {
      this.latest = this.tables.map((table) => ({ table, pending: 0, dead: 0, lagSeconds: 0 }));
      return;
    }
    try {
      if (this.pending) {
        const tracked = this.pending.trackedIds(5_000);
        if (tracked.length > 0) {
          const open = await stillPending(this.primary, tracked);
          this.pending.complete(tracked.filter((id) => !open.has(id)));
        }
      }
      this.latest = await outboxStats(this.primary, this.tables);
      this.countedAt = Date.now();
      this.events.emit({ type: 'outbox.stats', tables: this.latest });
    } catch (error) {
      this.events.emit({ type: 'background.error', component: 'outbox.housekeeping', error: coerceError(error) });
    }
  }
}
