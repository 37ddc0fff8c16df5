import type { Store } from '../db/store.js';
import { completeOutboxRows } from './complete-outbox-rows.js';

/**
 * Deletes applied rows in groups, off the request path: one DELETE per interval instead
 * of one per request. A crash before the flush only means those rows are applied again,
 * which the version check turns into skips.
 */
export class OutboxCompleter {
  private ids: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly primary: Store,
    private readonly intervalMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  add(ids: readonly string[]): void {
    this.ids.push(...ids);
    if (this.ids.length >= 1000) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Writes what is queued; resolves when it is written (also used at shutdown). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const ids = this.ids;
    this.ids = [];
    this.flushing = this.flushing.then(async () => {
      if (ids.length === 0) return;
      try {
        await completeOutboxRows(this.primary, ids);
      } catch (error) {
        this.onError(error);
      }
    });
    return this.flushing;
  }
}
