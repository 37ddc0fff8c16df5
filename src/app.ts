import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { DestinationStream, Logger } from 'pino';
import { httpTokens, makeAdminApi } from './compose/admin-api.js';
import { makeConsoleApi, makeJobRegistry } from './compose/console-wiring.js';
import { checkHealth } from './compose/health.js';
import { closeHttp, listenHttp } from './compose/http-server.js';
import { logEvent } from './compose/log-event.js';
import { makeSqlFront, type SqlFrontParts } from './compose/make-sql-front.js';
import { makeSqlMetrics } from './compose/sql-metrics.js';
import { makeAppLogger } from './compose/make-logger.js';
import { makeReads, type Reads } from './compose/make-reads.js';
import { refreshMemoryGaugesOnCollect } from './compose/memory-gauges.js';
import { openCore, type Core } from './compose/open-core.js';
import { verifyInServer } from './compose/server-verify.js';
import type { VerifySummary } from './compose/status.js';
import { collectStatus, writeSideHealth } from './compose/app-status.js';
import { makeWriteSide, type WriteSide } from './compose/make-write-side.js';
import type { TandemConfig } from './config/schema.js';
import type { VerifyOptions, VerifyReport } from './consistency/verify.js';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { StoreBreaker } from './db/breaker.js';
import { destroyStore, type Store } from './db/store.js';
import { EventBus } from './events.js';
import { makeFlagSource, type FlagSource } from './flags/flag-source.js';
import type { HistoryRing } from './history/history-ring.js';
import { makeHttpApp } from './http/make-http-app.js';
import type { JobRegistry } from './jobs/job-registry.js';
import { clusterMetricsClient } from './metrics/cluster-metrics.js';
import { makeMetrics, recordEvent, type TandemMetrics } from './metrics/metrics.js';
import { restoreOrphans } from './outbox/orphans.js';
import type { WorkerHealth } from './outbox/worker-health.js';
import { refreshOutboxGaugesOnCollect } from './compose/outbox-gauges.js';

export { openCore as openToolkit } from './compose/open-core.js';

export const VERSION = '0.1.0';

export interface TandemAppOptions {
  logger?: Logger;
  /** Where the default logger writes (default stdout, JSON lines); the CLI passes pino-pretty on a terminal. */
  logStream?: DestinationStream;
  /** Runs before policies are checked, with both stores open (the embedded demo creates its tables). */
  prepareStores?: (source: Store, target: Store) => Promise<void>;
}

export interface StartOptions {
  /** Open the HTTP port (default true). Tests may drive `app.http` with supertest instead. */
  listen?: boolean;
}

/**
 * The composition root: builds stores, policies, flags, breakers, workers and the HTTP app
 * once, wires events to logs and metrics, and owns start/stop order. Behaviour lives in the
 * modules it wires (src/compose/ for the pieces only a composition needs).
 */
export class TandemApp {
  readonly events = new EventBus();
  readonly metrics: TandemMetrics = makeMetrics();
  readonly logger: Logger;
  /** In a cluster worker (TANDEM_WORKERS > 1): the whole cluster's metrics, from the primary. */
  private readonly clusterMetrics = clusterMetricsClient(this.metrics.registry);

  private core: Core | undefined;
  private stores: { source?: Store; target?: Store } = {};
  private flags: FlagSource | undefined;
  private readonly breakers = new Map<string, StoreBreaker>();
  /** Both delivery routes, each table's primary, writes, the switch and the reconciler (compose/make-write-side.ts). */
  private write: WriteSide | undefined;
  /** This process's id as the owner of a primary switch. */
  readonly replicaId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private read: Reads | undefined;
  private server: Server | undefined;
  private express: Express | undefined;
  private accepting = false;
  private history: HistoryRing | undefined;
  /** Background verify/backfill started from the admin API (the console). */
  private readonly jobs: JobRegistry;
  private sql: SqlFrontParts | undefined;
  private readonly sqlMetrics = makeSqlMetrics(this.metrics.registry);
  private startPromise: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private readonly startedAt = Date.now();
  private readonly lastVerify = new Map<string, VerifySummary>();
  /** Tables whose target schema refused their rows, until an apply to them succeeds. */
  private readonly schemaNotReady = new Map<string, { error: string; since: string }>();

  constructor(
    readonly config: Readonly<TandemConfig>,
    private readonly options: TandemAppOptions = {},
  ) {
    this.logger = options.logger ?? makeAppLogger(config, options.logStream);
    this.jobs = makeJobRegistry(this.logger);
    this.events.on((event) => recordEvent(this.metrics, event));
    this.events.on((event) => logEvent(this.logger, event, (table) => this.core?.policies.get(table)));
    this.events.on((event) => {
      if (event.type === 'apply.schema' && !this.schemaNotReady.has(event.table)) this.schemaNotReady.set(event.table, { error: event.error, since: new Date().toISOString() });
      if (event.type === 'apply' && event.result !== 'failed') this.schemaNotReady.delete(event.table);
    });
  }

  get http(): Express {
    if (!this.express) throw new Error('TandemApp.start() has not finished');
    return this.express;
  }

  /** Where the SQL front listens (when `sql.port` is set). */
  sqlAddress(): { host: string; port: number } {
    if (!this.sql?.front) throw new Error('the SQL front is off (sql.port is not set)');
    return this.sql.front.address();
  }

  address(): { host: string; port: number } {
    const addr = this.server?.address() as AddressInfo | null | undefined;
    if (!addr) throw new Error('Tandem is not listening');
    return { host: addr.address, port: addr.port };
  }

  start(options: StartOptions = {}): Promise<void> {
    this.startPromise ??= this.doStart(options).catch(async (error: unknown) => {
      await this.stop().catch(() => undefined);
      throw error;
    });
    return this.startPromise;
  }

