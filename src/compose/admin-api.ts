import type { TandemConfig } from '../config/schema.js';
import type { Store } from '../db/store.js';
import type { AdminApi } from '../http/admin-routes.js';
import { listDeadRows } from '../outbox/list-dead-rows.js';
import type { OutboxRoute } from '../outbox/outbox-worker.js';
import { countDeadIds, replayDeadRows } from '../outbox/replay-dead-rows.js';
import { TandemError } from '../errors.js';
import type { Policy } from '../policy/policy.js';

export interface AdminDeps {
  route: OutboxRoute;
  tables: readonly string[];
  /** The bound policies: the dead-row listing shows keys as each allows. */
  policies: ReadonlyMap<string, Policy>;
  status(): Promise<unknown>;
  verify: AdminApi['verify'];
  releaseBrake: AdminApi['releaseBrake'];
  /** Other stores whose outbox may hold dead rows (the target's, after a cutover); replay covers them too. */
  replayStores?: readonly Store[];
  /** After a replay: wake the workers and refresh the outbox figures. */
  afterReplay(): Promise<void>;
}

/** The admin API over the outboxes (dead rows live in the outbox of the store that was primary when they were written). */
export function makeAdminApi(d: AdminDeps): AdminApi {
  const stores = [d.route.primary, ...(d.replayStores ?? [])];
  return {
    status: d.status,
    // Every outbox that may hold dead rows, each row tagged with its store.
    listDead: async (o) => {
      const rows = [];
      for (const store of stores) rows.push(...(await listDeadRows(store, d.policies, o)));
      return rows.slice(0, o.limit);
    },
    replayDead: async (o) => {
      let chosen = o.store ? stores.filter((s) => s.name === o.store) : stores;
      if (o.ids && !o.store) {
        // Ids name rows of one outbox: refuse to guess when they are dead rows in more than one.
        const holding = [];
        for (const store of stores) if ((await countDeadIds(store, o.ids)) > 0) holding.push(store);
        if (holding.length > 1) throw new TandemError('invalid_value', 400, `store: these ids are dead rows in both the ${holding.map((s) => s.name).join(' and the ')} outbox; say which ("store")`, { field: 'store' });
        chosen = holding;
      }
      let n = 0;
      for (const store of chosen) n += await replayDeadRows(store, o);
      await d.afterReplay();
      return n;
    },
    tables: () => new Set(d.tables),
    releaseBrake: d.releaseBrake,
    verify: d.verify,
  };
}

/** Which bearer tokens guard `/v1` and `/admin` (none on loopback without tokens; `/admin` closed without an admin token). */
export function httpTokens(config: Readonly<TandemConfig>): { apiTokens: string[] | undefined; adminTokens: string[] | undefined } {
  const adminOpen = config.http.apiTokens.length === 0 && config.http.adminToken === undefined;
  return {
    apiTokens: config.http.apiTokens.length > 0 ? config.http.apiTokens : undefined,
    adminTokens: adminOpen ? undefined : config.http.adminToken ? [config.http.adminToken] : [],
  };
}
