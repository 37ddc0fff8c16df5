import type { TandemConfig } from '../config/schema.js';
import { ensureInternalTables } from '../db/internal-tables.js';
import { describeTable } from '../db/introspect.js';
import { destroyStore, makeStore, type Store, type StoreOptions } from '../db/store.js';
import { ensureStateRows } from '../db/table-state.js';
import { TandemError } from '../errors.js';
import { bindPolicy } from '../policy/bind-policy.js';
import { loadPolicyFiles } from '../policy/load-policies.js';
import type { Policy } from '../policy/policy.js';

/** Both stores with Tandem's tables in place and every policy bound: what the server and every CLI tool start from. */
export interface Core {
  source: Store;
  target: Store;
  policies: Map<string, Policy>;
  close(): Promise<void>;
}

export interface OpenCoreOptions {
  /** Routes knex's own warnings (the server logs them). */
  onDriverLog?: (store: 'source' | 'target', level: 'warn' | 'error' | 'deprecate', message: string) => void;
  /** Runs before policies are checked, with both stores open (the embedded demo creates its tables). */
  prepareStores?: (source: Store, target: Store) => Promise<void>;
  /** Called with the stores as soon as they exist (the server reports them while starting). */
  onStores?: (source: Store, target: Store) => void;
}

/**
 * Opens both pools, creates Tandem's own tables where missing, binds the policies against
 * both schemas (refusing with every problem listed) and makes sure each table has its state
 * rows. Closes the pools again when any step fails.
 */
export async function openCore(config: Readonly<TandemConfig>, options: OpenCoreOptions = {}): Promise<Core> {
  const storeOptions = (name: 'source' | 'target'): StoreOptions => {
    const onDriverLog = options.onDriverLog;
    return { ...config.db, ...(onDriverLog ? { onLog: (level, message) => onDriverLog(name, level, message) } : {}) };
  };
  const source = makeStore('source', config.source.url, storeOptions('source'));
  const target = makeStore('target', config.target.url, storeOptions('target'));
  options.onStores?.(source, target);
  const close = async () => {
    await Promise.all([destroyStore(source), destroyStore(target)]);
  };
  try {
    if (options.prepareStores) await options.prepareStores(source, target);
    await Promise.all([ensureInternalTables(source), ensureInternalTables(target)]);
    const policies = await bindAllPolicies(config.policiesDir, source, target);
    const names = [...policies.keys()];
    // Before cutover the source holds every table's primary copy.
    await ensureStateRows(source, names, 'primary');
    await ensureStateRows(target, names, 'secondary');
    return { source, target, policies, close };
  } catch (error) {
    await close();
    throw error;
  }
}

async function bindAllPolicies(dir: string, source: Store, target: Store): Promise<Map<string, Policy>> {
  const files = loadPolicyFiles(dir);
  const problems: string[] = [];
  const out = new Map<string, Policy>();
  for (const loaded of files) {
    const [sourceInfo, targetInfo] = await Promise.all([
      describeTable(source, loaded.file.table),
      describeTable(target, loaded.file.target.table ?? loaded.file.table),
    ]);
    const { policy, problems: found } = bindPolicy(loaded, sourceInfo, targetInfo);
    problems.push(...found);
    if (policy) out.set(policy.name, policy);
  }
  if (files.length === 0) problems.push(`no policy files (*.yaml) in ${dir}`);
  if (problems.length > 0) throw new TandemError('policy_invalid', 500, `Invalid policies:\n  - ${problems.join('\n  - ')}`);
  return out;
}
