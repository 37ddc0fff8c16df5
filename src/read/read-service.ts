import type { Knex } from 'knex';
import { bindValue } from '../db/bind-value.js';
import { classifyDbError } from '../db/classify-error.js';
import type { Store, StoreName } from '../db/store.js';
import { whereAfterKey } from '../db/key-queries.js';
import { withDeadlineQuery } from '../db/with-deadline.js';
import { TandemError, coerceError } from '../errors.js';
import type { EventSink } from '../events.js';
import { mapBackward } from '../policy/mapping.js';
import { compareSettings, diffRows } from '../policy/normalize.js';
import type { Policy } from '../policy/policy.js';
import { formatKey, parseKey } from '../policy/row-key.js';
import type { KeyValues } from '../shared/row.js';
import type { StoreBreaker } from '../db/breaker.js';
import { toApiRow } from '../outbox/image-codec.js';
import type { Row } from '../shared/row.js';
import { fetchByKeys } from '../policy/fetch-by-keys.js';
import type { ReadRouting } from './read-routing.js';

export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 100;

export interface ReadResult<T> {
  value: T;
  store: StoreName;
}

export interface ListQuery {
  filters: Record<string, string>;
  limit: number;
  after: string | undefined;
}

export interface ReadContext {
  /** `Tandem-Sticky-Key` header (user or session id). */
  stickyKey?: string | undefined;
}

export interface ReadServiceOptions {
  targetTimeoutMs: number;
  shadowTimeoutMs: number;
}

export interface ReadServiceDeps {
  source: Store;
  target: Store;
  routing: ReadRouting;
  /** Breaker the served target reads go through (the target store's). */
  targetBreaker: StoreBreaker;
  /** Shadow reads have their own breakers so they never touch the serving path. */
  shadowBreakers: Record<StoreName, StoreBreaker>;
  events: EventSink;
  /** Called with the table's key after a mismatch when the policy asks for read-repair. */
  repair: (policy: Policy, key: KeyValues) => Promise<void>;
  options: ReadServiceOptions;
}

/**
 * Reads (DESIGN §4): pick the store (kill switch, read-target %, stickiness, trust), serve
 * it, fall back to the primary when the target fails, and — for the shadow share — read the
 * other store concurrently and compare after mapping and normalisation, off the response path.
 */
export class ReadService {
  constructor(private readonly deps: ReadServiceDeps) {}

  async getRow(policy: Policy, key: KeyValues, ctx: ReadContext = {}): Promise<ReadResult<Row | undefined>> {
    const rowKey = formatKey(key);
    const decision = this.deps.routing.decide(policy, { stickyKey: ctx.stickyKey ?? rowKey, rowKey });
    const fetchFrom = (store: Store, ms: number) => this.fetchRow(store, policy, key, ms);

    const shadowStore = decision.shadow ? (decision.store === 'source' ? this.deps.target : this.deps.source) : undefined;
    const shadow = shadowStore
      ? this.deps.shadowBreakers[shadowStore.name].run(() => fetchFrom(shadowStore, this.deps.options.shadowTimeoutMs))
      : undefined;
    shadow?.catch(() => undefined);

    const served = await this.serve(policy, decision.store, decision.primary, (ms) => fetchFrom(this.deps.target, ms), (ms) => fetchFrom(this.deps.source, ms));
    if (shadow && shadowStore) {
      void this.compare(policy, served, shadow, shadowStore.name, [key]);
    }
    const row = served.value[0];
    return { value: row ? toApiRow(row) : undefined, store: served.store };
  }

