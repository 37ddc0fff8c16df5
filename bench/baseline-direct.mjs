#!/usr/bin/env node
/**
 * Baseline "direct" (DESIGN §12): a minimal express + knex app whose
 * `POST /v1/tables/items/rows` inserts into the source with RETURNING * and answers 201.
 * Environment: BENCH_PORT, BENCH_SOURCE_URL, BENCH_POOL_MAX.
 */
import process from 'node:process';
import { startBaseline } from './baseline-app.mjs';

startBaseline('direct').catch((error) => {
  process.stderr.write(`baseline-direct: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
