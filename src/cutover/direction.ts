import type { Store, StoreName } from '../db/store.js';
import { readState } from '../db/table-state.js';
import type { Policy } from '../policy/policy.js';
import { primaryOf } from './primary-directory.js';
import { reversePolicy } from './reverse-policy.js';

/** One table's replication direction: changes flow from its primary to its secondary. */
export interface Direction {
  primary: StoreName;
  from: Store;
  to: Store;
  /** The policy as the primary sees it (reversed while the target is primary). */
  policy: Policy;
}

/**
 * Reads both state rows and returns the table's direction. Tools (verify, backfill) run
 * the same code either way: `map(from) == to` is `map(source) == target` after a cutover
 * too, with the mapping inverted. Mid-switch, the frozen old primary still holds every write.
 */
export async function currentDirection(source: Store, target: Store, policy: Policy): Promise<Direction> {
  const [s, t] = await Promise.all([readState(source.knex, policy.name), readState(target.knex, policy.name)]);
  let primary: StoreName = 'source';
  if (s && t) primary = primaryOf(s, t) ?? (t.role === 'frozen' ? 'target' : 'source');
  return directionOf(source, target, policy, primary);
}

/**
 * After a cutover the stores are handed over mirrored: the target under the name `source`
 * and the source under the name `target`, with the reversed policy. Code that picks a
 * table by store name (fetch-by-keys, verify) then reads the target table from the target
 * and the source table from the source, mapping with the inverse mapping.
 */
export function directionOf(source: Store, target: Store, policy: Policy, primary: StoreName): Direction {
  if (primary === 'source') return { primary, from: source, to: target, policy };
  return { primary, from: Object.freeze({ ...target, name: 'source' as const }), to: Object.freeze({ ...source, name: 'target' as const }), policy: reversePolicy(policy) };
}
