/**
 * The hand-written baselines of DESIGN §12, as teams write them: a minimal express + knex app
 * with Tandem's insert route. `direct` inserts into the source; `naive` inserts into the
 * source, then the same row into the target — no outbox, no ordering, no retry.
 *
 * Environment: BENCH_PORT, BENCH_SOURCE_URL, BENCH_TARGET_URL (naive only), BENCH_POOL_MAX (10).
 */
import express from 'express';
import process from 'node:process';
import { knexFor } from './lib.mjs';

const COLUMNS = /** @type {const} */ (['name', 'qty', 'updated_at']);

/** @param {'direct' | 'naive'} mode */
export async function startBaseline(mode) {
  const port = Number(process.env['BENCH_PORT'] ?? 8090);
  const poolMax = Number(process.env['BENCH_POOL_MAX'] ?? 10);
  const sourceUrl = process.env['BENCH_SOURCE_URL'];
  const targetUrl = process.env['BENCH_TARGET_URL'];
  if (!sourceUrl || (mode === 'naive' && !targetUrl)) throw new Error('BENCH_SOURCE_URL (and BENCH_TARGET_URL for naive) are required');
  const source = knexFor(sourceUrl, poolMax);
  const target = mode === 'naive' && targetUrl ? knexFor(targetUrl, poolMax) : undefined;

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

  app.post('/v1/tables/items/rows', async (req, res) => {
    const values = req.body?.values;
    if (values === null || typeof values !== 'object' || Array.isArray(values)) {
      res.status(400).json({ error: 'values: must be an object' });
      return;
    }
    /** @type {Record<string, unknown>} */
    const insert = {};
    for (const column of COLUMNS) if (column in values) insert[column] = values[column];
    try {
      const [row] = await source('items').insert(insert).returning('*');
      if (target) await target('items').insert(row);
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
