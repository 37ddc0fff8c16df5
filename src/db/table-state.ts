import type { Knex } from 'knex';
import { STATE_TABLE } from './internal-tables.js';
import type { DialectAdapter } from './dialects/dialect.js';
import type { Store } from './store.js';

export const ROLES = ['primary', 'secondary', 'frozen'] as const;
export type Role = (typeof ROLES)[number];

/** One table's row in `tandem_state`. */
export interface TableState {
  table: string;
  role: Role;
  epoch: number;
  dualWrite: boolean;
  everDualWrite: boolean;
  stale: boolean;
  staleReason: string | null;
  updatedAt: number;
  /** Store the running switch moves the primary to (null when none runs). */
  switchTo: 'source' | 'target' | null;
  /** Last step the running switch completed (see SWITCH_STEPS in src/cutover/primary-switch.ts). */
  switchStep: string | null;
  /** Replica running the switch, and until when its lease holds (ms since epoch). */
  switchOwner: string | null;
  switchLeaseUntil: number;
  switchStartedAt: number;
  /** Duration of the last finished switch, ms (0 before the first). */
  lastSwitchMs: number;
}

export interface StateRecord {
  tbl: string;
  role: string;
  epoch: number | string;
  dual_write: number | string | boolean;
  ever_dual_write: number | string | boolean;
  stale: number | string | boolean;
  stale_reason: string | null;
  updated_at: number | string;
  switch_to?: string | null;
  switch_step?: string | null;
  switch_owner?: string | null;
  switch_lease_until?: number | string | null;
  switch_started_at?: number | string | null;
  last_switch_ms?: number | string | null;
}

export function fromStateRecord(r: StateRecord): TableState {
  return {
    table: r.tbl,
    role: r.role as Role,
    epoch: Number(r.epoch),
    dualWrite: Number(r.dual_write) === 1 || r.dual_write === true,
    everDualWrite: Number(r.ever_dual_write) === 1 || r.ever_dual_write === true,
    stale: Number(r.stale) === 1 || r.stale === true,
    staleReason: r.stale_reason,
    updatedAt: Number(r.updated_at),
    switchTo: r.switch_to === 'source' || r.switch_to === 'target' ? r.switch_to : null,
    switchStep: r.switch_step ?? null,
    switchOwner: r.switch_owner ?? null,
    switchLeaseUntil: Number(r.switch_lease_until ?? 0),
    switchStartedAt: Number(r.switch_started_at ?? 0),
    lastSwitchMs: Number(r.last_switch_ms ?? 0),
  };
}

/** Creates the state row of each table if missing (source: primary, target: secondary). */
export async function ensureStateRows(store: Store, tables: readonly string[], role: Role): Promise<void> {
  const now = Date.now();
  for (const tbl of tables) {
    await store.knex(STATE_TABLE)
      .insert({ tbl, role, epoch: 1, dual_write: 0, ever_dual_write: 0, stale: 0, stale_reason: null, updated_at: now })
      .onConflict('tbl')
      .ignore();
  }
}

/**
 * Reads a table's state inside a writer's transaction with a shared lock, so a stage
 * change or a freeze (which takes the row exclusively) waits for in-flight writes and
 * blocks new ones. Engines with one writer (SQLite) lock implicitly (the adapter adds no clause).
 */
export async function readStateForShare(trx: Knex.Transaction, adapter: DialectAdapter, table: string): Promise<TableState | undefined> {
  await adapter.takeWriteLock(trx);
  const row = (await adapter.forShare(trx(STATE_TABLE).where({ tbl: table }).first())) as StateRecord | undefined;
  return row ? fromStateRecord(row) : undefined;
}

/** Reads and exclusively locks a table's state row (stage changes, cutover). */
export async function readStateForUpdate(trx: Knex.Transaction, adapter: DialectAdapter, table: string): Promise<TableState | undefined> {
  await adapter.takeWriteLock(trx);
  const row = (await adapter.forUpdate(trx(STATE_TABLE).where({ tbl: table }).first())) as StateRecord | undefined;
  return row ? fromStateRecord(row) : undefined;
}

export async function readAllStates(db: Knex): Promise<TableState[]> {
  const rows = (await db(STATE_TABLE).select('*')) as StateRecord[];
  return rows.map(fromStateRecord);
}

export type StatePatch = Partial<
  Pick<
    TableState,
    'role' | 'epoch' | 'dualWrite' | 'everDualWrite' | 'stale' | 'staleReason' | 'switchTo' | 'switchStep' | 'switchOwner' | 'switchLeaseUntil' | 'switchStartedAt' | 'lastSwitchMs'
  >
>;

/** Reads one table's state row without a lock (status, routing refresh). */
export async function readState(db: Knex, table: string): Promise<TableState | undefined> {
  const row = (await db(STATE_TABLE).where({ tbl: table }).first()) as StateRecord | undefined;
  return row ? fromStateRecord(row) : undefined;
}

export async function writeState(trx: Knex.Transaction | Knex, table: string, patch: StatePatch): Promise<void> {
  const update: Record<string, unknown> = { updated_at: Date.now() };
  if (patch.role !== undefined) update['role'] = patch.role;
  if (patch.epoch !== undefined) update['epoch'] = patch.epoch;
  if (patch.dualWrite !== undefined) update['dual_write'] = patch.dualWrite ? 1 : 0;
  if (patch.everDualWrite !== undefined) update['ever_dual_write'] = patch.everDualWrite ? 1 : 0;
  if (patch.stale !== undefined) update['stale'] = patch.stale ? 1 : 0;
  if (patch.staleReason !== undefined) update['stale_reason'] = patch.staleReason;
  if (patch.switchTo !== undefined) update['switch_to'] = patch.switchTo;
  if (patch.switchStep !== undefined) update['switch_step'] = patch.switchStep;
  if (patch.switchOwner !== undefined) update['switch_owner'] = patch.switchOwner;
  if (patch.switchLeaseUntil !== undefined) update['switch_lease_until'] = patch.switchLeaseUntil;
  if (patch.switchStartedAt !== undefined) update['switch_started_at'] = patch.switchStartedAt;
  if (patch.lastSwitchMs !== undefined) update['last_switch_ms'] = patch.lastSwitchMs;
  await trx(STATE_TABLE).where({ tbl: table }).update(update);
}
