import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type pg from 'pg';
import { SqlParseError, type SqlTable, type StatementPlan } from './classify.js';
import {
  BodyReader,
  commandComplete,
  errorResponse,
  int16,
  message,
  noData,
  parseComplete,
  readDataRow,
  readErrorFields,
  closeComplete,
  dataRow,
  readyForQuery,
  rowDescription,
  SQLSTATE,
  type ErrorFields,
  type TxStatus,
} from './protocol.js';
import type { SqlBackend } from './sql-backend.js';
import { translateRead, type ReadParams } from './knex-read.js';
import { planOtherEngineBatch, readBind } from './other-engine-batch.js';
import { placeAfterCutover, refuseStaleRead, refuseWriteAfterCutover } from './refuse-after-cutover.js';
import { renameForTarget } from './rename.js';
import { Exchange, backendPid } from './upstream.js';

/** A prepared statement as the session knows it. */
interface Statement {
  /** The client's text (its fingerprint is logged). */
  sql: string;
  plan: StatementPlan;
  fingerprint: string;
  /** What the primary runs (the rewrite for writes). */
  upstreamSql: string;
  /** Parameter type OIDs as the client sent them. */
  types: number[];
  /** Shared name on pooled connections: equal text and types share one server-side statement. */
  upstreamName: string;
  /** The plan as classified, checked again at each Bind (a cutover may have come since the Parse). */
  classified: StatementPlan;
}

/** A read whose answer is compared with the other store's (SqlShadowReads); `params` for a parameterised one. */
interface ShadowedRead {
  plan: Extract<StatementPlan, { kind: 'read' }>;
  fingerprint: string;
  params?: ReadParams;
}

/** Answers to the client and the reports of their statements, held back until they are final. */
interface Held {
  answers: Buffer[];
  reports: Array<() => void>;
}

/** A read's text and shared name for a PostgreSQL target (the policy's renames applied), or why it has none. */
type TargetForm = { sql: string; name: string } | { reason: string };

/** Target forms by plan (the classifier caches plans by text, so a statement is renamed once). */
const targetForms = new WeakMap<StatementPlan, TargetForm>();

/** How the answers to one message sent upstream are relayed. */
type Expect =
  | { kind: 'parse'; swallow: boolean; onFail?: () => void }
  | { kind: 'bind'; swallow: boolean }
  | { kind: 'close' }
  | { kind: 'describe'; plan: StatementPlan | undefined }
  | { kind: 'execute'; stmt: Statement | undefined; started: number }
  | { kind: 'query'; stmts: Array<{ plan: StatementPlan; fingerprint: string }>; index: number; started: number }
  | { kind: 'local'; bytes: Buffer }
  | { kind: 'error'; fields: ErrorFields }
  | { kind: 'sync' };

/** Prepared statements each pooled connection holds (by shared name), and its unnamed one. */
const preparedOn = new WeakMap<object, Set<string>>();
const unnamedOn = new WeakMap<object, Statement>();
/** The session whose SET statements a pooled connection carries (absent: its defaults). */
const settingsOf = new WeakMap<object, number>();

/** The message type bytes of ErrorResponse and DataRow. */
const ERROR_RESPONSE = 0x45;
const DATA_ROW = 0x44;
/** A shadowed answer longer than this is not compared (its rows would be held in memory). */
const MAX_CAPTURED_ROWS = 10_000;

/** A statement the primary refuses to parse: stands in for one the SQL front refused, so the transaction fails as PostgreSQL's would. */
const FAILING_SQL = 'SELECT 1/0';

/**
 * One client connection after authentication: the simple and extended query protocols
 * relayed to the primary with statements classified, writes rewritten, reads routed.
 * A pooled connection is held only while the client is inside a transaction.
 */
