import { OUTBOX_TABLE } from '../../db/internal-tables.js';
import type { Store } from '../../db/store.js';

/**
 * Deletes applied rows (still pending: a row a concurrent path turned dead stays). Deleted
 * at once, not marked done for the housekeeper to delete later: one write per row fewer on
 * the primary, which the live requests' commits queue behind (bench: dual-write p50 at
 * 200 req/s 3.49 → 3.27 ms, p99 over six 20 s rounds 14.1 → 10.4 ms, medians). Rows marked
 * done by earlier versions are still deleted by the housekeeper.
 */
export async function completeOutboxRows(primary: Store, ids: readonly string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) {
    await primary.knex(OUTBOX_TABLE).whereIn('id', ids.slice(i, i + 1000)).andWhere('status', 'pending').del();
  }
}

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
