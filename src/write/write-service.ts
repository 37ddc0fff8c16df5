import type { Knex } from 'knex';
import { classifyDbError, isConnectionLoss } from '../db/classify-error.js';
import type { FoldedWriter, FoldOp } from '../db/dialects/dialect.js';
import type { Store, StoreName } from '../db/store.js';
import { withDeadlineTransaction } from '../db/with-deadline.js';
import { readStateForShare, type TableState } from '../db/table-state.js';
import { TandemError } from '../errors.js';
import type { EventSink } from '../events.js';
import { decodeImage, encodeImage, toApiRow } from '../outbox/image-codec.js';
import { insertOutboxRow } from '../outbox/insert-outbox-row.js';
import type { OutboxEntry } from '../outbox/outbox-entry.js';
import type { OutboxRoute } from '../outbox/outbox-worker.js';
import { mapBackward, mapForward } from '../policy/mapping.js';
import type { Policy } from '../policy/policy.js';
import { formatKey } from '../policy/row-key.js';
import { tableRoute, type TableRoute } from '../policy/table-route.js';
import type { KeyValues, Row } from '../shared/row.js';
import type { Applier } from './applier.js';
import { bindRow, deleteRow, insertRow, keyWhere, notFound, tableFrozen, updateChanges, updateRow, upsertRow, type PrimaryChange } from './primary-ops.js';
import { explainSqliteFull } from './id-exhausted.js';

export type WriteOp =
  | { op: 'insert'; policy: Policy; values: Row; field: string }
  | { op: 'update'; policy: Policy; key: KeyValues; values: Row; field: string }
  | { op: 'upsert'; policy: Policy; key: KeyValues; values: Row; field: string }
  | { op: 'delete'; policy: Policy; key: KeyValues; field: string };

export interface OpResult {
  status: 200 | 201 | 204;
  row?: Row;
}

/** What happened to the secondary copy: the `Tandem-Write` header. */
export type WriteDisposition = 'applied' | 'queued' | 'primary-only';

export interface WriteOutcome {
  results: OpResult[];
  disposition: WriteDisposition;
  /** The store whose commit acknowledged the write (header `Tandem-Primary`). */
  primary: StoreName;
}

export interface WriteServiceOptions {
  /** Remembers keys written here until the secondary has them (read-your-writes). */
  onQueued?: (entries: readonly OutboxEntry[]) => void;
  /** How long the worker leaves fresh rows to the inline apply, ms. */
  inlineGraceMs: number;
  /** Each table's folded single-statement write, where the primary's engine has one (see prepareFolds). */
  folds?: ReadonlyMap<string, FoldedWriter>;
  /** Reads a table's state rows again after its primary refused a write (a stale view). */
  refresh?: (table: string) => Promise<unknown>;
  /** How long a write waits while its table switches its primary, then 503, ms. Default 0. */
  holdMs?: number;
  /**
   * A deadline for the primary transaction on this store (undefined: none): past it the
   * connection is cut and the client gets 503, so a black-holed primary never pins requests.
   */
  primaryDeadlineMs?: (primary: Store) => number | undefined;
}

const MAX_TRANSACTION_TRIES = 3;

/**
 * The write path (DESIGN §3): one primary transaction per request (all ops of a batch),
 * the state row read FOR SHARE, each change followed by its outbox row, commit, then one
 * inline apply to the secondary through its breaker.
 */
export class WriteService {
  constructor(
    /** The route whose primary is the table's primary; undefined while a switch holds the table frozen. */
    private readonly route: (table: string) => OutboxRoute | undefined,
    private readonly applier: Applier,
    private readonly events: EventSink,
    private readonly options: WriteServiceOptions,
  ) {}

