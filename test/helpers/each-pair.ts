import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { createTestDatabase, dialectAvailable, PAIRS, type Pair, type TestDatabase } from './databases.js';
import { census, leftOver, type Census } from './leaks.js';
import { createTestTables, writeTestPolicies } from './schema.js';
import { startTandem, type StartTandemOptions, type TandemHarness } from './tandem.js';

/**
 * What a pair suite gets: its pair, and — once its `beforeAll` ran — two scratch databases
 * with the test tables, the policies folder and a running Tandem over them. Read the fields
 * inside hooks and tests (they are not there yet while the suite is being declared).
 */
export interface PairSuite {
  readonly pair: Pair;
  readonly source: TestDatabase;
  readonly target: TestDatabase;
  readonly policiesDir: string;
  /** Throws when the suite was declared with `tandem: false`. */
  readonly tandem: TandemHarness;
}

/** What `tandem` options see: the databases are created and the tables exist. */
export interface PairSetup {
  pair: Pair;
  source: TestDatabase;
  target: TestDatabase;
  policiesDir: string;
  /** Registers a clean-up that runs after Tandem stopped, before the databases are dropped. */
  onCleanup(fn: () => Promise<unknown> | unknown): void;
}

export interface EachPairOptions {
  /** The pairs to run over (default: every pair of DESIGN §11). Unrunnable ones skip with a notice. */
  pairs?: readonly Pair[];
  /** Part of the scratch databases' names (default: from the suite's name). */
  label?: string;
  /** Creates the tables (default: `createTestTables`, the `people` and `kv` tables). */
  schema?: (source: TestDatabase, target: TestDatabase, pair: Pair) => Promise<void>;
  /** Extra policy files next to the test policies: file name → YAML. */
  policies?: Record<string, string>;
  /** Whether the policies folder holds the test policies (people, kv) besides `policies` (default true). */
  testPolicies?: boolean;
  /** Time for the set-up (databases, tables, Tandem), when it seeds much data (default: the hook timeout). */
  setupTimeoutMs?: number;
  /**
   * Options for `startTandem` beyond the URLs and the policies (default: none), or `false` for
   * a suite that starts Tandem itself. May start helpers first (a fault proxy) and return a
   * `target` URL through them.
   */
  tandem?: false | ((setup: PairSetup) => Partial<StartTandemOptions> | Promise<Partial<StartTandemOptions>>);
}

/**
 * One suite over each dialect pair (DESIGN §11; Kysely's `for (const dialect of DIALECTS)`),
 * with the set-up every integration file used to repeat: databases created in `beforeAll`,
 * Tandem started, and in `afterAll` Tandem stopped and the databases dropped (kept and named
 * when a test failed, see `setup-file.ts`). A pair whose server URL is not set is declared as a
 * skipped suite with the same tests and a notice, so a file never ends with "No test suite
 * found"; with `TANDEM_TEST_REQUIRE` naming the server it fails instead.
 *
 * The suite's own `afterAll` hooks run before this teardown (vitest runs them as a stack).
 */
export function describeEachPair(name: string, fn: (suite: PairSuite) => void): void;
export function describeEachPair(name: string, options: EachPairOptions, fn: (suite: PairSuite) => void): void;
export function describeEachPair(
  name: string,
  optionsOrFn: EachPairOptions | ((suite: PairSuite) => void),
  maybeFn?: (suite: PairSuite) => void,
): void {
  const options = typeof optionsOrFn === 'function' ? {} : optionsOrFn;
  const fn = typeof optionsOrFn === 'function' ? optionsOrFn : maybeFn;
  if (!fn) throw new Error('describeEachPair: the suite function is missing');
  const label = (options.label ?? name).replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, 8);
  for (const pair of options.pairs ?? PAIRS) {
    const runnable = dialectAvailable(pair.source) && dialectAvailable(pair.target);
    if (!runnable) {
      console.warn(`[tandem tests] SKIPPING "${name}" on ${pair.name}: set TANDEM_TEST_PG_URL and TANDEM_TEST_MYSQL_URL to run it`);
      describe.skip(`${name} (${pair.name}: SKIPPED, no server URL)`, () => fn(unavailable(pair)));
      continue;
    }
    describe(`${name} (${pair.name})`, () => {
      const state: { source?: TestDatabase; target?: TestDatabase; policiesDir?: string; tandem?: TandemHarness } = {};
      const cleanups: Array<() => Promise<unknown> | unknown> = [];
      let before: Census = new Map();

      beforeAll(async () => {
        before = census();
        const source = (state.source = await createTestDatabase(pair.source, `${label}src`));
        const target = (state.target = await createTestDatabase(pair.target, `${label}tgt`));
        await (options.schema ?? ((s, t) => createTestTables(s.knex, t.knex)))(source, target, pair);
        const policiesDir = (state.policiesDir = writePolicies(options.policies ?? {}, options.testPolicies ?? true));
        if (options.tandem === false) return;
        const extra = (await options.tandem?.({ pair, source, target, policiesDir, onCleanup: (c) => cleanups.push(c) })) ?? {};
        state.tandem = await startTandem({ source: source.url, target: target.url, policiesDir, ...extra });
      }, options.setupTimeoutMs);

      // Registered before the suite's own hooks, so it runs after them.
      afterAll(async () => {
        await state.tandem?.stop();
        for (const cleanup of cleanups.reverse()) await cleanup();
        await Promise.all([state.source?.knex.destroy(), state.target?.knex.destroy()]);
        // Before the drop: dropping a database closes the connections a leaked pool still holds.
        const left = await leftOver(before);
        await state.source?.drop();
        await state.target?.drop();
        if (state.policiesDir) rmSync(state.policiesDir, { recursive: true, force: true });
        if (left.length > 0) throw new Error(`leak check (${name}, ${pair.name}): still open after the suite: ${left.join(', ')}`);
      });

      fn({
        pair,
        get source() {
          return need(state.source, 'source');
        },
        get target() {
          return need(state.target, 'target');
        },
        get policiesDir() {
          return need(state.policiesDir, 'policiesDir');
        },
        get tandem() {
          if (options.tandem === false) throw new Error(`"${name}" was declared with tandem: false`);
          return need(state.tandem, 'tandem');
        },
      });
    });
  }
}

function writePolicies(files: Record<string, string>, withTestPolicies: boolean): string {
  if (withTestPolicies) return writeTestPolicies(files);
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-policies-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`describeEachPair: ${what} is read before the suite's beforeAll ran (or it failed)`);
  return value;
}

/** The suite object of a skipped pair: its tests never run, so nothing is ever read. */
function unavailable(pair: Pair): PairSuite {
  const fail = (): never => {
    throw new Error(`${pair.name} is skipped here`);
  };
  return {
    pair,
    get source() {
      return fail();
    },
    get target() {
      return fail();
    },
    get policiesDir() {
      return fail();
    },
    get tandem() {
      return fail();
    },
  };
}
