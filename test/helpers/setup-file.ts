/**
 * Runs before every test file (vitest `setupFiles`), in the file's own module graph:
 *
 * - a failed test marks the file, so its databases are kept for inspection (their names are
 *   printed by `drop()`), and dropped as usual when every test passed;
 * - after the file, a leak check fails the file when it left a scratch database open (a knex
 *   pool), a Tandem running (pools, workers, timers), or more sockets, servers, child
 *   processes or referenced timers alive than when it started (graphile-worker's "Current
 *   test failed to release all workers"). Pair suites check their sockets once more before
 *   their databases are dropped (a DROP … WITH (FORCE) would close a leaked connection).
 */
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { census, leftOver, type Census } from './leaks.js';
import { noteTestFailure, openDatabases, runningTandems } from './registry.js';

let baseline: Census = new Map();

beforeAll(() => {
  // process.stdout/stderr open their pipe handles on first use: open them now, so a file's
  // first console line is not counted as a leak.
  void process.stdout.writable;
  void process.stderr.writable;
  baseline = census();
});

beforeEach(({ onTestFailed }) => {
  onTestFailed(() => noteTestFailure());
});

afterAll(async () => {
  const problems: string[] = [];
  const tandems = [...runningTandems];
  if (tandems.length > 0) problems.push(`never stopped: ${tandems.map((t) => t.describe()).join(', ')}`);
  const databases = [...openDatabases.values()];
  if (databases.length > 0) problems.push(`scratch database handle(s) never dropped: ${databases.map((d) => d.describe()).join(', ')}`);
  const left = await leftOver(baseline);
  if (left.length > 0) problems.push(`resources still open after the file (compared with its start): ${left.join(', ')}`);
  if (problems.length > 0) {
    // Release what can be released so the next file starts clean, then fail this one.
    await Promise.allSettled(tandems.map((t) => t.release()));
    await Promise.allSettled(databases.map((d) => d.release()));
    throw new Error(`leak check: ${problems.join('; ')}`);
  }
});
