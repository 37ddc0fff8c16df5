import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { DestinationStream, Logger } from 'pino';
import { makeConsoleApi, makeJobRegistry } from './compose/console-wiring.js';
import { checkHealth } from './compose/health.js';
import { closeHttp, listenHttp } from './compose/http-server.js';
import { logEvent } from './compose/log-event.js';
import { makeDelivery, type Delivery } from './compose/make-delivery.js';
import { makeAppLogger } from './compose/make-logger.js';
import { makeReads, type Reads } from './compose/make-reads.js';
import { refreshMemoryGaugesOnCollect } from './compose/memory-gauges.js';
import { openCore, type Core } from './compose/open-core.js';
import { buildStatus, type VerifySummary } from './compose/status.js';
import { wakeOnRecovery } from './compose/wake-on-recovery.js';
import type { TandemConfig } from './config/schema.js';
import { runVerify } from './consistency/run-verify.js';
import type { VerifyOptions, VerifyReport } from './consistency/verify.js';
import { StageReconciler } from './cutover/stage-reconciler.js';
import type { StoreBreaker } from './db/breaker.js';
import type { Store } from './db/store.js';
import { TandemError } from './errors.js';
import { EventBus } from './events.js';
import { makeFlagSource, type FlagSource } from './flags/flag-source.js';
import type { HistoryRing } from './history/history-ring.js';
import { makeHttpApp } from './http/make-http-app.js';
import type { JobRegistry } from './jobs/job-registry.js';
import { clusterMetricsClient } from './metrics/cluster-metrics.js';
import { makeMetrics, recordEvent, type TandemMetrics } from './metrics/metrics.js';
import { Housekeeper } from './outbox/housekeeper.js';
import { listDeadRows } from './outbox/list-dead-rows.js';
import { PendingKeys } from './outbox/pending-keys.js';
import { replayDeadRows } from './outbox/replay-dead-rows.js';
import { prepareFolds, WriteService } from './write/write-service.js';

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
  private delivery: Delivery | undefined;
  private housekeeper: Housekeeper | undefined;
  private reconciler: StageReconciler | undefined;
  private read: Reads | undefined;
  private server: Server | undefined;
  private express: Express | undefined;
  private accepting = false;
  private history: HistoryRing | undefined;
  /** Background verify/backfill started from the admin API (the console). */
  private readonly jobs: JobRegistry;
  private startPromise: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private readonly startedAt = Date.now();
  private readonly lastVerify = new Map<string, VerifySummary>();

  constructor(
    readonly config: Readonly<TandemConfig>,
    private readonly options: TandemAppOptions = {},
  ) {
    this.logger = options.logger ?? makeAppLogger(config, options.logStream);
    this.jobs = makeJobRegistry(this.logger);
    this.events.on((event) => recordEvent(this.metrics, event));
    this.events.on((event) => logEvent(this.logger, event));
  }

  get http(): Express {
    if (!this.express) throw new Error('TandemApp.start() has not finished');
    return this.express;
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

    const flags = makeFlagSource({ ...config.flags }, events);
    this.flags = flags;
    await flags.start();

    // Before cutover the source is every table's primary (DESIGN §5).
    const pending = new PendingKeys(config.read.maxPendingKeys);
    const delivery = makeDelivery(config, source, target, policies, events, { onApplied: (ids) => pending.complete(ids) });
    this.delivery = delivery;
    const { route, breaker: targetBreaker } = delivery;
    this.breakers.set(target.name, targetBreaker);
    events.emit({ type: 'breaker', store: target.name, state: 'closed' });
    const writes = new WriteService(() => route, delivery.applier, events, {
      inlineGraceMs: config.outbox.inlineGraceMs,
      folds: await prepareFolds(route.primary, policies.values()),
      onQueued: (entries) => pending.add(entries),
    });

    const reconciler = new StageReconciler(source, target, [...policies.values()], flags, events, config.stages.reconcileIntervalMs);
    this.reconciler = reconciler;
    await reconciler.reconcileAll();
    reconciler.start();

    const read = makeReads({ config, events, source, target, primary: route.primary, policies, flags, reconciler, targetBreaker, pending });
    this.breakers.set('shadow-source', read.shadowBreakers.source);
    this.breakers.set('shadow-target', read.shadowBreakers.target);
    this.read = read;
    refreshMemoryGaugesOnCollect(this.metrics, tables, read.routing, read.consistency);

    delivery.worker.start();
    wakeOnRecovery(events, route, delivery.worker);
    this.housekeeper = new Housekeeper(route.primary, tables, events, config.outbox.housekeepingIntervalMs, pending);
    await this.housekeeper.runOnce();
    this.housekeeper.start();

    const consoleWiring = makeConsoleApi({ config, events, source, target, policies, flags, jobs: this.jobs, verify: (table, o) => this.verify(table, o) });
    this.history = consoleWiring.history;

    const adminOpen = config.http.apiTokens.length === 0 && config.http.adminToken === undefined;
    this.express = makeHttpApp({
      policies,
      writes,
      reads: read.reads,
      events,
      bodyLimit: config.http.bodyLimit,
      apiTokens: config.http.apiTokens.length > 0 ? config.http.apiTokens : undefined,
      adminTokens: adminOpen ? undefined : config.http.adminToken ? [config.http.adminToken] : [],
      health: () => this.health(),
      metrics: async () => this.clusterMetrics?.() ?? { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() },
      accepting: () => this.accepting,
      admin: {
        status: () => this.status(),
        listDead: (o) => listDeadRows(route.primary, o),
        replayDead: async (o) => {
          const n = await replayDeadRows(route.primary, o);
          delivery.worker.poke();
          await this.housekeeper?.runOnce();
          return n;
        },
        tables: () => new Set(policies.keys()),
        releaseBrake: (table) => read.brake.release(table),
        verify: (table, o) => this.verify(table, o),
      },
      console: consoleWiring.api,
    });
    this.accepting = true;
    if (options.listen === false) return;
    this.server = await listenHttp(this.express, config);
    this.events.emit({ type: 'lifecycle', phase: 'listening', detail: { ...this.address(), tables } });
  }

  health(): Promise<{ ready: boolean; checks: Record<string, unknown> }> {
    return checkHealth(this.stores, this.flags, this.accepting);
  }

  status(): Promise<unknown> {
    const { stores, read } = this;
    const parts = { source: stores.source, target: stores.target, routing: read?.routing, consistency: read?.consistency, brake: read?.brake };
    const policies = this.core?.policies ?? new Map();
    return Promise.resolve(
      buildStatus({ ...parts, version: VERSION, startedAt: this.startedAt, breakers: this.breakers, flags: this.flags, policies, reconciler: this.reconciler, housekeeper: this.housekeeper, lastVerify: this.lastVerify }),
    );
  }

  /**
   * verify (and --repair) from inside the server: differing keys are re-enqueued under a row
   * lock and the worker applies them. A clean verify of a dual-writing table clears its stale mark.
   */
  async verify(table: string, options: VerifyOptions & { repair?: boolean } = {}): Promise<VerifyReport & { repaired: number; staleCleared: boolean }> {
    const policy = this.core?.policies.get(table);
    if (!policy || !this.core) throw new TandemError('unknown_table', 404, `table: no table named "${table.slice(0, 64)}"`, { field: 'table' });
    const result = await runVerify(this.core.source, this.core.target, policy, this.events, options);
    const { differingKeys: _keys, ...summary } = result;
    this.lastVerify.set(table, { ...summary, finishedAt: new Date().toISOString() });
    this.delivery?.worker.poke();
    await this.reconciler?.reconcileSoon();
    return result;
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
    await this.reconciler?.stop();
    await this.delivery?.worker.stop();
    await this.delivery?.applier.flush();
    await this.housekeeper?.stop();
    for (const breaker of this.breakers.values()) breaker.shutdown();
    this.flags?.stop();
    await Promise.all([this.stores.source?.knex.destroy(), this.stores.target?.knex.destroy()]);
    this.events.emit({ type: 'lifecycle', phase: 'stopped' });
  }
}
