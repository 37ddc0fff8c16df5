import type { Knex } from 'knex';
import { classifyDbError, isConnectionLoss } from '../db/classify-error.js';
import type { FoldedWriter, FoldOp } from '../db/dialects/dialect.js';
import type { Store } from '../db/store.js';
import { readStateForShare, type TableState } from '../db/table-state.js';
import { TandemError } from '../errors.js';
import type { EventSink } from '../events.js';
import { decodeImage, encodeImage, toApiRow } from '../outbox/image-codec.js';
import { insertOutboxRow } from '../outbox/insert-outbox-row.js';
import type { OutboxEntry } from '../outbox/outbox-entry.js';
import type { OutboxRoute } from '../outbox/outbox-worker.js';
import type { Policy } from '../policy/policy.js';
import { formatKey } from '../policy/row-key.js';
import { tableRoute, type TableRoute } from '../policy/table-route.js';
import type { KeyValues, Row } from '../shared/row.js';
import type { Applier } from './applier.js';
import { bindRow, deleteRow, insertRow, notFound, tableFrozen, updateChanges, updateRow, upsertRow, type PrimaryChange } from './primary-ops.js';
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
}

export interface WriteServiceOptions {
  /** Remembers keys written here until the secondary has them (read-your-writes). */
  onQueued?: (entries: readonly OutboxEntry[]) => void;
  /** How long the worker leaves fresh rows to the inline apply, ms. */
  inlineGraceMs: number;
  /** Each table's folded single-statement write, where the primary's engine has one (see prepareFolds). */
  folds?: ReadonlyMap<string, FoldedWriter>;
}

const MAX_TRANSACTION_TRIES = 3;

/**
 * The write path (DESIGN §3): one primary transaction per request (all ops of a batch),
 * the state row read FOR SHARE, each change followed by its outbox row, commit, then one
 * inline apply to the secondary through its breaker.
 */
export class WriteService {
  constructor(
    private readonly route: () => OutboxRoute,
    private readonly applier: Applier,
    private readonly events: EventSink,
    private readonly options: WriteServiceOptions,
  ) {}

  async write(ops: readonly WriteOp[], requestId?: string): Promise<WriteOutcome> {
    const route = this.route();
    const primary = route.primary;
    let written: Written;
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
        for (const op of ops) this.events.emit({ type: 'write', table: op.policy.name, store: primary.name, result: 'error', op: op.op, ...(requestId ? { requestId } : {}) });
        throw (await explainSqliteFull(primary, ops, error)) ?? primaryError(error, ops);
      }
    }
    const { results, entries } = written;
    for (const op of ops) this.events.emit({ type: 'write', table: op.policy.name, store: primary.name, result: 'ok', op: op.op, ...(requestId ? { requestId } : {}) });
    if (entries.length === 0) return { results, disposition: 'primary-only' };
    this.options.onQueued?.(entries);
    const applied = await this.applier.applyInline(route, entries);
    return { results, disposition: applied ? 'applied' : 'queued' };
  }

  /** One try on the primary: the folded statement when it applies, else the classic transaction. */
  private async writePrimary(primary: Store, ops: readonly WriteOp[]): Promise<Written> {
    const [only] = ops;
    if (ops.length === 1 && only && only.op !== 'upsert') {
      const fold = this.options.folds?.get(only.policy.name);
      if (fold) {
        const folded = await this.runFolded(fold, primary, only);
        if (folded) return folded;
      }
    }
    const entries: OutboxEntry[] = [];
    const results = await primary.knex.transaction((trx) => this.runOps(trx, primary, ops, entries));
    return { results, entries };
  }

  /** The folded write; undefined when nothing was written and the classic path must run. */
  private async runFolded(fold: FoldedWriter, primary: Store, op: Exclude<WriteOp, { op: 'upsert' }>): Promise<Written | undefined> {
    const route = tableRoute(op.policy, primary.name);
    const foldOp: FoldOp =
      op.op === 'insert'
        ? { op: 'insert', values: bindRow(primary, route, op.values) }
        : op.op === 'update'
          ? { op: 'update', key: op.key, values: bindRow(primary, route, updateChanges(route, op.key, op.values, op.field)) }
          : { op: 'delete', key: op.key };
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
        const text = change.row === undefined ? null : encodeImage(change.row);
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
    const fold = await primary.adapter.prepareFold(primary.knex, route.primary, formatKey);
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
      return new TandemError('invalid_value', 400, `a required column is missing or null${table}${columnHint(error)}`, { cause: error });
    case 'check':
      return new TandemError('invalid_value', 400, `the change violates a check constraint${table}${suffix}`, { cause: error });
    case 'data':
      return new TandemError('invalid_value', 400, `a value does not fit its column${table}${columnHint(error)}`, { cause: error });
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

/** The column a driver names in a constraint error, when it names one (never the value). */
function columnHint(error: unknown): string {
  const column = (error as { column?: unknown }).column;
  return typeof column === 'string' ? ` (column ${column})` : '';
}
