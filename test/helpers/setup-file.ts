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
import { noteTestFailure, openTestDatabases } from './databases.js';
import { census, leftOver, type Census } from './leaks.js';
import { runningTandems } from './tandem.js';

let baseline: Census = new Map();

beforeAll(() => {
  baseline = census();
});

beforeEach(({ onTestFailed }) => {
  onTestFailed(() => noteTestFailure());
});

afterAll(async () => {
  const problems: string[] = [];
  const tandems = runningTandems();
  if (tandems.length > 0) problems.push(`${tandems.length} Tandem app(s) started by startTandem() were never stopped`);
  const databases = openTestDatabases();
  if (databases.length > 0) {
    problems.push(`scratch database handle(s) never dropped: ${databases.map((d) => `${d.dialect} ${d.name}`).join(', ')}`);
  }
  const left = await leftOver(baseline);
  if (left.length > 0) problems.push(`resources still open after the file (compared with its start): ${left.join(', ')}`);
  if (problems.length > 0) {
    // Release what can be released so the next file starts clean, then fail this one.
    await Promise.allSettled(tandems.map((t) => t.stop()));
    await Promise.allSettled(databases.map((d) => d.drop()));
    throw new Error(`leak check: ${problems.join('; ')}`);
  }
});
