import type { Knex } from 'knex';
import { ensureBinaryKeyColumns } from './collation.js';
import type { Store } from './store.js';

export const OUTBOX_TABLE = 'tandem_outbox';
export const APPLIED_TABLE = 'tandem_applied';
export const STATE_TABLE = 'tandem_state';
export const BACKFILL_TABLE = 'tandem_backfill';

/** One row of `tandem_outbox` as the drivers return it. */
export interface OutboxRecord {
  id: number | string;
  tbl: string;
  row_key: string;
  op: string;
  image: string | null;
  epoch: number | string;
  status: string;
  attempts: number | string;
  next_attempt_at: number | string;
  last_error: string | null;
  created_at: number | string;
}

/**
 * Creates Tandem's own tables in one store if they are missing. Both stores get all three:
 * after a cutover the roles swap. Safe to run from several processes at once.
 */
export async function ensureInternalTables(store: Store): Promise<void> {
  const { knex } = store;
  await createIfMissing(knex, OUTBOX_TABLE, (t) => {
    // AUTOINCREMENT on SQLite (what knex emits) guarantees ids are never reused once rows
    // are deleted: the id is the version's seq and must only grow.
    t.bigIncrements('id').primary();
    t.string('tbl', 128).notNullable();
    t.string('row_key', 512).notNullable();
    t.string('op', 8).notNullable();
    t.text('image', store.adapter.imageColumnType);
    t.integer('epoch').notNullable();
    t.string('status', 8).notNullable().defaultTo('pending');
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('next_attempt_at').notNullable();
    t.text('last_error');
    t.bigInteger('created_at').notNullable();
    t.index(['status', 'next_attempt_at'], 'tandem_outbox_claim_idx');
    t.index(['tbl', 'row_key'], 'tandem_outbox_key_idx');
  });
  await createIfMissing(knex, APPLIED_TABLE, (t) => {
    t.string('tbl', 128).notNullable();
    t.string('row_key', 512).notNullable();
    t.integer('epoch').notNullable();
    t.bigInteger('seq').notNullable();
    t.bigInteger('applied_at').notNullable();
    t.primary(['tbl', 'row_key']);
  });
  await createIfMissing(knex, STATE_TABLE, (t) => {
    t.string('tbl', 128).notNullable().primary();
    t.string('role', 16).notNullable();
    t.integer('epoch').notNullable();
    t.smallint('dual_write').notNullable().defaultTo(0);
    t.smallint('ever_dual_write').notNullable().defaultTo(0);
    t.smallint('stale').notNullable().defaultTo(0);
    t.string('stale_reason', 255);
    t.bigInteger('updated_at').notNullable();
  });
  // The primary switch's record (src/cutover/primary-switch.ts); added to state tables
  // created by earlier versions too.
  await addColumnsIfMissing(knex, STATE_TABLE, {
    switch_to: (t) => t.string('switch_to', 16),
    switch_step: (t) => t.string('switch_step', 32),
    switch_owner: (t) => t.string('switch_owner', 128),
    switch_lease_until: (t) => t.bigInteger('switch_lease_until'),
    switch_started_at: (t) => t.bigInteger('switch_started_at'),
    last_switch_ms: (t) => t.bigInteger('last_switch_ms'),
  });
  await createIfMissing(knex, BACKFILL_TABLE, (t) => {
    // One row per table being backfilled: where it got to, so a killed backfill resumes.
    t.string('tbl', 128).notNullable().primary();
    t.string('last_key', 512);
    t.bigInteger('copied').notNullable().defaultTo(0);
    t.bigInteger('skipped').notNullable().defaultTo(0);
    t.bigInteger('run_id').notNullable();
    t.bigInteger('started_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.bigInteger('finished_at');
  });
  // Tables are created in their first shape and brought forward by the same steps an
  // existing install takes, so every install runs one path.
  await store.adapter.unboundKeyColumns(knex);
  await ensureBinaryKeyColumns(store);
}

async function createIfMissing(knex: Knex, name: string, build: (t: Knex.CreateTableBuilder) => void): Promise<void> {
  if (await knex.schema.hasTable(name)) return;
  try {
    await knex.schema.createTable(name, build);
  } catch (error) {
    // Another Tandem process created it between our check and our create.
    if (!(await knex.schema.hasTable(name))) throw error;
  }
}

async function addColumnsIfMissing(knex: Knex, table: string, columns: Record<string, (t: Knex.AlterTableBuilder) => void>): Promise<void> {
  for (const [name, add] of Object.entries(columns)) {
    if (await knex.schema.hasColumn(table, name)) continue;
    try {
      await knex.schema.alterTable(table, add);
    } catch (error) {
      // Another Tandem process added it between our check and our alter.
      if (!(await knex.schema.hasColumn(table, name))) throw error;
    }
  }
}
