import type { Knex } from 'knex';
import type { ColumnKind } from '../../shared/column-kind.js';
import type { KeyValues, Row } from '../../shared/row.js';
import type { OutboxRecord } from '../internal-tables.js';

export const DIALECTS = ['pg', 'mysql', 'sqlite'] as const;
export type Dialect = (typeof DIALECTS)[number];

/**
 * One table as one store holds it, in whichever role the store plays (primary or
 * secondary): nothing here says "source" or "target", so the same adapter serves a write
 * path in either direction (DESIGN §5: after cutover the target is primary).
 */
export interface TableSide {
  /** The table's name in Tandem's own tables (`tandem_outbox.tbl`, `tandem_applied.tbl`): the policy name. */
  readonly name: string;
  /** The table in this store. */
  readonly table: string;
  /** Primary-key columns in key order. */
  readonly key: readonly string[];
}

/** One key of an apply to a secondary: its version, its key columns and its full row (null: a tombstone). */
export interface ApplyItem {
  rowKey: string;
  epoch: number;
  seq: string;
  /** The secondary's key columns, values bound for its engine. */
  key: Row;
  /** The full secondary row (key included), bound; null deletes the key. */
  row: Row | null;
}

/** One table's distinct keys, in sorted order (at most a few hundred). */
export interface ApplySlice {
  side: TableSide;
  items: readonly ApplyItem[];
}

export interface ApplyCounts {
  applied: number;
  skipped: number;
}

/** A ledger row recording the version a key was last written with. */
export interface LedgerRow {
  tbl: string;
  row_key: string;
  epoch: number;
  seq: string | number;
  applied_at: number;
}

export interface NewOutboxRecord {
  tbl: string;
  row_key: string;
  op: 'upsert' | 'delete';
  image: string | null;
  epoch: number;
  next_attempt_at: number;
  created_at: number;
}

/**
 * A single-row change the folded statement can run, values already bound. `key` is the key
 * as the request gave it; `where` the same key bound for the primary's engine, as the
 * classic path's WHERE (primary-ops.ts `keyWhere`).
 */
export type FoldOp =
  | { op: 'insert'; values: Row }
  | { op: 'update'; key: KeyValues; where?: Row; values: Row }
  | { op: 'delete'; key: KeyValues; where?: Row };

/** What one folded statement did. */
export type FoldOutcome =
  /** The state row says this store is not the table's primary (a switch is running). */
  | { kind: 'frozen' }
  /** No row has the key (update, delete) or the insert returned nothing. */
  | { kind: 'missing' }
  /** Nothing was written: the classic path must run (stage changed, column dropped, …). */
  | { kind: 'fallback' }
  | {
      kind: 'written';
      /** The after-image as stored; undefined for a delete. */
      row: Row | undefined;
      /** The key as stored, in key order. */
      key: KeyValues;
      epoch: number;
      /**
       * The outbox row's id and key when the table is dual-writing, else null; `image` the
       * encodeImage text the row holds, when the writer encoded it (undefined: encode again).
       */
      outbox: { id: string; rowKey: string; image?: string | null } | null;
    };

/**
 * The primary write folded into one statement (state row FOR SHARE, change with its
 * after-image, outbox row): one round trip instead of five, where the engine allows it.
 */
export interface FoldedWriter {
  /** Whether the op names only columns the statement knows. */
  handles(op: FoldOp): boolean;
  /** What the classic path saw in the state row: picks the statement for the next write. */
  noteStage(dualWrite: boolean): void;
  run(op: FoldOp, now: number, notBefore: number): Promise<FoldOutcome>;
}

/** Turns the JSON-ish values of requests and images into what the engine's driver binds. */
export interface BindRules {
  /** SQLite stores dates as ISO text. */
  datesAsText: boolean;
  /** SQLite has no boolean type. */
  booleansAsIntegers: boolean;
  /** PostgreSQL's JSON columns take JSON text as is. */
  jsonTextAsIs: boolean;
  /** MariaDB refuses ISO strings with a zone: bind such datetimes as Date (written in the session zone, UTC). */
  isoDatetimesAsDates: boolean;
}

/**
 * Everything that differs between database engines (Kysely's dialect idea). Outside
 * `src/db/dialects/` no code compares engine names: it asks its store's adapter.
 * Every method works for a store in either role.
 */
