import { isBreakerOpenError } from '../db/breaker.js';
import { classifyDbError, isPermanentRowError, isSchemaError, isTransient } from '../db/classify-error.js';
import { describeDbError } from '../db/describe-error.js';
import { setAsideOrphans } from '../outbox/orphans.js';
import { DeadlineError } from '../db/with-deadline.js';
import { coerceError } from '../errors.js';
import type { EventSink } from '../events.js';
import { completeOutboxRows } from '../outbox/complete-outbox-rows.js';
import { failOutboxRows, type FailedRow } from '../outbox/fail-outbox-rows.js';
import { OutboxCompleter } from '../outbox/outbox-completer.js';
import type { OutboxEntry } from '../outbox/outbox-entry.js';
import type { ClaimedApplier, OutboxRoute } from '../outbox/outbox-worker.js';
import { releaseOutboxRows } from '../outbox/release-outbox-rows.js';
import type { Policy } from '../policy/policy.js';
import { applyEntries, coalesce, type ApplyResult } from './apply-entries.js';

/**
 * How long done-marks (deletes of applied outbox rows) gather before one DELETE writes
 * them (or 1,000 ids, whichever comes first). Each flush is a commit on the primary, whose
 * WAL flush the writes of live requests queue behind, so each flush puts a few requests
 * into the latency tail: at 200 req/s, 250 ms meant 80 flushes in 20 s, enough to set the
 * p99. Bench A/B, dual-write p99 added over naive dual at 200 req/s, six 20 s rounds each:
 * median 4.5 ms at 250 ms, 2.3 ms at 1,000 ms. Rows stay leased (worker) or within their
 * inline grace (`outbox.inlineGraceMs`, 2 s) meanwhile, so nothing applies them twice; a
 * crash before the flush only means a skipped re-apply.
 */
const DONE_MARK_INTERVAL_MS = 1_000;

