/**
 * The table shapes the benchmark runs (DESIGN §12: the budget holds on every shape, not only
 * the easiest). Each shape says how to create its source and target tables, its policy, what
 * one write sends, how the hand-written baselines map a row to the target, and how to seed
 * the source for backfill and verify in one statement.
 */
import type { Knex } from 'knex';

export type ServerDialect = 'pg' | 'mysql';

export interface Shape {
  /** Short name used on the command line (`--shapes int,text`) and in the report. */
  name: string;
  /** One line for the report. */
  title: string;
  source: ServerDialect;
  target: ServerDialect;
  /** The source table (the API's table name). */
  table: string;
  targetTable: string;
  /** The policy file's YAML. */
  policy: string;
  /** Source column → target column where the policy renames one. */
  renames: Readonly<Record<string, string>>;
  createSource(db: Knex): Promise<void>;
  createTarget(db: Knex): Promise<void>;
  /** The `values` of the n-th write of a load generator; `tag` is unique per load process. */
  values(n: number, tag: string): Record<string, unknown>;
  /** One statement inserting `rows` rows into the source table (backfill and verify). */
  seed(db: Knex, rows: number): Promise<void>;
}

const iso = () => new Date().toISOString();

/** `INSERT … SELECT` over 1..rows: PostgreSQL's generate_series, MariaDB's sequence engine. */
async function seedSeries(db: Knex, dialect: ServerDialect, rows: number, insert: string, select: { pg: string; mysql: string }): Promise<void> {
  if (!Number.isSafeInteger(rows) || rows < 1) throw new Error(`seed: bad row count ${rows}`);
  if (dialect === 'pg') {
    await db.raw(`${insert} SELECT ${select.pg} FROM generate_series(1, ?) AS g`, [rows]);
    await db.raw('ANALYZE');
  } else {
    // The sequence engine names its table after the range; `rows` is a checked integer.
    await db.raw(`${insert} SELECT ${select.mysql} FROM seq_1_to_${rows} AS s`);
  }
}

function intKey(source: ServerDialect, target: ServerDialect): Shape {
  const mariadbSource = source === 'mysql';
  return {
    name: mariadbSource ? 'mariadb-source' : 'int',
    title: mariadbSource
      ? 'MariaDB → PostgreSQL, bigint auto-increment key, 4 columns'
      : 'PostgreSQL → MariaDB, bigint identity key, 4 columns, names unchanged',
    source,
    target,
    table: 'items',
    targetTable: 'items',
    policy: 'table: items\nprimaryKey: [id]\n',
    renames: {},
    createSource: (db) =>
      db.schema.createTable('items', (t) => {
        t.bigIncrements('id').primary();
        t.string('name', 100);
        t.integer('qty');
        t.timestamp('updated_at', { precision: 6 }).nullable();
      }),
    createTarget: (db) =>
      db.schema.createTable('items', (t) => {
        t.bigInteger('id').primary();
        t.string('name', 100);
        t.integer('qty');
        // Microseconds on both sides: a second-precision target would be real drift.
        t.timestamp('updated_at', { precision: 6 }).nullable();
      }),
    values: (n, tag) => ({ name: `bench-${tag}-${n}`, qty: n % 1000, updated_at: iso() }),
    seed: (db, rows) =>
      seedSeries(db, source, rows, 'INSERT INTO items (name, qty, updated_at)', {
        pg: `'seed-' || g, g % 1000, now() - (g || ' seconds')::interval`,
        mysql: `CONCAT('seed-', s.seq), s.seq % 1000, NOW(6) - INTERVAL s.seq SECOND`,
      }),
  };
}

/** A text key, a renamed target table and column, and a timestamp the source defaults. */
const TEXT: Shape = {
  name: 'text',
  title: 'PostgreSQL → MariaDB, text key, target table and column renamed, timestamptz default now()',
  source: 'pg',
  target: 'mysql',
  table: 'accounts',
  targetTable: 'app_accounts',
  policy: 'table: accounts\nprimaryKey: [code]\ntarget:\n  table: app_accounts\n  columns: { name: display_name }\n',
  renames: { name: 'display_name' },
  createSource: async (db) => {
    await db.schema.createTable('accounts', (t) => {
      t.text('code').primary();
      t.string('name', 100);
      t.integer('qty');
    });
    await db.raw('ALTER TABLE accounts ADD COLUMN created_at timestamptz NOT NULL DEFAULT now()');
  },
  createTarget: (db) =>
    db.schema.createTable('app_accounts', (t) => {
      t.string('code', 64).primary();
      t.string('display_name', 100);
      t.integer('qty');
      t.timestamp('created_at', { precision: 6 }).notNullable();
    }),
  values: (n, tag) => ({ code: `acct-${tag}-${n}`, name: `Account ${n}`, qty: n % 1000 }),
  seed: (db, rows) =>
    seedSeries(db, 'pg', rows, 'INSERT INTO accounts (code, name, qty)', { pg: `'seed-' || g, 'Seed ' || g, g % 1000`, mysql: '' }),
};