  async listRows(policy: Policy, query: ListQuery, ctx: ReadContext = {}): Promise<ReadResult<{ rows: Row[]; next: string | null }>> {
    const after = query.after === undefined ? undefined : parseKey(policy, query.after, '_after');
    // Validate every filter up front: a bad value is the client's 400, not a target failure.
    for (const [name, text] of Object.entries(query.filters)) filterValue(name, filterColumn(policy, name).kind, text, this.deps.source);
    const decision = this.deps.routing.decide(policy, { stickyKey: ctx.stickyKey, rowKey: undefined });
    const served = await this.serve(
      policy,
      decision.store,
      decision.primary,
      (ms) => this.fetchPage(this.deps.target, policy, query, after, ms),
      (ms) => this.fetchPage(this.deps.source, policy, query, after, ms),
    );
    if (decision.shadow && served.value.length > 0) {
      const other = served.store === 'source' ? this.deps.target : this.deps.source;
      const keys = served.value.map((r) => policy.primaryKey.map((c) => r[c]));
      const shadow = this.deps.shadowBreakers[other.name].run(() => this.fetchKeys(other, policy, keys, this.deps.options.shadowTimeoutMs));
      shadow.catch(() => undefined);
      void this.compare(policy, served, shadow, other.name, keys);
    }
    const rows = served.value;
    const last = rows[rows.length - 1];
    const next = rows.length === query.limit && last ? formatKey(policy.primaryKey.map((c) => last[c])) : null;
    return { value: { rows: rows.map(toApiRow), next }, store: served.store };
  }

  /**
   * Serves from the chosen store; a failed read of the secondary (the target before a
   * cutover) falls back to the primary (counted, never surfaced). A failed primary read is
   * the client's 503. Fetchers take a deadline in ms (0: none).
   */
  private async serve(
    policy: Policy,
    store: StoreName,
    primary: StoreName,
    fromTarget: (deadlineMs: number) => Promise<Row[]>,
    fromSource: (deadlineMs: number) => Promise<Row[]>,
  ): Promise<{ value: Row[]; store: StoreName }> {
    const { events } = this.deps;
    if (primary === 'target') {
      try {
        const value = await fromTarget(0);
        events.emit({ type: 'read', table: policy.name, store: 'target', result: 'ok' });
        return { value, store: 'target' };
      } catch (error) {
        events.emit({ type: 'read', table: policy.name, store: 'target', result: 'error', error: coerceError(error) });
        throw readError(error);
      }
    }
    if (store === 'target') {
      try {
        // Routed here only while the breaker was closed; if it turned half-open since, the
        // trial is the outbox worker's, and this read falls back to the source at once.
        const value = await this.deps.targetBreaker.run(() => fromTarget(this.deps.options.targetTimeoutMs), { trial: false });
        events.emit({ type: 'read', table: policy.name, store: 'target', result: 'ok' });
        return { value, store: 'target' };
      } catch (error) {
        events.emit({ type: 'read', table: policy.name, store: 'target', result: 'fallback', error: coerceError(error) });
      }
    }
    try {
      const value = await fromSource(0);
      events.emit({ type: 'read', table: policy.name, store: 'source', result: 'ok' });
      return { value, store: 'source' };
    } catch (error) {
      events.emit({ type: 'read', table: policy.name, store: 'source', result: 'error', error: coerceError(error) });
      throw readError(error);
    }
  }

  /** Rows of one key, source-shaped (target rows are mapped back). */
  private fetchRow(store: Store, policy: Policy, key: KeyValues, deadlineMs: number): Promise<Row[]> {
    return this.fetchKeys(store, policy, [key], deadlineMs);
  }

  private fetchKeys(store: Store, policy: Policy, keys: readonly KeyValues[], deadlineMs: number): Promise<Row[]> {
    return fetchByKeys(store, policy, keys, deadlineMs > 0 ? { deadlineMs } : {});
  }

  private async fetchPage(store: Store, policy: Policy, query: ListQuery, after: KeyValues | undefined, deadlineMs: number): Promise<Row[]> {
    const onTarget = store.name === 'target';
    const table = onTarget ? policy.targetTable : policy.sourceTable;
    const keyCols = onTarget ? policy.targetPrimaryKey : policy.primaryKey;
    const build = (knex: Knex) => {
      let builder = knex(table).select('*');
      for (const [name, text] of Object.entries(query.filters)) {
        const column = filterColumn(policy, name);
        const col = onTarget ? (column.targetName as string) : name;
        builder = builder.where(col, filterValue(column.name, onTarget ? (column.targetKind ?? column.kind) : column.kind, text, store));
      }
      if (after) builder = whereAfterKey(builder, keyCols, after, store.adapter.keysetRowValues);
      for (const col of keyCols) builder = builder.orderBy(col, 'asc');
      return builder.limit(query.limit);
    };
    const rows = deadlineMs > 0 ? await withDeadlineQuery<Row[]>(store, deadlineMs, build) : ((await build(store.knex)) as Row[]);
    return onTarget ? rows.map((r) => mapBackward(policy, r)) : rows;
  }