  /**
   * Picks the primary from this replica's view and writes there. The state row read inside
   * the transaction is the authority: while the table is frozen (a switch) or when the view
   * was stale (another replica switched it), the write is refused before it changes
   * anything, the view is read again and the write retried, for up to `holdMs`.
   */
  async write(ops: readonly WriteOp[], requestId?: string): Promise<WriteOutcome> {
    const holdUntil = Date.now() + (this.options.holdMs ?? 0);
    for (;;) {
      const route = this.routeOf(ops);
      if (route) {
        try {
          return await this.writeOn(route, ops, requestId);
        } catch (error) {
          if (!(error instanceof TandemError) || error.code !== 'table_frozen') throw error;
          if (Date.now() >= holdUntil) throw error;
        }
      } else if (Date.now() >= holdUntil) {
        throw tableFrozen(ops[0]?.policy.name ?? '');
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
      const tables = [...new Set(ops.map((o) => o.policy.name))];
      await Promise.all(tables.map((t) => this.options.refresh?.(t))).catch(() => undefined);
    }
  }

  /** One route for every op of the request; a batch over tables with different primaries is refused. */
  private routeOf(ops: readonly WriteOp[]): OutboxRoute | undefined {
    let chosen: OutboxRoute | undefined;
    for (const op of ops) {
      const route = this.route(op.policy.name);
      if (!route) return undefined;
      if (chosen && chosen.primary !== route.primary) {
        throw new TandemError('bad_request', 400, `ops: a batch must stay on one primary; ${op.policy.name} has its primary on the ${route.primary.name}`, { field: 'ops' });
      }
      chosen = route;
    }
    return chosen;
  }

  private async writeOn(route: OutboxRoute, givenOps: readonly WriteOp[], requestId?: string): Promise<WriteOutcome> {
    const primary = route.primary;
    // API values are source-shaped: on the target they take the target's column names.
    const onTarget = primary.name === 'target';
    const ops = onTarget ? givenOps.map(toTargetNames) : givenOps;
    let written: Written;
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      try {
        written = await this.writePrimary(primary, ops);
        break;
      } catch (error) {
        if (error instanceof TandemError) throw error;
        const kind = classifyDbError(error);
        // A lost race between two upserts of a new key, a deadlock or a serialization failure
        // rolled the whole transaction back: nothing was written, so running it again is safe.
        const retryable = kind === 'transient' || (kind === 'unique' && ops.some((o) => o.op === 'upsert'));
        if (retryable && attempt < MAX_TRANSACTION_TRIES && !isConnectionLoss(error)) continue;
        const durationMs = performance.now() - started;
        for (const op of ops) this.events.emit({ type: 'write', table: op.policy.name, store: primary.name, result: 'error', op: op.op, durationMs, ...(requestId ? { requestId } : {}) });
        throw (await explainSqliteFull(primary, ops, error)) ?? primaryError(error, ops);
      }
    }
    const { entries } = written;
    // Responses are always source-shaped: rows written on the target are mapped back.
    const results = onTarget ? written.results.map((r, i) => (r.row ? { ...r, row: mapBackward((givenOps[i] as WriteOp).policy, r.row) } : r)) : written.results;
    const durationMs = performance.now() - started;
    for (const op of ops) this.events.emit({ type: 'write', table: op.policy.name, store: primary.name, result: 'ok', op: op.op, durationMs, ...(requestId ? { requestId } : {}) });
    if (entries.length === 0) return { results, disposition: 'primary-only', primary: primary.name };
    this.options.onQueued?.(entries);
    const applied = await this.applier.applyInline(route, entries);
    return { results, disposition: applied ? 'applied' : 'queued', primary: primary.name };
  }

  /** One try on the primary: the folded statement when it applies, else the classic transaction. */
  private async writePrimary(primary: Store, ops: readonly WriteOp[]): Promise<Written> {
    const [only] = ops;
    if (ops.length === 1 && only && only.op !== 'upsert') {
      // Folds are prepared on the source (app.ts): after a cutover the classic path runs.
      const fold = primary.name === 'source' ? this.options.folds?.get(only.policy.name) : undefined;
      if (fold) {
        const folded = await this.runFolded(fold, primary, only);
        if (folded) return folded;
      }
    }
    const entries: OutboxEntry[] = [];
    const deadline = this.options.primaryDeadlineMs?.(primary);
    const results =
      deadline === undefined
        ? await primary.knex.transaction((trx) => this.runOps(trx, primary, ops, entries))
        : await withDeadlineTransaction(primary, deadline, (trx) => this.runOps(trx, primary, ops, entries));
    return { results, entries };
  }

