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
import { makeDelivery, type Delivery } from './compose/make-delivery.js';
import { makeAppLogger } from './compose/make-logger.js';
import { makeReads, type Reads } from './compose/make-reads.js';
import { refreshMemoryGaugesOnCollect } from './compose/memory-gauges.js';
import { openCore, type Core } from './compose/open-core.js';
import { verifyInServer } from './compose/server-verify.js';
import { buildStatus, type VerifySummary } from './compose/status.js';
import { wakeOnRecovery } from './compose/wake-on-recovery.js';
import type { TandemConfig } from './config/schema.js';
import type { VerifyOptions, VerifyReport } from './consistency/verify.js';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { PrimaryDirectory } from './cutover/primary-directory.js';
import { PrimarySwitch } from './cutover/primary-switch.js';
import { StageReconciler } from './cutover/stage-reconciler.js';
import { makePendingRowsDue } from './outbox/make-rows-due.js';
import type { StoreBreaker } from './db/breaker.js';
import { destroyStore, type Store } from './db/store.js';
import { EventBus, type TandemEvent } from './events.js';
import { makeFlagSource, type FlagSource } from './flags/flag-source.js';
import type { HistoryRing } from './history/history-ring.js';
import { makeHttpApp } from './http/make-http-app.js';
import type { JobRegistry } from './jobs/job-registry.js';
import { clusterMetricsClient } from './metrics/cluster-metrics.js';
import { makeMetrics, recordEvent, type TandemMetrics } from './metrics/metrics.js';
import { Housekeeper } from './outbox/housekeeper.js';
import { PendingKeys } from './outbox/pending-keys.js';
import { orphanStats, restoreOrphans } from './outbox/orphans.js';
import { outboxStats } from './outbox/outbox-stats.js';
import { workerHealth, type WorkerHealth } from './outbox/worker-health.js';
import { refreshOutboxGaugesOnCollect } from './compose/outbox-gauges.js';
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
  /** Delivery from the target's outbox into the source while the target is primary. */
  private reverse: Delivery | undefined;
  private reverseHousekeeper: Housekeeper | undefined;
  private directory: PrimaryDirectory | undefined;
  /** This process's id as the owner of a primary switch. */
  readonly replicaId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private reconciler: StageReconciler | undefined;
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

    // Before cutover the source is every table's primary (DESIGN §5).
    const pending = new PendingKeys(config.read.maxPendingKeys);
    const delivery = makeDelivery(config, source, target, policies, events, { onApplied: (ids) => pending.complete(ids) });
    this.delivery = delivery;
    const { route, breaker: targetBreaker } = delivery;
    this.breakers.set(target.name, targetBreaker);
    events.emit({ type: 'breaker', store: target.name, state: 'closed' });
    // Each table's primary comes from its state rows (DESIGN §5); the reverse route carries
    // the target's outbox into the source after a cutover (the inverse mapping).
    const directory = new PrimaryDirectory(source, target);
    this.directory = directory;
    for (const table of tables) await directory.refresh(table);
    // The target's outbox holds rows only once some table's primary is (or was) the target:
    // before that the reverse direction sends nothing to the target at all.
    const reverseActive = () =>
      tables.some((t) => {
        const view = directory.get(t);
        return view !== undefined && (view.primary !== 'source' || view.switching !== null || view.epoch > 1);
      });
    const reverse = makeDelivery(config, target, source, policies, events, { onApplied: (ids) => pending.complete(ids), isActive: reverseActive });
    this.reverse = reverse;
    this.breakers.set(source.name, reverse.breaker);
    const writes = new WriteService(
      (table) => {
        const primary = directory.primary(table);
        return primary === 'source' ? route : primary === 'target' ? reverse.route : undefined;
      },
      delivery.applier,
      events,
      {
        inlineGraceMs: config.outbox.inlineGraceMs,
        folds: await prepareFolds(route.primary, policies.values()),
        onQueued: (entries) => pending.add(entries),
        refresh: (table) => directory.refresh(table),
        holdMs: config.cutover.holdMs,
        // The target as primary gets a deadline: a black-holed target answers 503 instead of
        // pinning requests (and the brake can see the failures).
        primaryDeadlineMs: (primary) => (primary.name === 'target' ? config.db.statementTimeoutMs : undefined),
      },
    );

    // Both workers run before the first reconcile: a switch resumed at start drains through them.
    delivery.worker.start();
    reverse.worker.start();
    let lastHurry = 0;
    const switcher = new PrimarySwitch({
      source,
      target,
      events,
      replicaId: this.replicaId,
      options: { leaseMs: config.cutover.leaseMs, drainTimeoutMs: config.cutover.drainTimeoutMs, pauseAtStep: config.cutover.pauseAtStep, pauseMs: config.cutover.pauseMs },
      hurryDrain: async (from) => {
        const d = from === 'source' ? delivery : reverse;
        // Inline applies of both routes go through the request path's applier.
        await Promise.all([delivery.applier.flush(), reverse.applier.flush()]);
        // Rows waiting out a backoff or their inline grace are made due, at most twice a second.
        if (Date.now() - lastHurry > 500) {
          lastHurry = Date.now();
          await makePendingRowsDue(d.route.primary);
        }
        d.worker.poke();
      },
    });
    // The brake is built with the reads below; the reconciler asks it through this holder.
    const brakeRef: { current?: { holdsSource(t: string): boolean; braked(t: string): boolean } } = {};
    const reconciler = new StageReconciler(source, target, [...policies.values()], flags, events, config.stages.reconcileIntervalMs, {
      directory,
      switcher,
      holdSource: (table) => brakeRef.current?.holdsSource(table) ?? false,
      refuseForward: (table) => (brakeRef.current?.braked(table) ? 'the safety brake is active: release it before switching to the target' : undefined),
    });
    this.reconciler = reconciler;
    await reconciler.reconcileAll();
    reconciler.start();

    const read = makeReads({ config, events, source, target, primary: route.primary, policies, flags, reconciler, targetBreaker, pending, targetPrimary: (t) => directory.primary(t) === 'target' });
    brakeRef.current = read.brake;
    // An automatic rollback starts now, not at the next reconcile tick.
    events.on((event) => {
      if (event.type === 'brake' && (!event.active || read.brake.holdsSource(event.table))) void reconciler.reconcileSoon();
    });
    this.breakers.set('shadow-source', read.shadowBreakers.source);
    this.breakers.set('shadow-target', read.shadowBreakers.target);
    this.read = read;
    refreshMemoryGaugesOnCollect(this.metrics, tables, read.routing, read.consistency);
    refreshOutboxGaugesOnCollect(this.metrics, () => this.housekeeper?.stats() ?? [], () => this.workerHealth());

    wakeOnRecovery(events, route, delivery.worker);
    wakeOnRecovery(events, reverse.route, reverse.worker);
    this.housekeeper = new Housekeeper(route.primary, tables, events, config.outbox.housekeepingIntervalMs, pending);
    await this.housekeeper.runOnce();
    this.housekeeper.start();
    // The target's outbox (reverse replication): its figures are the reverse lag.
    const reverseEvents = { emit: (event: TandemEvent) => events.emit(event.type === 'outbox.stats' ? { type: 'reverse.stats', tables: event.tables } : event) };
    this.reverseHousekeeper = new Housekeeper(target, tables, reverseEvents, config.outbox.housekeepingIntervalMs, undefined, reverseActive);
    await this.reverseHousekeeper.runOnce();
    this.reverseHousekeeper.start();

    const consoleWiring = makeConsoleApi({ config, events, source, target, policies, flags, jobs: this.jobs, verify: (table, o) => this.verify(table, o) });
    this.history = consoleWiring.history;
    // The SQL front (DESIGN §13): PostgreSQL primaries only.
    const sqlDeps = { config, source, target, policies, reconciler, directory, routing: read.routing, metrics: this.sqlMetrics, logger: this.logger };
    const sql = (this.sql = await makeSqlFront({ ...sqlDeps, poke: () => delivery.worker.poke() }));

    this.express = makeHttpApp({
      policies,
      writes,
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
        afterReplay: async () => (delivery.worker.poke(), reverse.worker.poke(), await this.housekeeper?.runOnce()),
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
    const now = Date.now();
    const worker = this.delivery?.worker;
    return workerHealth({
      now,
      lastRoundAt: worker?.lastRoundAt ?? now,
      lastProgressAt: worker?.lastProgressAt ?? now,
      tables: this.housekeeper?.stats() ?? [],
      breaker: this.breakers.get('target')?.state(),
      stallAfterMs: this.config.outbox.stallAfterMs,
    });
  }

  async status(): Promise<unknown> {
    const primary = this.delivery?.route.primary;
    const tables = [...(this.core?.policies.keys() ?? [])];
    // Counted in the primary's outbox now; the housekeeper's last count when it does not answer in time.
    const fresh = primary ? await withTimeout(outboxStats(primary, tables), 2_000).catch(() => undefined) : undefined;
    const orphans = primary ? await withTimeout(orphanStats(primary), 2_000).catch(() => null) : null;
    return Promise.resolve(
      buildStatus({
        outboxCount: fresh ? { stats: fresh, countedAt: Date.now() } : { stats: this.housekeeper?.stats() ?? [], countedAt: this.housekeeper?.countedAt ?? 0 },
        worker: this.workerHealth(),
        orphans,
        schemaNotReady: this.schemaNotReady,
        version: VERSION,
        startedAt: this.startedAt,
        source: this.stores.source,
        target: this.stores.target,
        breakers: this.breakers,
        flags: this.flags,
        policies: this.core?.policies ?? new Map(),
        reconciler: this.reconciler,
        routing: this.read?.routing,
        consistency: this.read?.consistency,
        brake: this.read?.brake,
        housekeeper: this.housekeeper,
        reverseHousekeeper: this.reverseHousekeeper,
        directory: this.directory,
        lastVerify: this.lastVerify,
      }),
    );
  }

  /** verify (and --repair) from inside the server, in the table's current direction (src/compose/server-verify.ts). */
  verify(table: string, options: VerifyOptions & { repair?: boolean } = {}): Promise<VerifyReport & { repaired: number; staleCleared: boolean }> {
    const primary = this.directory?.primary(table) ?? 'source';
    return verifyInServer(this.core, table, primary, this.events, this.lastVerify, options, async () => (this.delivery?.worker.poke(), this.reverse?.worker.poke(), await this.reconciler?.reconcileSoon()));
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
    await this.reconciler?.stop();
    await this.delivery?.worker.stop();
    await this.reverse?.worker.stop();
    await this.delivery?.applier.flush();
    await this.reverse?.applier.flush();
    await this.housekeeper?.stop();
    await this.reverseHousekeeper?.stop();
    for (const breaker of this.breakers.values()) breaker.shutdown();
    this.flags?.stop();
    await this.sql?.close();
    await Promise.all([destroyStore(this.stores.source), destroyStore(this.stores.target)]);
    this.events.emit({ type: 'lifecycle', phase: 'stopped' });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