export interface DialectAdapter {
  readonly name: Dialect;

  // --- connections -------------------------------------------------------------------
  /** knex's configuration for a pool on `url`. */
  knexConfig(url: string, applicationName: string, options: PoolOptions): Knex.Config;
  /** Destroys a pooled connection's socket (a query stuck on a dead network fails now). */
  destroyConnection(connection: unknown): void;
  /** An in-process engine: no network, so no deadlines and no socket to cut. */
  readonly inProcess: boolean;
  /** Speaks PostgreSQL's wire protocol: the SQL front (DESIGN §13) passes statements through to it. */
  readonly speaksPostgresWire: boolean;
  /**
   * The SQL front rebuilds the safe subset of a PostgreSQL SELECT with knex for this engine
   * when it is a target of another engine (src/sql/knex-read.ts).
   */
  readonly translatesReads: boolean;
  /**
   * Whether the planner turns a row-value comparison `(a, b) > (?, ?)` into an index range
   * (keyset pages on composite keys). PostgreSQL and SQLite do, and scan from the index's
   * start with the OR-expanded form; MariaDB does the opposite (EXPLAIN: a full index scan
   * for row values, a range for the OR form).
   */
  readonly keysetRowValues: boolean;
  /**
   * Whether composite-key lookups are written `(a, b) IN (VALUES …)` (key-queries.ts,
   * whereKeyList) instead of `(a = ? AND b = ?) OR …`. PostgreSQL plans the VALUES list as
   * index lookups in about a millisecond and spends several planning each long OR chain;
   * MariaDB plans the OR chain as ranges and scans for row values.
   */
  readonly keyListAsValues: boolean;

  // --- replication sessions (src/db/replication-session.ts) -----------------------------
  /** The statement that turns a session's foreign-key checks off. */
  readonly replicationSessionSql: string;
  /** Runs `replicationSessionSql` on a fresh driver connection; calls back with the driver's error, never throws. */
  startReplicationSession(connection: unknown, done: (err: Error | null) => void): void;
  /** The status note when a session could not turn its checks off (`cause`: the driver's code or error name). */
  foreignKeyChecksNote(cause: string): string;

  // --- schema --------------------------------------------------------------------------------
  /** Child → parent edges (foreign keys) whose child is one of `tables`, by table name. */
  foreignKeyEdges(knex: Knex, tables: readonly string[]): Promise<Array<{ child: string; parent: string }>>;
  /**
   * Gives the named key columns of Tandem's own tables a byte-exact collation where the
   * engine's default is not; returns the `table.column` names it changed.
   */
  fixKeyCollations(knex: Knex, columns: Readonly<Record<string, readonly string[]>>): Promise<string[]>;
  /**
   * Lifts the length limit off the outbox's `row_key` and the backfill's `last_key` (created as
   * varchar(512) by earlier versions), with a lookup index that takes any length; returns the
   * `table.column` names it changed. Safe to run from several processes.
   */
  unboundKeyColumns(knex: Knex): Promise<string[]>;
  /**
   * Sets the table's identity counter (sequence, AUTO_INCREMENT, `sqlite_sequence`) so the
   * next generated key is above `floor`, never backwards; returns the counter's new last
   * value, null when the table has no counter.
   */
  moveIdentityAbove(knex: Knex, table: string, key: string, floor: bigint): Promise<bigint | null>;
  /** Whether a failed insert's error may mean the table has no generated id left (SQLite: SQLITE_FULL). */
  isIdExhausted(error: unknown): boolean;
  /** The largest generated id as text when `table` already holds it, else undefined. */
  idLimitReached(knex: Knex, table: string): Promise<string | undefined>;

  // --- names and values ----------------------------------------------------------------
  quoteIdent(name: string): string;
  bind(value: unknown, kind: ColumnKind | null): unknown;
  /** The inclusive range of an integer column type, undefined when not fixed-width. */
  integerRange(type: string): readonly [bigint, bigint] | undefined;
  /** A table's primary-key columns in key order (empty when it has none). */
  primaryKeyOf(knex: Knex, table: string): Promise<string[]>;
  /** The column type of `tandem_outbox.image`. */
  readonly imageColumnType: 'text' | 'mediumtext';

