import type { Logger } from 'pino';
import type { TandemConfig } from '../config/schema.js';
import { backfillTable } from '../consistency/backfill.js';
import type { Store } from '../db/store.js';
import { TandemError } from '../errors.js';
import type { EventBus } from '../events.js';
import type { FlagSource } from '../flags/flag-source.js';
import { HistoryRing } from '../history/history-ring.js';
import type { ConsoleApi } from '../http/console/console-api.js';
import { JobRegistry } from '../jobs/job-registry.js';
import type { Policy } from '../policy/policy.js';

/** Background verify/backfill started from the admin API (the console); each start and end is logged. */
export function makeJobRegistry(logger: Logger): JobRegistry {
  return new JobRegistry(
    (job) => logger.info({ jobId: job.id, kind: job.kind, table: job.table, options: job.options }, `${job.kind} job started`),
    (job) =>
      (job.state === 'failed' ? logger.error : logger.info).call(
        logger,
        { jobId: job.id, kind: job.kind, table: job.table, state: job.state, err: job.error ?? undefined, ms: Date.parse(job.finishedAt ?? '') - Date.parse(job.startedAt) },
        `${job.kind} job ${job.state}`,
      ),
  );
}

export interface ConsoleDeps {
  config: Readonly<TandemConfig>;
  events: EventBus;
  source: Store;
  target: Store;
  policies: ReadonlyMap<string, Policy>;
  flags: FlagSource;
  jobs: JobRegistry;
  verify: ConsoleApi['verify'];
}

/**
 * The console's admin API: an hour of chart samples in memory (from the same events as the
 * metrics; started here, stopped by the caller), jobs, flags and the verify/backfill triggers.
 */
export function makeConsoleApi(d: ConsoleDeps): { api: ConsoleApi; history: HistoryRing } {
  const tables = [...d.policies.keys()];
  const history = new HistoryRing(tables);
  d.events.on((event) => history.observe(event));
  history.start();
  const api: ConsoleApi = {
    tables: () => new Set(tables),
    history,
    jobs: d.jobs,
    flags: d.flags,
    flagsFile: d.config.flags.file,
    unleashUrl: d.config.flags.unleashUrl,
    capabilities: { cutover: true, rollback: true },
    verify: d.verify,
    backfill: (table, o) => {
      const policy = d.policies.get(table);
      if (!policy) throw new TandemError('unknown_table', 404, `table: no table named "${table.slice(0, 64)}"`, { field: 'table' });
      return backfillTable(d.source, d.target, policy, o);
    },
  };
  return { api, history };
}
