#!/usr/bin/env node
/**
 * Baseline "naive dual" (DESIGN §12): a minimal express + knex app whose
 * `POST /v1/tables/items/rows` inserts into the source (RETURNING *), then the same row into the target, and answers 201 (no outbox, no retry).
 * Environment: BENCH_PORT, BENCH_SOURCE_URL, BENCH_TARGET_URL, BENCH_POOL_MAX.
 */
import process from 'node:process';
import { startBaseline } from './baseline-app.mjs';

startBaseline('naive').catch((error) => {
  process.stderr.write(`baseline-naive: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