/** A two-column key: a tenant and a number. */
const COMPOSITE: Shape = {
  name: 'composite',
  title: 'PostgreSQL → MariaDB, composite key (tenant varchar, seq bigint)',
  source: 'pg',
  target: 'mysql',
  table: 'events',
  targetTable: 'events',
  policy: 'table: events\nprimaryKey: [tenant, seq]\n',
  renames: {},
  createSource: (db) =>
    db.schema.createTable('events', (t) => {
      t.string('tenant', 40).notNullable();
      t.bigInteger('seq').notNullable();
      t.string('name', 100);
      t.integer('qty');
      t.timestamp('updated_at', { precision: 6 }).nullable();
      t.primary(['tenant', 'seq']);
    }),
  createTarget: (db) =>
    db.schema.createTable('events', (t) => {
      t.string('tenant', 40).notNullable();
      t.bigInteger('seq').notNullable();
      t.string('name', 100);
      t.integer('qty');
      t.timestamp('updated_at', { precision: 6 }).nullable();
      t.primary(['tenant', 'seq']);
    }),
  values: (n, tag) => ({ tenant: `t-${tag}`, seq: n, name: `event ${n}`, qty: n % 1000, updated_at: iso() }),
  seed: (db, rows) =>
    seedSeries(db, 'pg', rows, 'INSERT INTO events (tenant, seq, name, qty, updated_at)', {
      pg: `'seed-' || (g % 50), g, 'event ' || g, g % 1000, now() - (g || ' seconds')::interval`,
      mysql: '',
    }),
};

/** 20 columns: the key and 19 of mixed types. */
const WIDE_STRINGS = ['s1', 's2', 's3', 's4', 's5', 's6'] as const;
const WIDE_INTS = ['n1', 'n2', 'n3', 'n4', 'n5'] as const;
function wideColumns(t: Knex.CreateTableBuilder, sourceSide: boolean): void {
  if (sourceSide) t.bigIncrements('id').primary();
  else t.bigInteger('id').primary();
  t.string('name', 100);
  t.integer('qty');
  t.timestamp('updated_at', { precision: 6 }).nullable();
  for (const c of WIDE_STRINGS) t.string(c, 40);
  for (const c of WIDE_INTS) t.integer(c);
  t.decimal('d1', 12, 2);
  t.decimal('d2', 12, 2);
  t.boolean('b1');
  t.boolean('b2');
  t.text('note');
}
const WIDE: Shape = {
  name: 'wide',
  title: 'PostgreSQL → MariaDB, 20-column row (bigint key, strings, integers, decimals, booleans, text)',
  source: 'pg',
  target: 'mysql',
  table: 'wide',
  targetTable: 'wide',
  policy: 'table: wide\nprimaryKey: [id]\n',
  renames: {},
  createSource: (db) => db.schema.createTable('wide', (t) => wideColumns(t, true)),
  createTarget: (db) => db.schema.createTable('wide', (t) => wideColumns(t, false)),
  values: (n, tag) => {
    const values: Record<string, unknown> = { name: `wide-${tag}-${n}`, qty: n % 1000, updated_at: iso() };
    for (const [i, c] of WIDE_STRINGS.entries()) values[c] = `${c}-${n}-${'x'.repeat(8 + i)}`;
    for (const [i, c] of WIDE_INTS.entries()) values[c] = (n * (i + 3)) % 100_000;
    values['d1'] = ((n % 10_000) / 100).toFixed(2);
    values['d2'] = '1234.50';
    values['b1'] = n % 2 === 0;
    values['b2'] = n % 3 === 0;
    values['note'] = `a wide row, number ${n}`;
    return values;
  },
  seed: (db, rows) =>
    seedSeries(
      db,
      'pg',
      rows,
      `INSERT INTO wide (name, qty, updated_at, ${WIDE_STRINGS.join(', ')}, ${WIDE_INTS.join(', ')}, d1, d2, b1, b2, note)`,
      {
        pg: `'seed-' || g, g % 1000, now() - (g || ' seconds')::interval, ${WIDE_STRINGS.map((c) => `'${c}-' || g`).join(', ')}, ${WIDE_INTS.map((_c, i) => `(g * ${i + 3}) % 100000`).join(', ')}, (g % 10000) / 100.0, 1234.50, g % 2 = 0, g % 3 = 0, 'seed row ' || g`,
        mysql: '',
      },
    ),
};

export const SHAPES: readonly Shape[] = [intKey('pg', 'mysql'), TEXT, COMPOSITE, WIDE, intKey('mysql', 'pg')];

export function shapeNamed(name: string): Shape {
  const shape = SHAPES.find((s) => s.name === name);
  if (!shape) throw new Error(`unknown table shape ${name} (known: ${SHAPES.map((s) => s.name).join(', ')})`);
  return shape;
}

/** A source row as the naive baseline writes it into the target: renamed columns, nothing else. */
export function toTargetRow(shape: Shape, row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) out[shape.renames[column] ?? column] = value;
  return out;
}