  private async doStart(options: StartOptions): Promise<void> {
    const { config, events } = this;
    const core = await openCore(config, {
      onDriverLog: (store, level, message) => events.emit({ type: 'driver', store, level, message }),
      ...(this.options.prepareStores ? { prepareStores: this.options.prepareStores } : {}),
      onStores: (source, target) => {
        this.stores = { source, target };
        events.emit({ type: 'lifecycle', phase: 'starting', detail: { source: source.displayUrl, target: target.displayUrl } });
      },
    });
    this.core = core;
    const { source, target, policies } = core;
    const tables = [...policies.keys()];

    // Rows set aside because their table had no policy resume when the policy is back.
    await restoreOrphans(source, tables);

    const flags = makeFlagSource({ ...config.flags }, events);
    this.flags = flags;
    await flags.start();

    // The write side is built, then both workers start before the first reconcile (DESIGN §3, §5).
    const write = (this.write = await makeWriteSide({ config, events, core, flags, replicaId: this.replicaId, breakers: this.breakers }));
    await write.start();
    const { directory, reconciler, delivery: { route, breaker: targetBreaker } } = write;

    const read = makeReads({ config, events, source, target, primary: route.primary, policies, flags, reconciler, targetBreaker, pending: write.pending, targetPrimary: (t) => directory.primary(t) === 'target' });
    write.useBrake(read.brake);
    this.breakers.set('shadow-source', read.shadowBreakers.source);
    this.breakers.set('shadow-target', read.shadowBreakers.target);
    this.read = read;
    refreshMemoryGaugesOnCollect(this.metrics, tables, read.routing, read.consistency);
    refreshOutboxGaugesOnCollect(this.metrics, () => write.housekeeper?.stats() ?? [], () => this.workerHealth());
    await write.startHousekeeping();

    const consoleWiring = makeConsoleApi({ config, events, source, target, policies, flags, jobs: this.jobs, verify: (table, o) => this.verify(table, o) });
    this.history = consoleWiring.history;
    // The SQL front (DESIGN §13): PostgreSQL primaries only.
    const sqlDeps = { config, source, target, policies, reconciler, directory, routing: read.routing, metrics: this.sqlMetrics, logger: this.logger };
    const sql = (this.sql = await makeSqlFront({ ...sqlDeps, poke: () => write.poke() }));

    this.express = makeHttpApp({
      policies,
      writes: write.writes,
      reads: read.reads,
      events,
      bodyLimit: config.http.bodyLimit,
      requestDeadlineMs: config.http.requestDeadlineMs,
      maxJsonDepth: config.http.maxJsonDepth,
      ...httpTokens(config),
      health: () => this.health(),
      metrics: async () => this.clusterMetrics?.() ?? { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() },
      accepting: () => this.accepting,
      ...(sql ? { sql: sql.runHttp } : {}),
      admin: makeAdminApi({
        route,
        tables,
        policies,
        status: () => this.status(),
        verify: (table, o) => this.verify(table, o),
        releaseBrake: (table) => read.brake.release(table),
        // Dead rows wait in either store's outbox (the reverse outbox after a cutover).
        replayStores: [target],
        afterReplay: async () => (write.poke(), await write.housekeeper?.runOnce()),
      }),
      console: consoleWiring.api,
    });
    this.accepting = true;
    if (sql?.front) {
      await sql.front.start();
      this.events.emit({ type: 'lifecycle', phase: 'listening', detail: { sql: sql.front.address() } });
    }
    if (options.listen === false) return;
    this.server = await listenHttp(this.express, config);
    this.events.emit({ type: 'lifecycle', phase: 'listening', detail: { ...this.address(), tables } });
  }

  health(): Promise<{ ready: boolean; checks: Record<string, unknown> }> {
    return checkHealth(this.stores, this.flags, this.accepting, { targetBreaker: this.breakers.get('target')?.state(), worker: this.workerHealth() });
  }

  /** Is the outbox worker making progress? (outbox/worker-health.ts) */
  private workerHealth(): WorkerHealth {
    return writeSideHealth(this.write, this.breakers.get('target'), this.config.outbox.stallAfterMs);
  }

  /** `/admin/status` (compose/app-status.ts). */
  status(): Promise<unknown> {
    return collectStatus(() => {
      const { core, stores, flags, breakers, write, read, lastVerify, schemaNotReady, startedAt } = this;
      return { version: VERSION, startedAt, stallAfterMs: this.config.outbox.stallAfterMs, core, stores, flags, breakers, write, read, lastVerify, schemaNotReady };
    });
  }

  /** verify (and --repair) from inside the server, in the table's current direction (src/compose/server-verify.ts). */
  verify(table: string, options: VerifyOptions & { repair?: boolean } = {}): Promise<VerifyReport & { repaired: number; staleCleared: boolean }> {
    const primary = this.write?.directory.primary(table) ?? 'source';
    return verifyInServer(this.core, table, primary, this.events, this.lastVerify, options, async () => (this.write?.poke(), await this.write?.reconciler.reconcileSoon()));
  }

  /** Drains requests, stops workers, shuts breakers, the flag client and the pools. Safe to call twice. */
  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    this.events.emit({ type: 'lifecycle', phase: 'stopping' });
    this.accepting = false;
    if (this.server) await closeHttp(this.server, this.config.shutdown.drainTimeoutMs);
    this.jobs.stopAll();
    this.history?.stop();
    await this.sql?.front?.stop();
    await this.write?.stop();
    for (const breaker of this.breakers.values()) breaker.shutdown();
    this.flags?.stop();
    await this.sql?.close();
    await Promise.all([destroyStore(this.stores.source), destroyStore(this.stores.target)]);
    this.events.emit({ type: 'lifecycle', phase: 'stopped' });
  }
}
