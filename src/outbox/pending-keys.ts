import type { OutboxEntry } from './outbox-entry.js';

/**
 * Keys this process wrote whose outbox rows are not yet applied to the secondary. A read
 * of such a key is served by the primary (read-your-writes). Bounded: past `maxKeys` the
 * table is marked overflowing and all its reads go to the primary until it drains.
 */
export class PendingKeys {
  private readonly byKey = new Map<string, Set<string>>();
  private readonly keyOfId = new Map<string, string>();
  private readonly perTable = new Map<string, number>();
  private readonly overflowing = new Set<string>();

  constructor(private readonly maxKeys: number) {}

  add(entries: readonly OutboxEntry[]): void {
    for (const entry of entries) {
      const key = `${entry.table}\u0000${entry.rowKey}`;
      if (this.keyOfId.size >= this.maxKeys && !this.byKey.has(key)) {
        this.overflowing.add(entry.table);
        continue;
      }
      let ids = this.byKey.get(key);
      if (!ids) {
        ids = new Set();
        this.byKey.set(key, ids);
        this.perTable.set(entry.table, (this.perTable.get(entry.table) ?? 0) + 1);
      }
      ids.add(entry.id);
      this.keyOfId.set(entry.id, key);
    }
  }

  /** Rows applied (or found stale) on the secondary. */
  complete(ids: readonly string[]): void {
    for (const id of ids) {
      const key = this.keyOfId.get(id);
      if (key === undefined) continue;
      this.keyOfId.delete(id);
      const set = this.byKey.get(key);
      set?.delete(id);
      if (set && set.size === 0) {
        this.byKey.delete(key);
        const table = key.slice(0, key.indexOf('\u0000'));
        const left = (this.perTable.get(table) ?? 1) - 1;
        if (left <= 0) {
          this.perTable.delete(table);
          this.overflowing.delete(table);
        } else this.perTable.set(table, left);
      }
    }
  }

  /** The oldest tracked outbox ids (for pruning rows another process applied). */
  trackedIds(limit: number): string[] {
    const out: string[] = [];
    for (const id of this.keyOfId.keys()) {
      if (out.length >= limit) break;
      out.push(id);
    }
    return out;
  }

  has(table: string, rowKey: string): boolean {
    return this.overflowing.has(table) || this.byKey.has(`${table}\u0000${rowKey}`);
  }

  /** Keys of the table still pending here (list reads need none). */
  count(table: string): number {
    return (this.perTable.get(table) ?? 0) + (this.overflowing.has(table) ? 1 : 0);
  }
}