  /** Compares served rows with the shadow store's rows of the same keys; never throws. */
  private async compare(
    policy: Policy,
    served: { value: Row[]; store: StoreName },
    shadow: Promise<Row[]>,
    shadowStore: StoreName,
    keys: readonly KeyValues[],
  ): Promise<void> {
    const { events } = this.deps;
    let other: Row[];
    try {
      other = await shadow;
    } catch (error) {
      events.emit({ type: 'shadow', table: policy.name, result: 'error', error: coerceError(error) });
      return;
    }
    const sourceRows = served.store === 'source' ? served.value : other;
    const targetRows = served.store === 'source' ? other : served.value;
    const settings = compareSettings(policy);
    const index = (rows: Row[]) => new Map(rows.map((r) => [formatKey(policy.primaryKey.map((c) => r[c])), r]));
    const bySource = index(sourceRows);
    const byTarget = index(targetRows);
    for (const key of keys) {
      const rowKey = formatKey(key);
      if (this.deps.routing.isPending(policy.name, rowKey)) continue; // written since: not comparable
      const s = bySource.get(rowKey);
      const t = byTarget.get(rowKey);
      let columns: string[];
      if (!s && !t) columns = [];
      else if (!s) columns = ['(row: extra in target)'];
      else if (!t) columns = ['(row: missing in target)'];
      else columns = diffRows(policy, settings, s, t);
      if (columns.length === 0) {
        events.emit({ type: 'shadow', table: policy.name, result: 'match' });
        continue;
      }
      events.emit({ type: 'shadow', table: policy.name, result: 'mismatch', key: rowKey, columns, shadowStore });
      if (policy.file.compare.repair) {
        await this.deps.repair(policy, key).catch((error: unknown) =>
          events.emit({ type: 'background.error', component: 'read.repair', error: coerceError(error) }),
        );
      }
    }
  }
}

function filterColumn(policy: Policy, name: string) {
  const column = policy.columns.get(name);
  if (!column) throw new TandemError('unknown_column', 400, `${name}: unknown column of table ${policy.name}`, { field: name });
  if (column.kind === 'json' || column.kind === 'binary') {
    throw new TandemError('invalid_value', 400, `${name}: cannot filter on a ${column.kind} column`, { field: name });
  }
  return column;
}

function filterValue(name: string, kind: string, text: string, store: Store): Knex.Value {
  switch (kind) {
    case 'integer':
      if (!/^-?\d{1,20}$/.test(text)) throw new TandemError('invalid_value', 400, `${name}: expected an integer`, { field: name });
      return Number.isSafeInteger(Number(text)) ? Number(text) : text;
    case 'boolean':
      if (!/^(true|false|1|0)$/.test(text)) throw new TandemError('invalid_value', 400, `${name}: expected true or false`, { field: name });
      return bindValue(text === 'true' || text === '1', 'boolean', store.dialect) as Knex.Value;
    default:
      return bindValue(text, kind as never, store.dialect) as Knex.Value;
  }
}

function readError(error: unknown): TandemError {
  if (error instanceof TandemError) return error;
  const kind = classifyDbError(error);
  if (kind === 'data') return new TandemError('invalid_value', 400, 'a filter value does not fit its column', { cause: error });
  return new TandemError(kind === 'timeout' ? 'timeout' : 'primary_unavailable', 503, 'the database could not answer the read', {
    cause: error,
    headers: { 'Retry-After': '1' },
  });
}