export interface ApplierOptions {
  timeoutMs: number;
  /** Deadline of a worker batch; past it the batch is retried smaller. */
  batchTimeoutMs?: number;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

/** Delay before attempt `attempts + 1`: exponential, capped, with jitter over half of it. */
export function backoffMs(attempts: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * Applies outbox entries to the secondary through its breaker and settles them in the
 * primary's outbox: done on success, backoff or dead on failure. Never throws for a
 * secondary failure; a failure to settle leaves the rows pending (applied again later,
 * which the version check turns into a harmless skip).
 */
export class Applier implements ClaimedApplier {
  constructor(
    private readonly policies: ReadonlyMap<string, Policy>,
    private readonly events: EventSink,
    private readonly options: ApplierOptions,
    /** Told which outbox ids the secondary now has (read-your-writes bookkeeping). */
    private readonly onApplied: (ids: readonly string[]) => void = () => undefined,
  ) {}

  private readonly groups = new Map<OutboxRoute, InlineGroup>();
  private readonly completers = new Map<OutboxRoute, OutboxCompleter>();

  private completer(route: OutboxRoute): OutboxCompleter {
    let completer = this.completers.get(route);
    if (!completer) {
      completer = new OutboxCompleter(route.primary, DONE_MARK_INTERVAL_MS, (error) =>
        this.events.emit({ type: 'background.error', component: 'outbox.complete', error: coerceError(error) }),
      );
      this.completers.set(route, completer);
    }
    return completer;
  }

  /** Writes every queued done-mark (shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.completers.values()].map((c) => c.flush()));
  }

  /**
   * The request path: one try, no retry. True when the secondary has the change now.
   * Concurrent requests share applies: whatever arrives while one apply is in flight goes
   * together in the next, so low load pays no wait and high load pays one transaction per
   * group instead of one per request.
   */
  applyInline(route: OutboxRoute, entries: readonly OutboxEntry[]): Promise<boolean> {
    let group = this.groups.get(route);
    if (!group) {
      group = new InlineGroup((batch) => this.applyInlineNow(route, batch));
      this.groups.set(route, group);
    }
    return group.submit(entries);
  }

  private async applyInlineNow(route: OutboxRoute, entries: readonly OutboxEntry[]): Promise<boolean> {
    try {
      // Never the trial of a half-open breaker: that is the worker's, so no request waits on a
      // store that has just failed.
      const result = await route.breaker.run(() => applyEntries(route.secondary, this.policies, entries, this.options.timeoutMs), {
        trial: false,
      });
      this.report(route, result);
      this.onApplied(result.ids);
      this.completer(route).add(result.ids);
      return true;
    } catch (error) {
      // The rows stay pending; the worker picks them up after the inline grace period.
      this.events.emit({
        type: 'apply.failed',
        store: route.secondary.name,
        rows: entries.length,
        error: coerceError(error),
        willRetry: true,
        path: 'inline',
      });
      if (!isBreakerOpenError(error)) this.countFailed(route, entries, classifyDbError(error) === 'foreign_key');
      return false;
    }
  }

  /**
   * The worker path for claimed rows. Returns `too-big` when a batch of several keys ran past
   * its deadline: the rows are released at once (no attempt counted) for a smaller batch.
   */
  async applyClaimed(route: OutboxRoute, claimed: readonly OutboxEntry[]): Promise<'done' | 'too-big'> {
    const entries = await this.setAside(route, claimed);
    if (entries.length === 0) return 'done';
    try {
      const deadline = Math.max(this.options.timeoutMs, this.options.batchTimeoutMs ?? this.options.timeoutMs);
      const result = await route.breaker.run(() => applyEntries(route.secondary, this.policies, entries, deadline));
      this.report(route, result);
      this.onApplied(result.ids);
      // Marked before the next claim, not grouped like the inline path's marks: with grouped
      // marks here the relapse test's breaker needed a sixth or seventh failed write to
      // re-open in a third of runs (measured; the mechanism is not pinned down).
      await completeOutboxRows(route.primary, result.ids);
      return 'done';
    } catch (error) {
      if (isBreakerOpenError(error)) {
        await releaseOutboxRows(route.primary, entries.map((e) => e.id), Date.now());
        return 'done';
      }
      if (error instanceof DeadlineError && entries.length > 1) {
        await releaseOutboxRows(route.primary, entries.map((e) => e.id), Date.now());
        return 'too-big';
      }
      const kind = classifyDbError(error);
      const groups = coalesce(entries);
      if (!isTransient(kind) && groups.length > 1) {
        // One bad row (or one table with a schema problem) must not hold back the rows
        // claimed with it: apply table by table, then key by key, to isolate it.
        const tables = [...new Set(entries.map((e) => e.table))];
        if (tables.length > 1) {
          for (const table of tables) await this.applyClaimed(route, entries.filter((e) => e.table === table));
          return 'done';
        }
        if (!isSchemaError(kind)) {
          for (const group of groups) {
            const members = entries.filter((e) => group.ids.includes(e.id));
            await this.applyClaimed(route, members);
          }
          return 'done';
        }
      }
      await this.fail(route, entries, coerceError(error));
      return 'done';
    }
  }

  /**
   * Settles the rows that cannot be applied at all before the rest go on: rows whose table
   * has no policy are set aside (orphans), rows whose image cannot be decoded go dead at once.
   */
  private async setAside(route: OutboxRoute, entries: readonly OutboxEntry[]): Promise<readonly OutboxEntry[]> {
    const orphans = entries.filter((e) => !this.policies.has(e.table));
    const poison = entries.filter((e) => this.policies.has(e.table) && e.undecodable !== undefined);
    if (orphans.length === 0 && poison.length === 0) return entries;
    if (orphans.length > 0) {
      await setAsideOrphans(route.primary, orphans.map((e) => e.id));
      const perTable = new Map<string, number>();
      for (const e of orphans) perTable.set(e.table, (perTable.get(e.table) ?? 0) + 1);
      for (const [table, rows] of perTable) this.events.emit({ type: 'outbox.orphaned', table, rows });
    }
    if (poison.length > 0) {
      const now = Date.now();
      const rows: FailedRow[] = poison.map((e) => ({ id: e.id, attempts: e.attempts + 1, dead: true, nextAttemptAt: now, error: e.undecodable ?? 'undecodable image' }));
      this.countFailed(route, poison);
      await failOutboxRows(route.primary, rows);
      for (const row of rows) {
        const entry = poison.find((e) => e.id === row.id);
        if (entry) this.events.emit({ type: 'outbox.dead', table: entry.table, rowKey: entry.rowKey, id: entry.id, error: row.error });
      }
    }
    return entries.filter((e) => this.policies.has(e.table) && e.undecodable === undefined);
  }

  private async fail(route: OutboxRoute, entries: readonly OutboxEntry[], error: Error): Promise<void> {
    const kind = classifyDbError(error);
    const transient = isTransient(kind);
    const schema = isSchemaError(kind);
    // Code, kind and schema objects only: the database's message may quote row values.
    const reason = describeDbError(error);
    const now = Date.now();
    const rows: FailedRow[] = entries.map((entry) => {
      const attempts = entry.attempts + 1;
      // Connection trouble retries until the store is back, and a schema that is not ready
      // until an operator fixes it (at the longest backoff); a row the secondary refuses for
      // good (CHECK, NOT NULL, a value that does not fit) is dead at once; other rejections
      // (unique, foreign key, unknown) become dead after maxAttempts. Dead rows stay replayable.
      const dead = isPermanentRowError(kind) || (!transient && !schema && attempts >= this.options.maxAttempts);
      return {
        id: entry.id,
        attempts,
        dead,
        nextAttemptAt: now + (schema ? this.options.backoffMaxMs : backoffMs(attempts, this.options.backoffBaseMs, this.options.backoffMaxMs)),
        error: reason,
      };
    });
    if (schema) for (const table of new Set(entries.map((e) => e.table))) this.events.emit({ type: 'apply.schema', table, error: reason });
    this.countFailed(route, entries, kind === 'foreign_key');
    this.events.emit({
      type: 'apply.failed',
      store: route.secondary.name,
      rows: entries.length,
      error,
      willRetry: rows.some((r) => !r.dead),
      path: 'worker',
    });
    await failOutboxRows(route.primary, rows);
    for (const row of rows) {
      if (!row.dead) continue;
      const entry = entries.find((e) => e.id === row.id);
      if (entry) this.events.emit({ type: 'outbox.dead', table: entry.table, rowKey: entry.rowKey, id: entry.id, error: row.error });
    }
  }

  private report(route: OutboxRoute, result: ApplyResult): void {
    for (const [table, counts] of result.perTable) {
      if (counts.applied > 0) this.events.emit({ type: 'apply', table, store: route.secondary.name, result: 'applied', count: counts.applied });
      if (counts.skipped > 0) {
        this.events.emit({ type: 'apply', table, store: route.secondary.name, result: 'skipped_stale', count: counts.skipped });
      }
    }
  }

  /** `ordering`: a foreign-key rejection (a child before its parent, where FK checks stay on) — it heals when the parent arrives. */
  private countFailed(route: OutboxRoute, entries: readonly OutboxEntry[], ordering = false): void {
    const perTable = new Map<string, number>();
    for (const e of entries) perTable.set(e.table, (perTable.get(e.table) ?? 0) + 1);
    for (const [table, count] of perTable) this.events.emit({ type: 'apply', table, store: route.secondary.name, result: 'failed', count, ...(ordering ? { ordering } : {}) });
  }
}

/** Most entries one inline apply takes; the rest go in the next one. */
const MAX_GROUP = 500;

/** Collects entries from concurrent requests; one apply in flight at a time per route. */
class InlineGroup {
  private waiting: Array<{ entries: readonly OutboxEntry[]; resolve: (ok: boolean) => void }> = [];
  private busy = false;

  constructor(private readonly apply: (entries: readonly OutboxEntry[]) => Promise<boolean>) {}

  submit(entries: readonly OutboxEntry[]): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      this.waiting.push({ entries, resolve });
      if (!this.busy) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.busy = true;
    try {
      while (this.waiting.length > 0) {
        const batch: typeof this.waiting = [];
        let size = 0;
        while (this.waiting.length > 0 && (batch.length === 0 || size + (this.waiting[0]?.entries.length ?? 0) <= MAX_GROUP)) {
          const next = this.waiting.shift() as (typeof this.waiting)[number];
          batch.push(next);
          size += next.entries.length;
        }
        let ok = false;
        try {
          ok = await this.apply(batch.flatMap((b) => b.entries));
        } catch {
          ok = false;
        }
        for (const b of batch) b.resolve(ok);
      }
    } finally {
      this.busy = false;
    }
  }
}