  /** The folded write; undefined when nothing was written and the classic path must run. */
  private async runFolded(fold: FoldedWriter, primary: Store, op: Exclude<WriteOp, { op: 'upsert' }>): Promise<Written | undefined> {
    const route = tableRoute(op.policy, primary.name);
    const foldOp: FoldOp =
      op.op === 'insert'
        ? { op: 'insert', values: bindRow(primary, route, op.values) }
        : op.op === 'update'
          ? { op: 'update', key: op.key, where: keyWhere(primary, route, op.key), values: bindRow(primary, route, updateChanges(route, op.key, op.values, op.field)) }
          : { op: 'delete', key: op.key, where: keyWhere(primary, route, op.key) };
    if (!fold.handles(foldOp)) return undefined;
    const now = Date.now();
    const outcome = await fold.run(foldOp, now, now + this.options.inlineGraceMs);
    switch (outcome.kind) {
      case 'fallback':
        return undefined;
      case 'frozen':
        throw tableFrozen(op.policy.name);
      case 'missing':
        if (op.op === 'insert') throw new TandemError('internal', 500, 'insert returned no row');
        throw notFound(route, keyFieldOf(op));
      case 'written': {
        const change: PrimaryChange = { status: op.op === 'insert' ? 201 : op.op === 'update' ? 200 : 204, key: outcome.key, row: outcome.row };
        if (outcome.outbox === null) return { results: [resultOf(change)], entries: [] };
        const text = outcome.outbox.image !== undefined ? outcome.outbox.image : change.row === undefined ? null : encodeImage(change.row);
        return { results: [resultOf(change)], entries: [this.entryOf(op.policy.name, change, text, outcome.epoch, outcome.outbox.id, now)] };
      }
    }
  }

  private async runOps(trx: Knex.Transaction, primary: Store, ops: readonly WriteOp[], entries: OutboxEntry[]): Promise<OpResult[]> {
    const states = new Map<string, TableState>();
    const results: OpResult[] = [];
    for (const op of ops) {
      let state = states.get(op.policy.name);
      if (!state) {
        state = await readStateForShare(trx, primary.adapter, op.policy.name);
        if (!state) throw new TandemError('internal', 500, `no state row for table ${op.policy.name}`);
        if (state.role !== 'primary') throw tableFrozen(op.policy.name);
        states.set(op.policy.name, state);
        this.options.folds?.get(op.policy.name)?.noteStage(state.dualWrite);
      }
      const change = await runOp(trx, primary, op);
      if (state.dualWrite) {
        const now = Date.now();
        // Encoded once: the inline apply sees exactly what the worker would read back.
        const text = change.row === undefined ? null : encodeImage(change.row);
        const entry = this.entryOf(op.policy.name, change, text, state.epoch, '', now);
        entry.id = await insertOutboxRow(trx, primary, {
          table: entry.table,
          rowKey: entry.rowKey,
          op: entry.op,
          image: text,
          epoch: entry.epoch,
          notBefore: now + this.options.inlineGraceMs,
        });
        entries.push(entry);
      }
      results.push(resultOf(change));
    }
    return results;
  }

  /**
   * The outbox entry of one change, its image as the worker would decode it from the
   * outbox row (the JSON round trip), so the inline apply and a retry apply the same values.
   */
  private entryOf(table: string, change: PrimaryChange, text: string | null, epoch: number, id: string, now: number): OutboxEntry {
    return {
      id,
      table,
      rowKey: formatKey(change.key),
      op: text === null ? 'delete' : 'upsert',
      image: text === null ? null : decodeImage(text),
      epoch,
      attempts: 0,
      createdAt: now,
    };
  }
}

interface Written {
  results: OpResult[];
  entries: OutboxEntry[];
}

function resultOf(change: PrimaryChange): OpResult {
  return change.row === undefined ? { status: change.status } : { status: change.status, row: toApiRow(change.row) };
}

/**
 * An op with the target's column names (the target is primary). A value for a column the
 * target excludes has nowhere to go and is dropped (README: excluded columns after cutover).
 */
function toTargetNames(op: WriteOp): WriteOp {
  if (op.op === 'delete') return op;
  return { ...op, values: mapForward(op.policy, op.values) };
}

function keyFieldOf(op: WriteOp): string {
  return op.field === 'values' ? 'key' : `${op.field.replace(/\.values$/, '')}.key`;
}

function runOp(trx: Knex.Transaction, primary: Store, op: WriteOp): Promise<PrimaryChange> {
  const keyField = keyFieldOf(op);
  const route = tableRoute(op.policy, primary.name);
  switch (op.op) {
    case 'insert':
      return insertRow(trx, primary, route, op.values, op.field);
    case 'update':
      return updateRow(trx, primary, route, op.key, op.values, op.field, keyField);
    case 'upsert':
      return upsertRow(trx, primary, route, op.key, op.values, op.field);
    case 'delete':
      return deleteRow(trx, primary, route, op.key, keyField);
  }
}

