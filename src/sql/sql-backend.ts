import type { Knex } from 'knex';
import type pg from 'pg';
import type { SqlClassifier, StatementKind, RefusalReason } from './classify.js';
import type { SqlShadowReads } from './shadow-read.js';

/**
 * The narrow view of the engine the SQL front works with. The app builds it (app.ts); the
 * SQL front never imports the write/read services, so it does not move when they do.
 */
export interface SqlBackend {
  /** Connections to the primary (PostgreSQL only), shared by all sessions. */
  readonly primary: pg.Pool;
  /** Connections to the target when it is PostgreSQL too (reads served by the target). */
  readonly target: pg.Pool | undefined;
  /** The target's knex handle and dialect when it is another engine (the translated read subset). */
  readonly otherTarget: { knex: Knex; dialect: string; translatesReads: boolean } | undefined;
  readonly classifier: SqlClassifier;
  /** The target's dialect name (in refusals that name it). */
  readonly targetDialect: string;
  /** Whether the table is dual-writing now (guarded statements are refused then). */
  dualWriting(table: string): boolean;
  /** The table's primary as this replica knows it (the store the HTTP write path opens its transaction on). */
  primaryOf(table: string): 'source' | 'target';
  /** Reads the tables' primaries again (a write was refused by a switch this replica had not seen). */
  refresh(tables: readonly string[]): Promise<void>;
  /** How long a write waits out a primary switch (`cutover.holdMs`). */
  readonly holdMs: number;
  /** The table's primary is the target and the source misses its writes (retired, not resynced since). */
  sourceStale(table: string): boolean;
  /** Where a read of the table outside a transaction goes (read %, sticky per session), and whether it is shadowed. */
  routeRead(table: string, stickyKey: string): { store: 'source' | 'target'; reason: string; shadow: boolean };
  /** Compares the `shadow-read` share of routed reads with the other store. */
  readonly shadowReads: SqlShadowReads;
  /** A transaction that wrote policy tables has committed (or ended): hand the outbox rows to the worker. */
  committed(tables: readonly string[]): void;
  emit(event: SqlEvent): void;
}

export const SQL_RESULTS = ['ok', 'error', 'refused'] as const;
export type SqlResult = (typeof SQL_RESULTS)[number];

/** What the SQL front reports; app.ts turns these into metrics and log lines. */
export type SqlEvent =
  | {
      type: 'sql.statement';
      session: number;
      kind: StatementKind;
      table: string;
      store: 'source' | 'target' | 'none';
      result: SqlResult;
      durationMs: number;
      fingerprint: string;
      sqlstate?: string;
      reason?: string;
      via: 'wire' | 'http';
    }
  | { type: 'sql.refused'; reason: RefusalReason | 'limit'; table: string }
  | { type: 'sql.parse_error' }
  | { type: 'sql.switch_hold'; table: string; waitedMs: number; settled: boolean }
  | { type: 'sql.shadow'; table: string; result: 'match' | 'mismatch' | 'error'; shadowStore: 'source' | 'target'; key: string; error?: Error }
  | { type: 'sql.read_route'; table: string; store: 'source' | 'target'; reason: string }
  | { type: 'sql.session'; phase: 'open' | 'close' | 'refused'; session: number; user?: string; reason?: string; active: number }
  | { type: 'sql.error'; session: number; error: Error };
