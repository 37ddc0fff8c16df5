import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';

/**
 * Test tables. `people` is renamed and has a renamed and an excluded column on the target;
 * `kv` has a composite key and keeps its names.
 */
export async function createTestTables(source: Knex, target: Knex): Promise<void> {
  await source.schema.createTable('people', (t) => {
    t.increments('id').primary();
    t.string('email', 120).notNullable().unique();
    t.string('full_name', 120);
    t.integer('age');
    t.boolean('active');
    t.text('note');
    t.string('legacy', 20);
  });
  await target.schema.createTable('app_people', (t) => {
    t.integer('id').primary();
    t.string('email', 120).notNullable().unique();
    t.string('name', 120);
    t.integer('age');
    t.boolean('active');
    t.text('note');
  });
  for (const db of [source, target]) {
    await db.schema.createTable('kv', (t) => {
      t.string('tenant', 20).notNullable();
      t.integer('k').notNullable();
      t.integer('val');
      t.string('note', 50);
      t.primary(['tenant', 'k']);
    });
  }
}

export const PEOPLE_POLICY = `table: people
primaryKey: [id]
target:
  table: app_people
  columns: { full_name: name }
  exclude: [legacy]
redact: [email]
`;

export const KV_POLICY = `table: kv
primaryKey: [tenant, k]
`;

/** Writes the test policies into a fresh folder and returns it. */
export function writeTestPolicies(extra: Record<string, string> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-policies-'));
  writeFileSync(path.join(dir, 'people.yaml'), PEOPLE_POLICY);
  writeFileSync(path.join(dir, 'kv.yaml'), KV_POLICY);
  for (const [name, text] of Object.entries(extra)) writeFileSync(path.join(dir, name), text);
  return dir;
}

type Row = Record<string, unknown>;

/** Normalises a value so equal data from different engines compares equal. */
export function normalize(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value) && value.length < 16) return Number(value);
  if (value instanceof Date) return value.toISOString();
  return value;
}

function normalizeRow(row: Row): Row {
  const out: Row = {};
  for (const key of Object.keys(row).sort()) out[key] = normalize(row[key]);
  return out;
}

/** Every row of a table, normalised, sorted by the given key columns. */
export async function snapshot(db: Knex, table: string, keys: readonly string[]): Promise<Row[]> {
  const rows = (await db(table).select('*').orderBy(keys.map((k) => ({ column: k, order: 'asc' as const })))) as Row[];
  return rows.map(normalizeRow);
}

/** The `people` source rows mapped the way the policy maps them (full_name → name, legacy dropped). */
export function mapPeople(rows: readonly Row[]): Row[] {
  return rows.map((r) => {
    const { full_name, legacy: _legacy, ...rest } = r;
    return normalizeRow({ ...rest, name: full_name });
  });
}

/** Asserts-ready pair of snapshots: map(source) and target for both tables. */
export async function convergence(source: Knex, target: Knex) {
  const [sp, tp, sk, tk] = await Promise.all([
    snapshot(source, 'people', ['id']),
    snapshot(target, 'app_people', ['id']),
    snapshot(source, 'kv', ['tenant', 'k']),
    snapshot(target, 'kv', ['tenant', 'k']),
  ]);
  return { people: { expected: mapPeople(sp), actual: tp }, kv: { expected: sk, actual: tk } };
}

/**
 * Tandem's own tables as earlier versions created them (varchar(512) keys, the database's
 * default collation): tests of the migrations at start begin from these.
 */
export async function createPreviousInternalTables(knex: Knex): Promise<void> {
  await knex.schema.createTable('tandem_outbox', (t) => {
    t.bigIncrements('id').primary();
    t.string('tbl', 128).notNullable();
    t.string('row_key', 512).notNullable();
    t.string('op', 8).notNullable();
    t.text('image', knex.client.config.client === 'mysql2' ? 'mediumtext' : 'text');
    t.integer('epoch').notNullable();
    t.string('status', 8).notNullable().defaultTo('pending');
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('next_attempt_at').notNullable();
    t.text('last_error');
    t.bigInteger('created_at').notNullable();
    t.index(['status', 'next_attempt_at'], 'tandem_outbox_claim_idx');
    t.index(['tbl', 'row_key'], 'tandem_outbox_key_idx');
  });
  await knex.schema.createTable('tandem_applied', (t) => {
    t.string('tbl', 128).notNullable();
    t.string('row_key', 512).notNullable();
    t.integer('epoch').notNullable();
    t.bigInteger('seq').notNullable();
    t.bigInteger('applied_at').notNullable();
    t.primary(['tbl', 'row_key']);
  });
  await knex.schema.createTable('tandem_backfill', (t) => {
    t.string('tbl', 128).notNullable().primary();
    t.string('last_key', 512);
    t.bigInteger('copied').notNullable().defaultTo(0);
    t.bigInteger('skipped').notNullable().defaultTo(0);
    t.bigInteger('run_id').notNullable();
    t.bigInteger('started_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.bigInteger('finished_at');
  });
}
