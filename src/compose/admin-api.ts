import type { TandemConfig } from '../config/schema.js';
import type { Store } from '../db/store.js';
import type { AdminApi } from '../http/admin-routes.js';
import { listDeadRows } from '../outbox/list-dead-rows.js';
import type { OutboxRoute } from '../outbox/outbox-worker.js';
import { replayDeadRows } from '../outbox/replay-dead-rows.js';

export interface AdminDeps {
  route: OutboxRoute;
  tables: readonly string[];
  status(): Promise<unknown>;
  verify: AdminApi['verify'];
  releaseBrake: AdminApi['releaseBrake'];
  /** Other stores whose outbox may hold dead rows (the target's, after a cutover); replay covers them too. */
  replayStores?: readonly Store[];
  /** After a replay: wake the workers and refresh the outbox figures. */
  afterReplay(): Promise<void>;
}

/** The admin API over the route's outbox (dead rows live in the primary's outbox). */
export function makeAdminApi(d: AdminDeps): AdminApi {
  return {
    status: d.status,
    listDead: (o) => listDeadRows(d.route.primary, o),
    replayDead: async (o) => {
      let n = await replayDeadRows(d.route.primary, o);
      for (const store of d.replayStores ?? []) n += await replayDeadRows(store, o);
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