export class SqlSession {
  private txStatus: TxStatus = 'I';
  /** The connection a transaction runs on, and its server's pool (the source's, or the target's after cutover). */
  private held: pg.PoolClient | undefined;
  private heldPool: pg.Pool | undefined;
  /** A BEGIN the SQL front answered itself: sent with the first statement, to the server that statement needs. */
  private deferredBegin: string | undefined;
  private exchange: { ex: Exchange; client: pg.PoolClient; pool: pg.Pool } | undefined;
  private readonly statements = new Map<string, Statement>();
  private unnamed: Statement | undefined;
  private readonly portals = new Map<string, Statement | undefined>();
  private expects: Expect[] = [];
  /** Frontend bytes for the current exchange, written at Flush/Sync in one go. */
  private pendingUp: Buffer[] = [];
  /** Extended-protocol messages since the last Sync/Flush. */
  private batch: Array<{ type: string; body: Buffer; raw: Buffer }> = [];
  private corked = false;
  private closed = false;
  /** Policy tables written in the current transaction (dual-write outbox rows to hand over). */
  private wroteTables = new Set<string>();
  private rowsSeen = 0;
  /** Session-level SET statements, replayed on each pooled connection the session borrows. */
  private settings: string[] = [];
  private countValue: number | undefined;
  /** While an extended-protocol read runs on the target: its answers and reports, held until it succeeds. */
  private onTarget: Held | undefined;
  /** Answers and reports held back (a target read, or an autocommit write that may be retried after a switch), sent once final. */
  private holding: Held | undefined;
  /** A shadowed read the source serves: its rows as relayed, compared with the target's afterwards (SqlShadowReads). */
  private capture: (ShadowedRead & { rows: Buffer[]; failed: boolean }) | undefined;
  /** While an autocommit batch of writes to tables whose primary moved runs on the PostgreSQL target. */
  private writingOnTarget = false;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly backend: SqlBackend,
  ) {}

  /** Handles one frontend message (called in order; each awaited before the next). */
  async handle(type: string, body: Buffer, raw: Buffer): Promise<void> {
    switch (type) {
      case 'Q':
        await this.flushBatch(false);
        await this.simpleQuery(new BodyReader(body).cstring());
        return;
      case 'P':
      case 'B':
      case 'D':
      case 'E':
      case 'C':
        this.batch.push({ type, body, raw });
        return;
      case 'H':
        await this.flushBatch(false);
        return;
      case 'S': {
        const tables = this.autocommitWrites(this.plansOfBatch(this.batch));
        if (!tables) return this.flushBatch(true);
        const batch = this.batch;
        await this.retryingSwitch(tables, () => {
          this.batch = [...batch];
          return this.flushBatch(true);
        });
        return;
      }
      case 'F':
        this.send(errorResponse({ code: SQLSTATE.refused, message: 'the function-call protocol is not supported by Tandem' }));
        return;
      default:
        throw new ProtocolError(`unexpected message type "${type}"`);
    }
  }

  // ---------------------------------------------------------------- simple query

  /** A query string; an autocommit one that only writes is retried across a primary switch (retryingSwitch). */
  private async simpleQuery(sql: string): Promise<void> {
    let plans: StatementPlan[] | undefined;
    try {
      plans = this.backend.classifier.classify(sql).statements;
    } catch {
      plans = undefined;
    }
    const tables = this.autocommitWrites(plans);
    if (!tables) return this.simpleQueryOnce(sql);
    return this.retryingSwitch(tables, () => this.simpleQueryOnce(sql));
  }

  /**
   * The tables statements write, when they are nothing but INSERT/UPDATE/DELETE of policy
   * tables run in autocommit, or as the first statement of a transaction whose BEGIN was held
   * back (nothing has run in it yet, so it can be opened again elsewhere).
   */
  private autocommitWrites(plans: readonly StatementPlan[] | undefined): string[] | undefined {
    const fresh = (this.txStatus === 'I' && this.deferredBegin === undefined) || (this.deferredBegin !== undefined && !this.held);
    if (!fresh || this.exchange || !plans || plans.length === 0) return undefined;
    return plans.every((p) => p.kind === 'write') ? writtenTables(plans) : undefined;
  }

  /**
   * Runs an autocommit write with its answers held. When a primary switch refused it (the
   * rewrite's state-row check: the table frozen, or this replica's view stale), nothing
   * changed — the statement failed as a whole — so the view is read again and the write
   * retried, on the primary the switch ends with, until `cutover.holdMs` has passed (as the
   * HTTP API does). Any other answer is the client's.
   */
  private async retryingSwitch(tables: string[], attempt: () => Promise<void>): Promise<void> {
    const started = Date.now();
    const begin = this.deferredBegin;
    let retried = false;
    for (;;) {
      const saved = { statements: new Map(this.statements), unnamed: this.unnamed };
      const held: Held = { answers: [], reports: [] };
      this.holding = held;
      try {
        await attempt();
      } finally {
        this.holding = undefined;
      }
      const refused = held.answers.some(isSwitchRefusal);
      if (!refused || Date.now() - started >= this.backend.holdMs) {
        if (retried) this.backend.emit({ type: 'sql.switch_hold', table: tables[0] ?? '', waitedMs: Date.now() - started, settled: !refused });
        for (const report of held.reports) report();
        for (const bytes of held.answers) this.send(bytes);
        return;
      }
      retried = true;
      this.undoAttempt(saved);
      if (begin !== undefined) {
        // The transaction opened for this statement is dropped, and held back again.
        const opened = this.held;
        this.held = undefined;
        if (opened && (await runQuietly(opened, 'ROLLBACK'))) opened.release();
        else opened?.release(new Error('rollback failed'));
        this.deferredBegin = begin;
        this.txStatus = 'T';
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
      await this.backend.refresh(tables);
    }
  }

  /** After an attempt whose answer is not sent: the session's statements as they were before it, outside a transaction. */
  private undoAttempt(saved: { statements: Map<string, Statement>; unnamed: Statement | undefined }): void {
    this.statements.clear();
    for (const [name, stmt] of saved.statements) this.statements.set(name, stmt);
    this.unnamed = saved.unnamed;
    this.portals.clear();
    this.expects = [];
    this.txStatus = 'I';
  }

  private async simpleQueryOnce(sql: string): Promise<void> {
    const started = performance.now();
    let classified;
    try {
      classified = this.backend.classifier.classify(sql);
    } catch (error) {
      if (!(error instanceof SqlParseError)) throw error;
      this.backend.emit({ type: 'sql.parse_error' });
      this.report({ kind: 'refuse', stmtKind: 'other', table: '', reason: 'parse_error', message: error.message }, '', 'error', started, SQLSTATE.syntax);
      await this.run([{ kind: 'error', fields: { code: SQLSTATE.syntax, message: error.message, position: error.position } }, { kind: 'sync' }], () =>
        message('Q', FAILING_SQL),
      );
      return;
    }
    const guarded = classified.statements.map((plan) => this.guard(plan));
    if (guarded.length === 0) {
      // An empty query string: PostgreSQL answers EmptyQueryResponse.
      await this.run([{ kind: 'query', stmts: [], index: 0, started }, { kind: 'sync' }], () => message('Q', sql));
      return;
    }
    if (this.answerTxControl(guarded, sql, classified.fingerprint, started)) return;
    if (this.deferredBegin !== undefined) await this.openDeferred(this.wantsTarget(guarded) ? 'target' : 'source');
    if (this.runsOnTarget()) {
      const plans = guarded.map((p) => this.onTargetPlan(p));
      for (const p of plans) this.noteSetting(p);
      await this.run([{ kind: 'query', stmts: plans.map((plan) => ({ plan, fingerprint: classified.fingerprint })), index: 0, started }, { kind: 'sync' }], () =>
        message('Q', plans.map((p) => (p.kind === 'refuse' ? FAILING_SQL : p.sql)).join(';\n')),
      );
      return;
    }
    if (await this.writeOnTarget(guarded, classified.fingerprint, started)) return;
    if (await this.readOnTarget(guarded, classified.fingerprint, started)) return;
    // What the target did not answer runs on the source.
    const plans = guarded.map((p) => refuseWriteAfterCutover(this.backend, p) ?? refuseStaleRead(this.backend, p) ?? p);
    for (const p of plans) this.noteSetting(p);
    const texts = plans.map((p) => (p.kind === 'write' ? p.sql : p.kind === 'refuse' ? FAILING_SQL : p.sql));
    const rewritten = plans.some((p) => p.kind === 'write' || p.kind === 'refuse');
    const text = rewritten ? texts.join(';\n') : sql;
    const capture = this.capture;
    try {
      await this.run(
        [{ kind: 'query', stmts: plans.map((plan) => ({ plan, fingerprint: classified.fingerprint })), index: 0, started }, { kind: 'sync' }],
        () => message('Q', text),
      );
    } finally {
      this.capture = undefined;
    }
    if (capture && !capture.failed && plans[0] === capture.plan) this.backend.shadowReads.compare(capture.plan, 'source', textRows(capture.rows), capture.fingerprint);
  }

  /**
   * A write to a table whose primary moved to the target is refused unless the target can
   * take it (where it runs is decided with the rest of the query: writeOnTarget); a guarded
   * statement is refused while its table dual-writes, else it runs as it is.
   */
  private guard(plan: StatementPlan): StatementPlan {
    const moved = placeAfterCutover(this.backend, plan, true);
    if (moved) return 'refuse' in moved ? moved.refuse : plan;
    if (plan.kind !== 'guarded') return plan;
    if (!this.backend.dualWriting(plan.table)) return { kind: 'forward', stmtKind: plan.stmtKind, sql: plan.sql };
    return { kind: 'refuse', stmtKind: plan.stmtKind, table: plan.table, reason: plan.reason, message: plan.message };
  }

  /**
   * With a PostgreSQL target, a BEGIN outside a transaction is answered here and held back:
   * the transaction opens with its first statement, on the server that statement needs (the
   * target for writes and reads of tables whose primary moved there, else the source), and
   * when a primary switch refuses that first statement it is opened again on the new primary
   * (retryingSwitch). PostgreSQL takes a transaction's snapshot at its first statement, so
   * nothing the client can see changes. A COMMIT or ROLLBACK before any statement is
   * answered here too.
   */
  private answerTxControl(plans: StatementPlan[], sql: string, fingerprint: string, started: number): boolean {
    const [plan] = plans;
    if (plans.length !== 1 || plan?.kind !== 'forward' || !plan.tx) return false;
    if (plan.tx === 'begin' && this.txStatus === 'I' && !this.exchange && this.backend.target) {
      this.deferredBegin = sql;
      this.txStatus = 'T';
      this.send(commandComplete('BEGIN'));
    } else if (plan.tx !== 'begin' && this.deferredBegin !== undefined) {
      this.deferredBegin = undefined;
      this.txStatus = 'I';
      this.send(commandComplete(plan.tx === 'commit' ? 'COMMIT' : 'ROLLBACK'));
    } else return false;
    this.send(readyForQuery(this.txStatus));
    this.report(plan, fingerprint, 'ok', started, undefined, 'source');
    return true;
  }

  /** Whether statements need the target: they write or read tables whose primary moved there, and no other policy table. */
  private wantsTarget(plans: readonly StatementPlan[]): boolean {
    const moved = (p: StatementPlan) => (p.kind === 'read' || p.kind === 'write') && p.tables.every((t) => this.backend.primaryOf(t) === 'target');
    const policyTable = (p: StatementPlan) => p.kind !== 'forward';
    return plans.some(moved) && plans.every((p) => !policyTable(p) || moved(p));
  }

  /** Opens the held-back transaction on the chosen server: its BEGIN, with the session's SETs. */
  private async openDeferred(store: 'source' | 'target'): Promise<void> {
    const begin = this.deferredBegin as string;
    this.deferredBegin = undefined;
    const pool = store === 'target' && this.backend.target ? this.backend.target : this.backend.primary;
    const client = await pool.connect();
    await this.applySettings(client);
    if (!(await runQuietly(client, begin))) {
      client.release();
      throw new Error('the transaction could not be opened');
    }
    this.held = client;
    this.heldPool = pool;
  }

  /** Whether statements now run on the target: an autocommit batch of moved writes, or a transaction opened there. */
  private runsOnTarget(): boolean {
    return this.writingOnTarget || (this.held !== undefined && this.heldPool !== this.backend.primary);
  }

  /**
   * A statement in a transaction on the target: writes and single-table reads of moved tables
   * in their renamed forms, statements that name no policy table as they are; anything that
   * needs the source (or cannot be renamed) is refused, failing the transaction.
   */
  private onTargetPlan(plan: StatementPlan): StatementPlan {
    if (plan.kind === 'forward' || plan.kind === 'refuse') return plan;
    const placed = placeAfterCutover(this.backend, plan, true);
    if (placed) return 'write' in placed ? placed.write : placed.refuse;
    const form = plan.kind === 'read' && plan.tables.every((t) => this.backend.primaryOf(t) === 'target') ? this.targetForm(plan) : undefined;
    if (form && 'sql' in form) return { ...plan, sql: form.sql } as StatementPlan;
    const why = form ? `the target cannot answer it: ${form.reason}` : 'it names a table whose primary is still the source';
    return {
      kind: 'refuse',
      stmtKind: plan.stmtKind,
      table: plan.table,
      reason: 'target_primary',
      message: `this transaction runs on the target (${this.backend.targetDialect}), where its first statement's table moved at cutover, and this statement cannot run there: ${why}; run it in a transaction of its own`,
    };
  }

  /**
   * Writes to tables whose primary moved to the PostgreSQL target, run there (renamed, their
   * outbox rows in the target's outbox for the reverse replication) when the query string
   * is nothing else and the session is outside a transaction. Otherwise the source path
   * refuses them (refuseWriteAfterCutover says why).
   */
  private async writeOnTarget(plans: StatementPlan[], fingerprint: string, started: number): Promise<boolean> {
    if (this.txStatus !== 'I' || this.exchange) return false;
    const forms = plans.map((p) => placeAfterCutover(this.backend, p, true));
    const writes = forms.map((f) => (f && 'write' in f ? f.write : undefined));
    if (!writes.every((w) => w !== undefined)) return false;
    await this.run(
      [{ kind: 'query', stmts: writes.map((plan) => ({ plan, fingerprint })), index: 0, started }, { kind: 'sync' }],
      () => message('Q', writes.map((w) => w.sql).join(';\n')),
      'target',
    );
    return true;
  }

  /**
   * A single read of one policy table outside a transaction, served by a PostgreSQL target
   * when routing says so (read %, sticky per session), with the policy's renames applied to
   * the parse tree. The target's answer is held until it is complete: a failed target read is
   * run on the primary instead (counted), so the client never sees half of one.
   */
  private async readOnTarget(plans: StatementPlan[], fingerprint: string, started: number): Promise<boolean> {
    const [plan] = plans;
    if (plans.length !== 1 || plan?.kind !== 'read' || plan.stmtKind !== 'select' || this.txStatus !== 'I' || this.exchange) return false;
    const pool = this.backend.target;
    const route = (store: 'source' | 'target', reason: string) => this.backend.emit({ type: 'sql.read_route', table: plan.table, store, reason });
    const decision = this.backend.routeRead(plan.table, `sql-session-${this.id}`);
    // Target connections carry no session's SETs (time zone, search_path, …): the answer could differ.
    const shadow = decision.shadow && this.settings.length === 0;
    if (decision.store !== 'target') {
      route('source', decision.reason);
      if (shadow) this.capture = { plan, fingerprint, rows: [], failed: false };
      return false;
    }
    if (this.settings.length > 0) {
      route('source', 'the session has SET parameters');
      return false;
    }
    const table = this.backend.classifier.table(plan.table);
    if (!pool) return this.readOnOtherEngine(plan, table, fingerprint, started, decision.reason, shadow);
    const renamed = plan.routable !== undefined || !table ? { reason: plan.routable ?? 'unknown table' } : renameForTarget(plan.select, table);
    if ('reason' in renamed) {
      route('source', renamed.reason);
      return false;
    }
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch {
      route('source', 'target read failed');
      return false;
    }
    const answer: Buffer[] = [];
    let failed = false;
    const ex = new Exchange(client, (type, _body, raw) => {
      if (type === 'E') failed = true;
      if (type !== 'Z') answer.push(raw);
    });
    ex.write(message('Q', renamed.sql));
    try {
      await ex.result();
      client.release();
    } catch (error) {
      client.release(error as Error);
      failed = true;
    }
    if (failed) {
      route('source', 'target read failed');
      return false;
    }
    route('target', decision.reason);
    for (const raw of answer) this.send(raw);
    this.send(readyForQuery('I'));
    this.report(plan, fingerprint, 'ok', started, undefined, 'target');
    if (shadow) this.backend.shadowReads.compare(plan, 'target', dataRowsOf(answer), fingerprint);
    return true;
  }

  /** A read a target of another engine answers: the safe subset, rebuilt with knex, its values in PostgreSQL's text form. */
  private async readOnOtherEngine(
    plan: Extract<StatementPlan, { kind: 'read' }>,
    table: SqlTable | undefined,
    fingerprint: string,
    started: number,
    why: string,
    shadow: boolean,
  ): Promise<boolean> {
    const other = this.backend.otherTarget;
    const route = (store: 'source' | 'target', reason: string) => this.backend.emit({ type: 'sql.read_route', table: plan.table, store, reason });
    if (!other || !table) {
      route('source', 'no target to read from');
      return false;
    }
    const translated = plan.routable !== undefined ? { reason: plan.routable } : translateRead(plan.select, table, other);
    if ('reason' in translated) {
      route('source', translated.reason);
      return false;
    }
    let rows: Array<Array<string | null>>;
    try {
      rows = await translated.run(other.knex);
    } catch {
      route('source', 'target read failed');
      return false;
    }
    route('target', why);
    this.send(rowDescription(translated.fields));
    for (const row of rows) this.send(dataRow(row));
    this.send(commandComplete(`SELECT ${rows.length}`));
    this.send(readyForQuery('I'));
    this.report(plan, fingerprint, 'ok', started, undefined, 'target');
    if (shadow) this.backend.shadowReads.compare(plan, 'target', rows, fingerprint);
    return true;
  }

  // ---------------------------------------------------------------- extended query

  /** Sends the batch gathered since the last Sync/Flush; with `sync`, waits for ReadyForQuery. */
  private async flushBatch(sync: boolean): Promise<void> {
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0 && !sync && !this.exchange) return;
    if (sync && !this.exchange && this.txStatus === 'I' && (await this.batchOnTarget(batch))) return;
    const onTarget = (this.deferredBegin !== undefined || (sync && !this.exchange && this.txStatus === 'I')) && this.writesOfBatch(batch);
    if (this.deferredBegin !== undefined && batch.length > 0) await this.openDeferred(onTarget ? 'target' : 'source');
    const store = sync && !this.exchange && this.txStatus === 'I' && onTarget ? 'target' : 'source';
    const expects: Expect[] = [];
    const build = (client: pg.PoolClient): Buffer => {
      const out: Buffer[] = [];
      for (const m of batch) this.translate(m, client, out, expects);
      if (sync) {
        out.push(message('S'));
        expects.push({ kind: 'sync' });
      } else out.push(message('H'));
      return Buffer.concat(out);
    };
    if (store === 'source') {
      const capture = this.capture;
      try {
        await this.run(expects, build, 'source', !sync);
      } finally {
        this.capture = undefined;
      }
      if (capture && !capture.failed) this.backend.shadowReads.compare(capture.plan, 'source', textRows(capture.rows), capture.fingerprint, capture.params);
      return;
    }
    this.writingOnTarget = true;
    try {
      await this.run(expects, build, 'target');
    } finally {
      this.writingOnTarget = false;
    }
  }

  /** Whether a batch only writes tables whose primary moved to a PostgreSQL target that takes each write (writeOnTarget's test). */
  private writesOfBatch(batch: ReadonlyArray<{ type: string; body: Buffer }>): boolean {
    const plans = this.plansOfBatch(batch);
    return plans !== undefined && plans.length > 0 && plans.every((plan) => {
      const placed = placeAfterCutover(this.backend, plan, true);
      return placed !== undefined && 'write' in placed;
    });
  }

  /** The plans a batch parses and binds (a Bind of an earlier statement: its plan), or undefined when it holds other messages or a statement that does not parse. */
  private plansOfBatch(batch: ReadonlyArray<{ type: string; body: Buffer }>): StatementPlan[] | undefined {
    const parsed = new Map<string, StatementPlan>();
    const plans: StatementPlan[] = [];
    for (const m of batch) {
      const r = new BodyReader(m.body);
      let plan: StatementPlan | undefined;
      if (m.type === 'P') {
        const name = r.cstring();
        try {
          const classified = this.backend.classifier.classify(r.cstring());
          plan = classified.statements.length === 1 ? classified.statements[0] : undefined;
        } catch {
          return undefined;
        }
        if (plan) parsed.set(name, plan);
      } else if (m.type === 'B') {
        r.cstring();
        const name = r.cstring();
        plan = parsed.get(name) ?? (name === '' ? this.unnamed : this.statements.get(name))?.classified;
      } else if (m.type === 'D' || m.type === 'E') continue;
      else return undefined;
      if (!plan) return undefined;
      plans.push(plan);
    }
    return plans;
  }

  /**
   * An extended-protocol read of one policy table outside a transaction (Parse/Bind/Describe/
   * Execute up to Sync, as drivers send a parameterised query), served by a PostgreSQL target
   * when routing says so, with the policy's renames (another engine: batchOnOtherEngine). As for simple queries the target's answer
   * is held until it is complete: on any error the session's statements are put back as they
   * were and the batch runs on the primary instead (counted as `target read failed`).
   */
  private async batchOnTarget(batch: ReadonlyArray<{ type: string; body: Buffer; raw: Buffer }>): Promise<boolean> {
    const read = this.readOfBatch(batch);
    if (!read) return false;
    const route = (store: 'source' | 'target', reason: string) => this.backend.emit({ type: 'sql.read_route', table: read.table, store, reason });
    const decision = this.backend.routeRead(read.table, `sql-session-${this.id}`);
    const shadow = decision.shadow && this.settings.length === 0 ? this.shadowOfBatch(batch) : undefined;
    if (decision.store !== 'target') {
      route('source', decision.reason);
      if (shadow) this.capture = { ...shadow, rows: [], failed: false };
      return false;
    }
    if (this.settings.length > 0) {
      route('source', 'the session has SET parameters');
      return false;
    }
    if (!this.backend.target) return this.batchOnOtherEngine(batch, read.table, decision.reason, shadow);
    const problem = read.plans.map((plan) => this.targetForm(plan)).find((f): f is { reason: string } => 'reason' in f);
    if (problem) {
      route('source', problem.reason);
      return false;
    }
    const saved = { statements: new Map(this.statements), unnamed: this.unnamed };
    const held: Held = { answers: [], reports: [] };
    const outer = this.holding;
    this.onTarget = held;
    this.holding = held;
    let failed: boolean;
    try {
      const expects: Expect[] = [];
      await this.run(
        expects,
        (client) => {
          const out: Buffer[] = [];
          for (const m of batch) this.translate(m, client, out, expects);
          out.push(message('S'));
          expects.push({ kind: 'sync' });
          return Buffer.concat(out);
        },
        'target',
      );
      failed = held.answers.some((b) => b[0] === ERROR_RESPONSE);
    } catch {
      failed = true;
    } finally {
      this.onTarget = undefined;
      this.holding = outer;
    }
    if (failed) {
      this.undoAttempt(saved);
      route('source', 'target read failed');
      return false;
    }
    route('target', decision.reason);
    for (const report of held.reports) report();
    for (const bytes of held.answers) this.send(bytes);
    if (shadow) this.backend.shadowReads.compare(shadow.plan, 'target', dataRowsOf(held.answers), shadow.fingerprint, shadow.params);
    return true;
  }

  /**
   * An extended-protocol read a target of another engine serves (planned and answered by
   * other-engine-batch.ts). The answer is sent only once every read of the batch has run, and
   * only then does the session keep the statements the batch parsed; on any error the batch
   * runs on the primary instead (counted as `target read failed`), which creates them there.
   */
  private async batchOnOtherEngine(batch: ReadonlyArray<{ type: string; body: Buffer }>, table: string, why: string, shadow: ShadowedRead | undefined): Promise<boolean> {
    const route = (store: 'source' | 'target', reason: string) => this.backend.emit({ type: 'sql.read_route', table, store, reason });
    const other = this.backend.otherTarget;
    const sqlTable = this.backend.classifier.table(table);
    if (!other || !sqlTable) {
      route('source', 'no target to read from');
      return false;
    }
    const started = performance.now();
    const statement = (name: string) => (name === '' ? this.unnamed : this.statements.get(name));
    const planned = planOtherEngineBatch(batch, { table: sqlTable, target: other, classifier: this.backend.classifier, statement });
    if ('reason' in planned) {
      route('source', planned.reason);
      return false;
    }
    let answers: Buffer[] | { reason: string };
    try {
      answers = await planned.run(other.knex);
    } catch {
      answers = { reason: 'target read failed' };
    }
    if ('reason' in answers) {
      route('source', answers.reason);
      return false;
    }
    for (const p of planned.parsed) {
      const stmt = this.prepare(p.sql, p.types);
      if (p.name === '') this.unnamed = stmt;
      else this.statements.set(p.name, stmt);
    }
    route('target', why);
    for (const stmt of planned.executed) this.report(stmt.plan, stmt.fingerprint, 'ok', started, undefined, 'target');
    for (const bytes of answers) this.send(bytes);
    if (shadow) this.backend.shadowReads.compare(shadow.plan, 'target', dataRowsOf(answers), shadow.fingerprint, shadow.params);
    return true;
  }

  /**
   * What a shadow read of an extended-protocol read needs: its one statement (one Bind, one
   * Execute) and its parameters in text form. Undefined for anything else (binary formats,
   * several executions): those reads are not shadowed.
   */
  private shadowOfBatch(batch: ReadonlyArray<{ type: string; body: Buffer }>): ShadowedRead | undefined {
    const parsed = new Map<string, { sql: string; types: number[] }>();
    let bind: { statement: string; values: Array<string | null> } | undefined;
    let executes = 0;
    for (const m of batch) {
      const r = new BodyReader(m.body);
      if (m.type === 'P') {
        const name = r.cstring();
        const sql = r.cstring();
        parsed.set(name, { sql, types: Array.from({ length: r.int16() }, () => r.int32()) });
      } else if (m.type === 'B') {
        const read = readBind(r);
        if (bind || 'reason' in read) return undefined;
        bind = read;
      } else if (m.type === 'E') executes++;
    }
    if (!bind || executes !== 1) return undefined;
    const known = bind.statement === '' ? this.unnamed : this.statements.get(bind.statement);
    const source = parsed.get(bind.statement) ?? (known ? { sql: known.sql, types: known.types } : undefined);
    if (!source) return undefined;
    let classified;
    try {
      classified = this.backend.classifier.classify(source.sql);
    } catch {
      return undefined;
    }
    const [plan] = classified.statements;
    if (plan?.kind !== 'read' || classified.statements.length !== 1) return undefined;
    return { plan, fingerprint: classified.fingerprint, params: { types: source.types, values: bind.values } };
  }

  /** The policy table a batch only reads (each statement a single-table SELECT of it, at least one Execute), else undefined. */
  private readOfBatch(batch: ReadonlyArray<{ type: string; body: Buffer }>): { table: string; plans: StatementPlan[] } | undefined {
    const plans: StatementPlan[] = [];
    const parsed = new Map<string, StatementPlan>();
    let executes = 0;
    for (const m of batch) {
      const r = new BodyReader(m.body);
      if (m.type === 'P') {
        const name = r.cstring();
        let classified;
        try {
          classified = this.backend.classifier.classify(r.cstring());
        } catch {
          return undefined;
        }
        const [plan] = classified.statements;
        if (!plan || classified.statements.length > 1) return undefined;
        parsed.set(name, plan);
        plans.push(plan);
      } else if (m.type === 'B') {
        r.cstring();
        const name = r.cstring();
        const plan = parsed.get(name) ?? (name === '' ? this.unnamed : this.statements.get(name))?.plan;
        if (!plan) return undefined;
        plans.push(plan);
      } else if (m.type === 'E') executes++;
      else if (m.type !== 'D') return undefined;
    }
    const [first] = plans;
    if (executes === 0 || first?.kind !== 'read') return undefined;
    const table = first.table;
    return plans.every((p) => p.kind === 'read' && p.stmtKind === 'select' && p.table === table) ? { table, plans } : undefined;
  }

  private targetForm(plan: StatementPlan): TargetForm {
    let form = targetForms.get(plan);
    if (!form) {
      const table = plan.kind === 'read' ? this.backend.classifier.table(plan.table) : undefined;
      const renamed = plan.kind !== 'read' || !table ? { reason: 'not a read' } : plan.routable !== undefined ? { reason: plan.routable } : renameForTarget(plan.select, table);
      form = 'reason' in renamed ? renamed : { sql: renamed.sql, name: `tandem_t_${createHash('sha1').update(renamed.sql).digest('hex').slice(0, 24)}` };
      targetForms.set(plan, form);
    }
    return form;
  }

  /** What a pooled connection runs for a statement: its target form while a read is served by the target or a write runs there. */
  private up(stmt: Statement): { sql: string; name: string } {
    if (this.runsOnTarget()) {
      const plan = this.onTargetPlan(stmt.classified);
      if (plan.kind === 'write' || plan.kind === 'read') {
        return { sql: plan.sql, name: `tandem_w_${createHash('sha1').update(plan.sql).update(`\0${stmt.types.join(',')}`).digest('hex').slice(0, 24)}` };
      }
    }
    if (this.onTarget) {
      const form = this.targetForm(stmt.plan);
      // Parameter types are part of the shared name, as for the primary's statements.
      if ('sql' in form) return { sql: form.sql, name: `${form.name}_${createHash('sha1').update(stmt.types.join(',')).digest('hex').slice(0, 8)}` };
    }
    return { sql: stmt.upstreamSql, name: stmt.upstreamName };
  }

  private translate(m: { type: string; body: Buffer; raw: Buffer }, client: pg.PoolClient, out: Buffer[], expects: Expect[]): void {
    const r = new BodyReader(m.body);
    switch (m.type) {
      case 'P': {
        const name = r.cstring();
        const sql = r.cstring();
        const n = r.int16();
        const types: number[] = [];
        for (let i = 0; i < n; i++) types.push(r.int32());
        if (name !== '' && this.statements.has(name)) {
          this.localError(out, expects, { code: '42P05', message: `prepared statement "${name}" already exists` });
          return;
        }
        const started = performance.now();
        let stmt: Statement;
        try {
          stmt = this.prepare(sql, types);
        } catch (error) {
          if (!(error instanceof SqlParseError)) throw error;
          this.backend.emit({ type: 'sql.parse_error' });
          this.report({ kind: 'refuse', stmtKind: 'other', table: '', reason: 'parse_error', message: error.message }, '', 'error', started, SQLSTATE.syntax);
          this.localError(out, expects, { code: SQLSTATE.syntax, message: error.message, position: error.position });
          return;
        }
        if (stmt.plan.kind === 'refuse') {
          this.report(stmt.plan, stmt.fingerprint, 'refused', started, SQLSTATE.refused);
          this.localError(out, expects, { code: SQLSTATE.refused, message: stmt.plan.message });
          return;
        }
        const up = this.up(stmt);
        if (name === '') {
          this.unnamed = stmt;
          out.push(message('P', '', up.sql, int16(types.length), ...types));
          unnamedOn.set(client, stmt);
          expects.push({ kind: 'parse', swallow: false, onFail: () => unnamedOn.delete(client) });
          return;
        }
        const prepared = preparedSet(client);
        if (prepared.has(up.name)) {
          this.statements.set(name, stmt);
          expects.push({ kind: 'local', bytes: parseComplete() });
          return;
        }
        out.push(message('P', up.name, up.sql, int16(types.length), ...types));
        // Visible to the following messages of this batch at once, as on PostgreSQL; undone
        // when the primary refuses it or never gets to it (an earlier error).
        prepared.add(up.name);
        this.statements.set(name, stmt);
        expects.push({
          kind: 'parse',
          swallow: false,
          onFail: () => {
            prepared.delete(up.name);
            if (this.statements.get(name) === stmt) this.statements.delete(name);
          },
        });
        return;
      }
      case 'B': {
        const portal = r.cstring();
        const name = r.cstring();
        const rest = m.body.subarray(r.offset);
        const known = name === '' ? this.unnamed : this.statements.get(name);
        // A read the target serves is not a stale read, nor a write that runs there; everything else here runs on the source.
        const onTarget = known && this.runsOnTarget() ? this.onTargetPlan(known.classified) : undefined;
        const moved =
          known && (onTarget ? (onTarget.kind === 'refuse' ? onTarget : undefined) : (refuseWriteAfterCutover(this.backend, known.classified) ?? (this.onTarget ? undefined : refuseStaleRead(this.backend, known.classified))));
        if (known && moved) {
          // Counted once: after an earlier error in this batch the primary skips to Sync anyway.
          if (!expects.some((e) => e.kind === 'error')) this.report(moved, known.fingerprint, 'refused', performance.now(), SQLSTATE.refused);
          this.localError(out, expects, { code: SQLSTATE.refused, message: moved.message });
          // The failing Parse sent in its place drops the connection's unnamed statement.
          unnamedOn.delete(client);
          return;
        }
        const stmt = this.ensure(name, client, out, expects);
        if (!stmt) return;
        this.portals.set(portal, stmt);
        out.push(message('B', portal, name === '' ? '' : this.up(stmt).name, rest));
        expects.push({ kind: 'bind', swallow: false });
        return;
      }
      case 'D': {
        const kind = r.byte();
        const name = r.cstring();
        if (kind === 'S') {
          const stmt = this.ensure(name, client, out, expects);
          if (!stmt) return;
          out.push(message('D', Buffer.from('S'), name === '' ? '' : this.up(stmt).name));
          expects.push({ kind: 'describe', plan: stmt.plan });
        } else {
          out.push(m.raw);
          expects.push({ kind: 'describe', plan: this.portals.get(name)?.plan });
        }
        return;
      }
      case 'E': {
        const portal = r.cstring();
        out.push(m.raw);
        expects.push({ kind: 'execute', stmt: this.portals.get(portal), started: performance.now() });
        return;
      }
      case 'C': {
        const kind = r.byte();
        const name = r.cstring();
        if (kind === 'S') {
          // Server-side statements are shared by text on pooled connections: only the session forgets it.
          if (name === '') this.unnamed = undefined;
          else this.statements.delete(name);
          expects.push({ kind: 'local', bytes: closeComplete() });
        } else {
          this.portals.delete(name);
          out.push(m.raw);
          expects.push({ kind: 'close' });
        }
        return;
      }
      default:
        throw new ProtocolError(`unexpected message type "${m.type}"`);
    }
  }

  /** Makes sure the client's statement exists on this pooled connection (re-prepared when not). */
  private ensure(name: string, client: pg.PoolClient, out: Buffer[], expects: Expect[]): Statement | undefined {
    const stmt = name === '' ? this.unnamed : this.statements.get(name);
    if (!stmt) {
      this.localError(out, expects, { code: '26000', message: name === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${name}" does not exist` });
      return undefined;
    }
    const up = this.up(stmt);
    if (name === '') {
      if (unnamedOn.get(client) !== stmt) {
        out.push(message('P', '', up.sql, int16(stmt.types.length), ...stmt.types));
        expects.push({ kind: 'parse', swallow: true, onFail: () => unnamedOn.delete(client) });
        unnamedOn.set(client, stmt);
      }
      return stmt;
    }
    const prepared = preparedSet(client);
    if (!prepared.has(up.name)) {
      out.push(message('P', up.name, up.sql, int16(stmt.types.length), ...stmt.types));
      prepared.add(up.name);
      expects.push({ kind: 'parse', swallow: true, onFail: () => prepared.delete(up.name) });
    }
    return stmt;
  }

  private prepare(sql: string, types: number[]): Statement {
    const classified = this.backend.classifier.classify(sql);
    if (classified.statements.length > 1) {
      throw new SqlParseError('cannot insert multiple commands into a prepared statement', undefined);
    }
    const classifiedPlan = classified.statements[0] ?? { kind: 'forward', stmtKind: 'empty', sql: '' };
    const plan = this.guard(classifiedPlan);
    this.noteSetting(plan);
    const upstreamSql = plan.kind === 'write' ? plan.sql : sql;
    const upstreamName = `tandem_${createHash('sha1').update(upstreamSql).update(`\0${types.join(',')}`).digest('hex').slice(0, 24)}`;
    return { sql, plan, fingerprint: classified.fingerprint, upstreamSql, types, upstreamName, classified: classifiedPlan };
  }

  /**
   * An error the SQL front raises itself, in its place in the answers: the primary is sent a
   * statement that fails to parse, so the transaction fails (and PostgreSQL skips to Sync)
   * exactly as it would have; its error is replaced by this one.
   */
  private localError(out: Buffer[], expects: Expect[], fields: ErrorFields): void {
    out.push(message('P', '', 'tandem refused', int16(0)));
    expects.push({ kind: 'error', fields });
  }

  private noteSetting(plan: StatementPlan): void {
    if (plan.kind !== 'forward' || !plan.setting) return;
    if (plan.setting === 'reset-all') this.settings = [];
    else if (this.settings.length < 100) this.settings.push(plan.sql);
  }

  /**
   * A borrowed connection gets this session's SETs (and loses another session's): like a
   * transaction-mode pooler that replays session state, so `SET search_path` or `SET TIME
   * ZONE` outside a transaction keep working and never leak into another session.
   */
  private async applySettings(client: pg.PoolClient): Promise<void> {
    const owner = settingsOf.get(client);
    if (owner === this.id || (owner === undefined && this.settings.length === 0)) return;
    const replay = (statements: string[]) => runQuietly(client, statements.join(';\n'));
    // A SET that failed when the client sent it fails again here: the session keeps none then.
    if (!(await replay(['RESET ALL', ...this.settings]))) {
      this.settings = [];
      await replay(['RESET ALL']);
    }
    if (this.settings.length > 0) settingsOf.set(client, this.id);
    else settingsOf.delete(client);
  }

  // ---------------------------------------------------------------- relaying

  /**
   * Runs one exchange with the primary (or target): `build` makes the bytes for the
   * connection it gets. With `open`, the exchange stays open for more messages (Flush).
   */
  private async run(expects: Expect[], build: (client: pg.PoolClient) => Buffer, store: 'source' | 'target' = 'source', open = false): Promise<void> {
    let current = this.exchange;
    if (!current) {
      // A transaction's statements run on the connection it holds, wherever it opened.
      const pool = this.held && this.heldPool ? this.heldPool : store === 'target' && this.backend.target ? this.backend.target : this.backend.primary;
      const client = this.held ?? (await pool.connect());
      if (client !== this.held) await this.applySettings(client);
      const ex = new Exchange(client, (type, body, raw) => this.onUpstream(type, body, raw));
      current = { ex, client, pool };
      this.exchange = current;
    }
    const bytes = build(current.client);
    this.expects.push(...expects);
    this.drainLocal();
    current.ex.write(bytes);
    if (open) return;
    let status: TxStatus;
    try {
      status = await current.ex.result();
    } catch (error) {
      this.exchange = undefined;
      this.held = undefined;
      current.client.release(error as Error);
      this.expects = [];
      throw error;
    }
    this.exchange = undefined;
    this.txStatus = status;
    if (this.settings.length > 0) settingsOf.set(current.client, this.id);
    if (status === 'I') {
      this.portals.clear();
      if (this.wroteTables.size > 0) {
        this.backend.committed([...this.wroteTables]);
        this.wroteTables.clear();
      }
      this.held = undefined;
      current.client.release();
    } else if (!this.held) {
      this.held = current.client;
      this.heldPool = current.pool;
    }
  }

  private onUpstream(type: string, body: Buffer, raw: Buffer): void {
    switch (type) {
      case 'N':
      case 'S':
      case 'A':
      case 'G':
      case 'H':
      case 'W':
      case 'd':
      case 'c':
        this.send(raw);
        return;
      case 'E':
        this.onError(body, raw);
        return;
      case 'Z':
        this.drainUntil('sync');
        this.expects.shift();
        this.send(raw);
        return;
    }
    const head = this.expects[0];
    if (!head) throw new ProtocolError(`unexpected message "${type}" from the primary`);
    switch (type) {
      case '1':
        if (head.kind === 'parse') {
          if (!head.swallow) this.send(raw);
          this.next();
          return;
        }
        break;
      case '2':
        if (head.kind === 'bind') {
          if (!head.swallow) this.send(raw);
          this.next();
          return;
        }
        break;
      case '3':
        this.send(raw);
        this.next();
        return;
      case 't':
        this.send(raw);
        return;
      case 'T':
      case 'n':
        if (head.kind === 'describe') {
          this.send(head.plan?.kind === 'write' && !head.plan.returning ? noData() : raw);
          this.next();
          return;
        }
        if (head.kind === 'query') {
          const plan = head.stmts[head.index]?.plan;
          if (!(plan?.kind === 'write' && !plan.returning)) this.send(raw);
          return;
        }
        break;
      case 'D': {
        const plan = head.kind === 'execute' ? head.stmt?.plan : head.kind === 'query' ? head.stmts[head.index]?.plan : undefined;
        if (plan?.kind === 'write' && !plan.returning) {
          this.countValue = countOf(body);
          return;
        }
        this.rowsSeen++;
        if (this.capture) {
          if (this.capture.rows.length < MAX_CAPTURED_ROWS) this.capture.rows.push(body);
          else this.capture.failed = true;
        }
        this.send(raw);
        return;
      }
      case 'C':
      case 'I':
      case 's': {
        if (head.kind === 'execute') {
          this.complete(type, head.stmt?.plan, head.stmt?.fingerprint ?? '', head.started, raw, body);
          this.next();
          return;
        }
        if (head.kind === 'query') {
          const entry = head.stmts[head.index];
          this.complete(type, entry?.plan, entry?.fingerprint ?? '', head.started, raw, body);
          head.index++;
          return;
        }
        break;
      }
    }
    throw new ProtocolError(`unexpected message "${type}" from the primary while waiting for ${head.kind}`);
  }

  /** CommandComplete of one statement: a rewritten write gets its own command tag back. */
  private complete(type: string, plan: StatementPlan | undefined, fingerprint: string, started: number, raw: Buffer, body: Buffer): void {
    if (type === 'C' && plan?.kind === 'write') {
      const selected = Number(/(\d+)$/.exec(body.toString('utf8', 0, body.length - 1))?.[1] ?? 0);
      const n = plan.returning ? selected : (this.countValue ?? 0);
      this.send(commandComplete(plan.tag === 'INSERT' ? `INSERT 0 ${n}` : `${plan.tag} ${n}`));
      this.wroteTables.add(plan.table);
    } else this.send(raw);
    this.countValue = undefined;
    this.rowsSeen = 0;
    if (plan && type !== 's') this.report(plan, fingerprint, 'ok', started);
  }

  private onError(body: Buffer, raw: Buffer): void {
    const head = this.expects[0];
    if (this.capture) this.capture.failed = true;
    const fields = readErrorFields(body);
    const refused = head?.kind === 'query' ? head.stmts[head.index]?.plan : undefined;
    if (head?.kind === 'error') {
      this.send(errorResponse(head.fields));
    } else if (refused?.kind === 'refuse') {
      this.report(refused, head?.kind === 'query' ? (head.stmts[head.index]?.fingerprint ?? '') : '', 'refused', performance.now(), SQLSTATE.refused);
      this.send(errorResponse({ code: SQLSTATE.refused, message: refused.message }));
    } else {
      this.send(raw);
      const plan = head?.kind === 'execute' ? head.stmt?.plan : head?.kind === 'query' ? head.stmts[head.index]?.plan : undefined;
      const started = head?.kind === 'execute' || head?.kind === 'query' ? head.started : performance.now();
      if (plan) this.report(plan, head?.kind === 'execute' ? (head.stmt?.fingerprint ?? '') : '', 'error', started, fields['C']);
    }
    this.countValue = undefined;
    // PostgreSQL skips everything up to Sync after an error (a simple query ends too).
    this.drainUntil('sync');
  }

  /** Drops expectations the primary will not answer (after an error), up to the Sync. */
  private drainUntil(kind: 'sync'): void {
    while (this.expects.length > 0 && this.expects[0]?.kind !== kind) {
      const dropped = this.expects.shift();
      if (dropped?.kind === 'parse') dropped.onFail?.();
    }
  }

  private next(): void {
    this.expects.shift();
    this.drainLocal();
  }

  /** Answers the SQL front gives itself, in their place in the sequence. */
  private drainLocal(): void {
    let head = this.expects[0];
    while (head?.kind === 'local') {
      this.send(head.bytes);
      this.expects.shift();
      head = this.expects[0];
    }
  }

  private report(
    plan: StatementPlan,
    fingerprint: string,
    result: 'ok' | 'error' | 'refused',
    started: number,
    sqlstate?: string,
    store: 'source' | 'target' = this.exchange && this.exchange.pool !== this.backend.primary ? 'target' : 'source',
  ): void {
    if (this.holding) {
      const durationMs = performance.now() - started;
      // Reported only if the held answer is the one the client gets (else the run that replaces it reports).
      this.holding.reports.push(() => this.report(plan, fingerprint, result, performance.now() - durationMs, sqlstate, store));
      return;
    }
    const table = plan.kind === 'forward' ? '' : plan.table;
    if (plan.kind === 'refuse') this.backend.emit({ type: 'sql.refused', reason: plan.reason, table });
    this.backend.emit({
      type: 'sql.statement',
      session: this.id,
      kind: plan.stmtKind,
      table,
      store: plan.kind === 'refuse' ? 'none' : store,
      result: plan.kind === 'refuse' ? 'refused' : result,
      durationMs: performance.now() - started,
      fingerprint,
      ...(sqlstate ? { sqlstate } : {}),
      ...(plan.kind === 'refuse' ? { reason: plan.reason } : {}),
      via: 'wire',
    });
  }

  // ---------------------------------------------------------------- socket

  /** Writes to the client, corked until the end of this tick (one TCP segment per burst). */
  send(bytes: Buffer): void {
    if (this.closed) return;
    if (this.holding) {
      this.holding.answers.push(bytes);
      return;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
  }

  /** The backend pid of the statement running now and the pool of its server (CancelRequest). */
  running(): { pid: number; pool: pg.Pool } | undefined {
    const pid = this.exchange && backendPid(this.exchange.client);
    return this.exchange && pid !== undefined ? { pid, pool: this.exchange.pool } : undefined;
  }

  /** The client went away: a transaction in progress is rolled back by dropping its connection. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Never back to the pool mid-transaction or mid-statement: destroying the connection
    // makes the primary roll back. An exchange in flight releases its own (run()).
    if (this.exchange) this.exchange.ex.abort(new Error('client disconnected'));
    else if (this.held) this.held.release(new Error('client disconnected'));
    this.held = undefined;
  }

  /** COPY data from the client, passed to the primary while its COPY runs (not queued behind it). */
  copyData(raw: Buffer): void {
    this.exchange?.ex.write(raw);
  }

  idle(): boolean {
    return this.txStatus === 'I';
  }
}

export class ProtocolError extends Error {}

/**
 * Runs a statement of the SQL front's own on a pooled connection, its answers not relayed:
 * false when it failed. A broken connection is released as broken, and the error thrown.
 */
async function runQuietly(client: pg.PoolClient, sql: string): Promise<boolean> {
  let failed = false;
  const ex = new Exchange(client, (type) => {
    if (type === 'E') failed = true;
  });
  ex.write(message('Q', sql));
  try {
    await ex.result();
  } catch (error) {
    client.release(error as Error);
    throw error;
  }
  return !failed;
}

/** Whether an answer is the rewrite's state-row refusal (22P02 "frozen: tandem table … is not writable here (switching its primary)"). */
function isSwitchRefusal(raw: Buffer): boolean {
  if (raw[0] !== ERROR_RESPONSE) return false;
  const fields = readErrorFields(raw.subarray(5));
  return fields['C'] === '22P02' && /: tandem table .* is not writable here \(switching its primary\)/.test(fields['M'] ?? '');
}

/** The policy tables statements write (guarded statements included). */
function writtenTables(plans: readonly StatementPlan[]): string[] {
  return [...new Set(plans.flatMap((p) => (p.kind === 'write' || p.kind === 'guarded' ? [p.table] : [])))];
}

/** The DataRows among whole backend messages, as strings. */
function dataRowsOf(messages: readonly Buffer[]): Array<Array<string | null>> {
  return textRows(messages.filter((raw) => raw[0] === DATA_ROW).map((raw) => raw.subarray(5)));
}

/** DataRow bodies of a text-format answer as strings (NULL as null). */
function textRows(bodies: readonly Buffer[]): Array<Array<string | null>> {
  return bodies.map((body) => readDataRow(body).map((v) => (v === null ? null : v.toString('utf8'))));
}

function preparedSet(client: object): Set<string> {
  let set = preparedOn.get(client);
  if (!set) {
    set = new Set();
    preparedOn.set(client, set);
  }
  return set;
}

/** The row count a rewritten write without RETURNING answers (text or binary int8). */
function countOf(body: Buffer): number {
  const [value] = readDataRow(body);
  if (!value) return 0;
  const text = value.toString('latin1');
  if (/^\d+$/.test(text)) return Number(text);
  return value.length === 8 ? Number(value.readBigInt64BE(0)) : 0;
}