  // --- locking -------------------------------------------------------------------------
  /** `FOR SHARE`, or nothing where the engine has one writer (SQLite). */
  forShare<Q extends Knex.QueryBuilder>(query: Q): Q;
  /** `FOR UPDATE`, or nothing where the engine has one writer. */
  forUpdate<Q extends Knex.QueryBuilder>(query: Q): Q;
  /**
   * Takes the database's write lock at the start of a transaction where the engine has one
   * writer and no row locks (SQLite); a no-op elsewhere. A deferred SQLite transaction that
   * reads and then writes fails at once with SQLITE_BUSY_SNAPSHOT when another process
   * committed in between, without waiting on busy_timeout; a write statement first waits.
   * @see https://www.sqlite.org/isolation.html
   */
  takeWriteLock(trx: Knex.Transaction): Promise<void>;

  // --- changes with their after-image (primary) -----------------------------------------
  /**
   * INSERT and the row as stored. Undefined only when the engine cannot find the row again
   * because the key was neither given nor generated (the caller names the missing column).
   */
  insertReturning(trx: Knex.Transaction, side: TableSide, values: Row): Promise<Row | undefined>;
  /** UPDATE by key and the row as stored; undefined when no row has the key. */
  updateReturning(trx: Knex.Transaction, side: TableSide, where: Row, set: Row): Promise<Row | undefined>;
  /** DELETE by key and the key columns as stored; undefined when no row has the key. */
  deleteReturning(trx: Knex.Transaction, side: TableSide, where: Row): Promise<Row | undefined>;
  /** Reads one row by key, locked for the transaction where the engine locks rows. */
  lockRow(trx: Knex.Transaction, side: TableSide, where: Row): Promise<Row | undefined>;
  /**
   * The folded write (fewest round trips), where the engine allows one; undefined elsewhere.
   * The outbox key it writes is `formatKey`'s; an image it encodes in JS, `encodeImage`'s.
   */
  prepareFold(knex: Knex, side: TableSide, formatKey: (key: KeyValues) => string, encodeImage: (row: Row) => string): Promise<FoldedWriter | undefined>;

  // --- outbox (primary) ------------------------------------------------------------------
  /** Inserts one outbox row in the writer's transaction, AFTER the change; returns its id. */
  insertOutbox(trx: Knex.Transaction, record: NewOutboxRecord): Promise<string>;
  /**
   * Claims up to `limit` due pending rows, oldest first, leasing them until `leaseUntil`;
   * `SKIP LOCKED` where the engine has it, so replicas claim side by side.
   */
  claimOutbox(knex: Knex, now: number, leaseUntil: number, limit: number): Promise<OutboxRecord[]>;

  // --- applied ledger and versioned apply (secondary) -------------------------------------
  /** Creates the keys' ledger rows at (-1, -1) where missing, locks them, returns their versions. */
  lockLedger(trx: Knex.Transaction, tbl: string, rowKeys: readonly string[]): Promise<Map<string, { epoch: number; seq: string }>>;
  /** Records new versions. */
  recordLedger(trx: Knex.Transaction, rows: readonly LedgerRow[]): Promise<void>;
  /** Inserts ledger rows for keys the ledger has never seen; leaves existing rows alone (backfill). */
  claimAbsent(trx: Knex.Transaction, rows: readonly LedgerRow[]): Promise<void>;
  /** Writes full rows by key: inserts new keys, updates existing ones (callers hold the keys' ledger locks). */
  upsertRows(trx: Knex.Transaction, side: TableSide, rows: readonly Row[]): Promise<void>;
  /**
   * The versioned apply of DESIGN §3.4 in one transaction with a deadline: per key, write
   * the row (or delete it) only when its version is newer than the ledger's, and record it.
   */
  applyVersioned(knex: Knex, deadline: DeadlineRunner, slices: readonly ApplySlice[]): Promise<ApplyCounts[]>;
}

export interface PoolOptions {
  statementTimeoutMs: number;
  poolMax: number;
  acquireTimeoutMs: number;
  connectTimeoutMs: number;
}

/** Runs work on one pooled connection that must finish by a deadline (src/db/with-deadline.ts). */
export interface DeadlineRunner {
  connection<T>(work: (connection: unknown) => Promise<T>): Promise<T>;
  transaction<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T>;
}
