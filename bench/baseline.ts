/**
 * The hand-written baselines of DESIGN §12, as teams write them: a minimal express + knex app
 * with Tandem's insert route for one table shape. `direct` inserts into the source and answers
 * the stored row; `naive` then inserts the same row (columns renamed as the policy renames
 * them) into the target — no outbox, no ordering, no retry.
 *
 *   node --import tsx bench/baseline.ts direct|naive
 *
 * Environment: BENCH_PORT, BENCH_SHAPE (int), BENCH_SOURCE_URL, BENCH_TARGET_URL (naive only),
 * BENCH_POOL_MAX (10).
 */
import express from 'express';
import type { Knex } from 'knex';
import { knexForUrl } from '../test/helpers/databases.js';
import { shapeNamed, toTargetRow, type Shape } from './shapes.js';

/** INSERT … RETURNING *: knex emits it on PostgreSQL; on MariaDB (10.5+) it is written out. */
async function insertReturning(db: Knex, dialect: Shape['source'], table: string, values: Record<string, unknown>): Promise<Record<string, unknown>> {
  if (dialect === 'pg') {
    const [row] = (await db(table).insert(values).returning('*')) as Array<Record<string, unknown>>;
    return row ?? {};
  }
  const columns = Object.keys(values);
  const [rows] = (await db.raw(`INSERT INTO ?? (${columns.map(() => '??').join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) RETURNING *`, [
    table,
    ...columns,
    ...columns.map((c) => values[c]),
  ])) as [Array<Record<string, unknown>>];
  return rows[0] ?? {};
}

const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

async function startBaseline(mode: 'direct' | 'naive'): Promise<void> {
  const port = Number(process.env['BENCH_PORT'] ?? 8090);
  const poolMax = Number(process.env['BENCH_POOL_MAX'] ?? 10);
  const shape = shapeNamed(process.env['BENCH_SHAPE'] ?? 'int');
  const sourceUrl = process.env['BENCH_SOURCE_URL'];
  const targetUrl = process.env['BENCH_TARGET_URL'];
  if (!sourceUrl || (mode === 'naive' && !targetUrl)) throw new Error('BENCH_SOURCE_URL (and BENCH_TARGET_URL for naive) are required');
  const source = knexForUrl(sourceUrl, poolMax);
  const target = mode === 'naive' && targetUrl ? knexForUrl(targetUrl, poolMax) : undefined;

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(express.json({ limit: '1mb' }));

  app.get('/healthz', async (_req, res) => {
    try {
      await source.raw('SELECT 1');
      if (target) await target.raw('SELECT 1');
      res.json({ status: 'ok' });
    } catch (error) {
      res.status(503).json({ status: String(error) });
    }
  });

  const columns = new Set(Object.keys(shape.values(1, 'probe')));
  app.post(`/v1/tables/${shape.table}/rows`, async (req, res) => {
    const values = (req.body as { values?: unknown } | undefined)?.values;
    if (values === null || typeof values !== 'object' || Array.isArray(values)) {
      res.status(400).json({ error: 'values: must be an object' });
      return;
    }
    const insert: Record<string, unknown> = {};
    for (const [column, value] of Object.entries(values)) {
      // MariaDB refuses ISO 8601 text ("…T…Z") for DATETIME/TIMESTAMP: hand it a Date, as an app would.
      if (columns.has(column)) insert[column] = shape.source === 'mysql' && typeof value === 'string' && ISO_TIME.test(value) ? new Date(value) : value;
    }
    try {
      const row = await insertReturning(source, shape.source, shape.table, insert);
      if (target) await target(shape.targetTable).insert(toTargetRow(shape, row));
      res.status(201).json({ row });
    } catch (error) {
      res.status(500).json({ error: error instanceof Error ? error.message : String(error) });
    }
  });

  const server = app.listen(port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const stop = () => {
    server.close();
    server.closeAllConnections();
    void Promise.all([source.destroy(), target?.destroy()]).finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const mode = process.argv[2];
if (mode !== 'direct' && mode !== 'naive') {
  process.stderr.write('usage: node --import tsx bench/baseline.ts direct|naive\n');
  process.exit(2);
}
startBaseline(mode).catch((error: unknown) => {
  process.stderr.write(`baseline ${mode}: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