/**
 * Prepares the folded single-statement write of every policy's table on `primary`, where its
 * engine has one (an empty map otherwise). The outbox key it writes is formatKey's.
 */
export async function prepareFolds(primary: Store, policies: Iterable<Policy>): Promise<Map<string, FoldedWriter>> {
  const folds = new Map<string, FoldedWriter>();
  for (const policy of policies) {
    const route: TableRoute = tableRoute(policy, primary.name);
    const fold = await primary.adapter.prepareFold(primary.knex, route.primary, formatKey, encodeImage);
    if (fold) folds.set(policy.name, fold);
  }
  return folds;
}


/** A failure on the primary is the client's answer: map it to a status with a stable code. */
function primaryError(error: unknown, ops: readonly WriteOp[]): TandemError {
  const kind = classifyDbError(error);
  const table = ops.length === 1 ? ` in ${ops[0]?.policy.name}` : '';
  const detail = (error as { detail?: unknown }).detail;
  const suffix = typeof detail === 'string' ? `: ${detail}` : '';
  switch (kind) {
    case 'unique':
      return new TandemError('conflict', 409, `a row with the same unique value already exists${table}${suffix}`, { cause: error });
    case 'foreign_key':
      return new TandemError('conflict', 409, `the change violates a foreign key${table}${suffix}`, { cause: error });
    case 'not_null':
      return valueError('a required column is missing or null', table, error, ops);
    case 'check':
      return new TandemError('invalid_value', 400, `the change violates a check constraint${table}${suffix}`, { cause: error });
    case 'data':
      return valueError('a value does not fit its column', table, error, ops);
    case 'timeout':
      return new TandemError('timeout', 503, 'the primary did not finish the statement in time', {
        cause: error,
        headers: { 'Retry-After': '1' },
      });
    default:
      return new TandemError('primary_unavailable', 503, 'the primary database is unavailable', {
        cause: error,
        headers: { 'Retry-After': '1' },
      });
  }
}

/** A 400 for a value the primary refused, naming the field (`ops[1].values.price`) when it can be told. */
function valueError(problem: string, table: string, error: unknown, ops: readonly WriteOp[]): TandemError {
  const found = errorField(error, ops);
  if (!found) return new TandemError('invalid_value', 400, `${problem}${table}`, { cause: error });
  if (!found.op) return new TandemError('invalid_value', 400, `${problem}${table} (column ${found.column})`, { cause: error });
  const field = `${found.op.field}.${found.column}`;
  return new TandemError('invalid_value', 400, `${field}: ${problem} of ${found.op.policy.name}`, { cause: error, field });
}

/**
 * The column a data or not-null error is about — and the op, when only one can be meant —
 * without guessing and never with the value: the driver's `column` field (PostgreSQL's
 * not-null), the column MySQL/MariaDB name in their message ("Out of range value for column
 * 'age' at row 1"), or, as PostgreSQL's data errors name only a type ("numeric field
 * overflow", "invalid input syntax for type uuid"), the columns of that type among the
 * values written.
 */
function errorField(error: unknown, ops: readonly WriteOp[]): { column: string; op: WriteOp | undefined } | undefined {
  const e = error as { column?: unknown; message?: unknown; sqlMessage?: unknown } | null;
  const message = String(e?.sqlMessage ?? e?.message ?? '');
  const named = typeof e?.column === 'string' ? e.column : /for column (\S+) at row \d+/i.exec(message)?.[1]?.replace(/[`'"]/g, '').split('.').pop();
  const type = named ? undefined : /numeric field overflow/i.test(message) ? 'numeric' : /for type ([a-z][a-z0-9 ]*?)(?:\(|:|$)/i.exec(message)?.[1]?.trim().toLowerCase();
  const candidates: Array<{ column: string; op: WriteOp }> = [];
  for (const op of ops) {
    if (!('values' in op)) continue;
    for (const name of Object.keys(op.values)) {
      const column = op.policy.columns.get(name);
      if (!column) continue;
      const fits = named ? name === named : type === 'numeric' ? column.kind === 'decimal' : column.type === type;
      if (fits) candidates.push({ column: name, op });
    }
  }
  if (candidates.length === 1) return candidates[0];
  const columns = new Set(candidates.map((c) => c.column));
  if (columns.size === 1) return { column: [...columns][0] as string, op: undefined };
  // A column named but not among the values (a NOT NULL column left out): the op, when there is one.
  return named ? { column: named, op: ops.length === 1 ? ops[0] : undefined } : undefined;
}
