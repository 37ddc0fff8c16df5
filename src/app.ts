import cluster from 'node:cluster';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { pino, type Logger } from 'pino';
import { logEvent } from './compose/log-event.js';
import { makeDelivery, type Delivery } from './compose/make-delivery.js';
import { refreshMemoryGaugesOnCollect } from './compose/memory-gauges.js';
import { openCore, type Core } from './compose/open-core.js';
import { buildStatus, type VerifySummary } from './compose/status.js';
import { wakeOnRecovery } from './compose/wake-on-recovery.js';
import type { TandemConfig } from './config/schema.js';
import { requeueKey } from './consistency/requeue-key.js';
import { runVerify } from './consistency/run-verify.js';
import { SafetyBrake } from './consistency/safety-brake.js';
import type { VerifyOptions, VerifyReport } from './consistency/verify.js';
import { StageReconciler } from './cutover/stage-reconciler.js';
import { makeStoreBreaker, type StoreBreaker } from './db/breaker.js';
import type { Store } from './db/store.js';
import { TandemError, coerceError } from './errors.js';
import { EventBus } from './events.js';
import { makeFlagSource, type FlagSource } from './flags/flag-source.js';
import { makeHttpApp } from './http/make-http-app.js';
import { clusterMetricsClient } from './metrics/cluster-metrics.js';
import { makeMetrics, recordEvent, type TandemMetrics } from './metrics/metrics.js';
import { Housekeeper } from './outbox/housekeeper.js';
import { listDeadRows } from './outbox/list-dead-rows.js';
import { PendingKeys } from './outbox/pending-keys.js';
import { replayDeadRows } from './outbox/replay-dead-rows.js';
import { ConsistencyWindow } from './read/consistency-window.js';
import { ReadRouting } from './read/read-routing.js';
import { ReadService } from './read/read-service.js';
import { prepareFolds, WriteService } from './write/write-service.js';

export { openCore as openToolkit } from './compose/open-core.js';

export const VERSION = '0.1.0';

export interface TandemAppOptions {
  logger?: Logger;
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
  private routing: ReadRouting | undefined;
  private consistency: ConsistencyWindow | undefined;
  private brake: SafetyBrake | undefined;
  private server: Server | undefined;
  private express: Express | undefined;
  private accepting = false;
  private startPromise: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private readonly startedAt = Date.now();
  private readonly lastVerify = new Map<string, VerifySummary>();

  constructor(
    readonly config: Readonly<TandemConfig>,
    private readonly options: TandemAppOptions = {},
  ) {
    this.logger =
      options.logger ??
      pino({ level: config.log.level, base: { service: 'tandem', ...(cluster.worker ? { worker: cluster.worker.id } : {}) }, redact: ['authorization', '*.authorization', '*.password'] });
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

    // Shadow reads get breakers of their own (quiet: they are not the stores' health).
    const quiet = { emit: () => undefined };
    const shadowBreakers = { source: makeStoreBreaker('source', { ...config.apply }, quiet), target: makeStoreBreaker('target', { ...config.apply }, quiet) };
    this.breakers.set('shadow-source', shadowBreakers.source);
    this.breakers.set('shadow-target', shadowBreakers.target);
    const brake = new SafetyBrake([...policies.values()], events);
    this.brake = brake;
    events.on((event) => brake.observe(event));
    const routing = new ReadRouting({ flags, stage: (t) => reconciler.get(t), targetBreaker, pending, braked: (t) => brake.braked(t) });
    this.routing = routing;
    const consistency = new ConsistencyWindow(config.read.consistencySamples, config.read.consistencyWindowMs);
    this.consistency = consistency;
    refreshMemoryGaugesOnCollect(this.metrics, tables, routing, consistency);
    events.on((event) => {
      if (event.type !== 'shadow' || event.result === 'error') return;
      consistency.record(event.table, event.result === 'match');
      events.emit({ type: 'consistency', table: event.table, ...consistency.ratio(event.table) });
    });
    const reads = new ReadService({
      source,
      target,
      routing,
      targetBreaker,
      shadowBreakers,
      events,
      repair: async (policy, key) => {
        await requeueKey(route.primary, policy, key);
      },
      options: { targetTimeoutMs: config.read.targetTimeoutMs, shadowTimeoutMs: config.read.shadowTimeoutMs },
    });

    delivery.worker.start();
    wakeOnRecovery(events, route, delivery.worker);
    this.housekeeper = new Housekeeper(route.primary, tables, events, config.outbox.housekeepingIntervalMs, pending);
    await this.housekeeper.runOnce();
    this.housekeeper.start();

    const adminOpen = config.http.apiTokens.length === 0 && config.http.adminToken === undefined;
    this.express = makeHttpApp({
      policies,
      writes,
      reads,
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
        releaseBrake: (table) => brake.release(table),
        verify: (table, o) => this.verify(table, o),
      },
    });
    this.accepting = true;
    if (options.listen !== false) await this.listen(tables);
  }

  private async listen(tables: readonly string[]): Promise<void> {
    const { config } = this;
    const server = (this.express as Express).listen(config.http.port, config.http.host);
    this.server = server;
    server.requestTimeout = config.http.requestTimeoutMs;
    server.headersTimeout = Math.min(config.http.requestTimeoutMs, 60_000);
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    const { host, port } = this.address();
    this.events.emit({ type: 'lifecycle', phase: 'listening', detail: { host, port, tables } });
  }

  async health(): Promise<{ ready: boolean; checks: Record<string, unknown> }> {
    const ping = async (store: Store | undefined) => {
      if (!store) return 'not started';
      try {
        await withTimeout(store.knex.raw('SELECT 1'), 1_000);
        return 'ok';
      } catch (error) {
        return `unreachable: ${coerceError(error).message}`;
      }
    };
    const [source, target] = await Promise.all([ping(this.stores.source), ping(this.stores.target)]);
    const lastError = this.flags?.lastError();
    const synchronized = this.flags?.synchronized() === true;
    const flags = synchronized
      ? lastError
        ? `ok, but the last refresh failed (serving the last flags): ${lastError}`
        : 'ok'
      : `not synchronized${lastError ? `: ${lastError}` : ''}`;
    return { ready: source === 'ok' && target === 'ok' && synchronized && this.accepting, checks: { source, target, flags } };
  }

  status(): Promise<unknown> {
    return Promise.resolve(
      buildStatus({
        version: VERSION,
        startedAt: this.startedAt,
        source: this.stores.source,
        target: this.stores.target,
        breakers: this.breakers,
        flags: this.flags,
        policies: this.core?.policies ?? new Map(),
        reconciler: this.reconciler,
        routing: this.routing,
        consistency: this.consistency,
        brake: this.brake,
        housekeeper: this.housekeeper,
        lastVerify: this.lastVerify,
      }),
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
    const server = this.server;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), this.config.shutdown.drainTimeoutMs);
      timer.unref();
      await closed;
      clearTimeout(timer);
    }
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

function withTimeout<T>(promise: PromiseLike<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
    Promise.resolve(promise).then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(coerceError(e));
      },
    );
  });
}
