import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { pino, type Logger } from 'pino';
import type { TandemConfig } from './config/schema.js';
import { PrimaryDirectory } from './cutover/primary-directory.js';
import { PrimarySwitch } from './cutover/primary-switch.js';
import { directionOf } from './cutover/direction.js';
import { policyFor, reversePolicy } from './cutover/reverse-policy.js';
import { StageReconciler } from './cutover/stage-reconciler.js';
import { ensureInternalTables } from './db/internal-tables.js';
import { describeTable } from './db/introspect.js';
import { makeStore, type Store } from './db/store.js';
import { ensureStateRows, readStateForUpdate } from './db/table-state.js';
import { TandemError, coerceError } from './errors.js';
import { EventBus, type TandemEvent } from './events.js';
import { makeFlagSource, type FlagSource } from './flags/flag-source.js';
import { flagNames, KILL_SWITCH_FLAG } from './flags/resolve-stage.js';
import { makeHttpApp } from './http/make-http-app.js';
import { makeMetrics, recordEvent, type TandemMetrics } from './metrics/metrics.js';
import { bindPolicy } from './policy/bind-policy.js';
import { loadPolicyFiles } from './policy/load-policies.js';
import type { Policy } from './policy/policy.js';
import { ConsistencyWindow } from './read/consistency-window.js';
import { ReadRouting } from './read/read-routing.js';
import { ReadService } from './read/read-service.js';
import { requeueKey } from './consistency/requeue-key.js';
import { SafetyBrake } from './consistency/safety-brake.js';
import { verifyTable, type VerifyOptions, type VerifyReport } from './consistency/verify.js';
import { writeState } from './db/table-state.js';
import type { KeyValues } from './policy/row-key.js';
import { PendingKeys } from './write/pending-keys.js';
import { Applier, type ApplyRoute } from './write/applier.js';
import { makeStoreBreaker, type StoreBreaker } from './write/breaker.js';
import { Housekeeper } from './write/housekeeper.js';
import { listDeadRows, replayDeadRows } from './write/outbox/dead-rows.js';
import { makePendingRowsDue } from './write/outbox/fail-outbox-rows.js';
import { OutboxWorker } from './write/outbox-worker.js';
import { prepareFolds } from './write/pg-fold.js';
import { WriteService } from './write/write-service.js';
import { clusterMetricsClient } from './metrics/cluster-metrics.js';

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
 * once, wires events to logs and metrics, and owns start/stop order.
 */
export class TandemApp {
  readonly events = new EventBus();
  readonly metrics: TandemMetrics = makeMetrics();
  readonly logger: Logger;
  /** In a cluster worker (TANDEM_WORKERS > 1): the whole cluster's metrics, from the primary. */
  private readonly clusterMetrics = clusterMetricsClient(this.metrics.registry);

  private source: Store | undefined;
  private target: Store | undefined;
  private flags: FlagSource | undefined;
  private breakers = new Map<string, StoreBreaker>();
  private worker: OutboxWorker | undefined;
  /** Drains the target's outbox into the source while the target is primary. */
  private reverseWorker: OutboxWorker | undefined;
  private reverseHousekeeper: Housekeeper | undefined;
  private directory: PrimaryDirectory | undefined;
  /** This process's id as the owner of a primary switch. */
  readonly replicaId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private applier: Applier | undefined;
  private housekeeper: Housekeeper | undefined;
  private reconciler: StageReconciler | undefined;
  private server: Server | undefined;
  private express: Express | undefined;
  private policies = new Map<string, Policy>();
  private routing: ReadRouting | undefined;
  private consistency: ConsistencyWindow | undefined;
  private brake: SafetyBrake | undefined;
  private accepting = false;
  private startPromise: Promise<void> | undefined;
  private stopPromise: Promise<void> | undefined;
  private readonly startedAt = Date.now();

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
    const { config } = this;
    const driverLog = (store: 'source' | 'target') => (level: 'warn' | 'error' | 'deprecate', message: string) =>
      this.events.emit({ type: 'driver', store, level, message });
    const source = makeStore('source', config.source.url, { ...config.db, onLog: driverLog('source') });
    const target = makeStore('target', config.target.url, { ...config.db, onLog: driverLog('target') });
    this.source = source;
    this.target = target;
    this.events.emit({ type: 'lifecycle', phase: 'starting', detail: { source: source.displayUrl, target: target.displayUrl } });

    if (this.options.prepareStores) await this.options.prepareStores(source, target);
    await Promise.all([ensureInternalTables(source), ensureInternalTables(target)]);
    this.policies = await this.bindPolicies(source, target);
    const tables = [...this.policies.keys()];
    await ensureStateRows(source, tables, 'primary');
    await ensureStateRows(target, tables, 'secondary');

    const events = this.events;
    const flags = makeFlagSource(
      {
        file: config.flags.file,
        unleashUrl: config.flags.unleashUrl,
        unleashToken: config.flags.unleashToken,
        refreshIntervalMs: config.flags.refreshIntervalMs,
        appName: config.flags.appName,
        environment: config.flags.environment,
      },
      events,
    );
    this.flags = flags;
    await flags.start();

    const breakerOptions = { ...config.apply, timeoutMs: config.apply.timeoutMs };
    const targetBreaker = makeStoreBreaker('target', breakerOptions, events);
    this.breakers.set('target', targetBreaker);
    events.emit({ type: 'breaker', store: 'target', state: 'closed' });
    const route: ApplyRoute = { from: source, to: target, breaker: targetBreaker };
    // The reverse direction (target primary after a cutover): the same apply with the
    // policies seen from the target, writing the inverse mapping into the source.
    const sourceBreaker = makeStoreBreaker('source', breakerOptions, events);
    this.breakers.set('source', sourceBreaker);
    const reversed = new Map([...this.policies].map(([name, policy]) => [name, reversePolicy(policy)]));
    const reverseRoute: ApplyRoute = { from: target, to: source, breaker: sourceBreaker, policies: reversed };
    const directory = new PrimaryDirectory(source, target);
    this.directory = directory;
    for (const table of tables) await directory.refresh(table);

    const pending = new PendingKeys(config.read.maxPendingKeys);
    const applier = new Applier(
      this.policies,
      events,
      {
        timeoutMs: config.apply.timeoutMs,
        batchTimeoutMs: config.apply.batchTimeoutMs,
        maxAttempts: config.outbox.maxAttempts,
        backoffBaseMs: config.outbox.backoffBaseMs,
        backoffMaxMs: config.outbox.backoffMaxMs,
      },
      (ids) => pending.complete(ids),
    );
    this.applier = applier;
    const writes = new WriteService(
      (table) => {
        const primary = directory.primary(table);
        return primary === 'source' ? route : primary === 'target' ? reverseRoute : undefined;
      },
      applier,
      events,
      {
        inlineGraceMs: config.outbox.inlineGraceMs,
        folds: await prepareFolds(source, this.policies.values()),
        onQueued: (entries) => pending.add(entries),
        orient: (primary, policy) => policyFor(primary.name, policy),
        refresh: (table) => directory.refresh(table),
        holdMs: config.cutover.holdMs,
        // The target as primary gets a deadline: a black-holed target answers 503 instead of
        // pinning requests (and the brake can see the failures).
        primaryDeadlineMs: (primary) => (primary.name === 'target' ? config.db.statementTimeoutMs : undefined),
      },
    );

    const workerOptions = {
      probeTimeoutMs: config.apply.timeoutMs,
      pollIntervalMs: config.outbox.pollIntervalMs,
      batchSize: config.outbox.batchSize,
      concurrency: config.outbox.concurrency,
      leaseMs: config.outbox.leaseMs,
    };
    // One worker per direction, each claiming from its own primary's outbox. Both run
    // before the first reconcile: a switch resumed at start drains through them.
    this.worker = new OutboxWorker(route, applier, events, workerOptions);
    this.worker.start();
    // The target's outbox holds rows only once some table's primary is (or was, mid-switch)
    // the target: before that the reverse direction sends nothing to the target at all.
    const reverseActive = () => tables.some((t) => {
      const view = directory.get(t);
      return view !== undefined && (view.primary !== 'source' || view.switching !== null || view.epoch > 1);
    });
    this.reverseWorker = new OutboxWorker(reverseRoute, applier, events, { ...workerOptions, isActive: reverseActive });
    this.reverseWorker.start();
    let lastHurry = 0;
    const switcher = new PrimarySwitch({
      source,
      target,
      events,
      replicaId: this.replicaId,
      options: {
        leaseMs: config.cutover.leaseMs,
        drainTimeoutMs: config.cutover.drainTimeoutMs,
        pauseAtStep: config.cutover.pauseAtStep,
        pauseMs: config.cutover.pauseMs,
      },
      hurryDrain: async (from) => {
        await applier.flush();
        // Rows waiting out a backoff or their inline grace are made due, at most twice a second.
        if (Date.now() - lastHurry > 500) {
          lastHurry = Date.now();
          await makePendingRowsDue(from === 'source' ? source : target);
        }
        (from === 'source' ? this.worker : this.reverseWorker)?.poke();
      },
    });

    const brake = new SafetyBrake([...this.policies.values()], events, Date.now, (table) => directory.primary(table) === 'target');
    this.brake = brake;
    this.events.on((event) => brake.observe(event));
    const reconciler = new StageReconciler(source, target, [...this.policies.values()], flags, events, config.stages.reconcileIntervalMs, {
      directory,
      switcher,
      holdSource: (table) => brake.holdsSource(table),
      refuseForward: (table) => (brake.braked(table) ? 'the safety brake is active: release it before switching to the target' : undefined),
    });
    // An automatic rollback starts now, not at the next reconcile tick.
    this.events.on((event) => {
      if (event.type === 'brake' && event.active && brake.holdsSource(event.table)) void reconciler.reconcileSoon();
      if (event.type === 'brake' && !event.active) void reconciler.reconcileSoon();
    });
    this.reconciler = reconciler;
    await reconciler.reconcileAll();
    reconciler.start();

    // Shadow reads get breakers of their own (quiet: they are not the stores' health).
    const quiet = { emit: () => undefined };
    const shadowBreakers = {
      source: makeStoreBreaker('source', breakerOptions, quiet),
      target: makeStoreBreaker('target', breakerOptions, quiet),
    };
    this.breakers.set('shadow-source', shadowBreakers.source);
    this.breakers.set('shadow-target', shadowBreakers.target);
    const routing = new ReadRouting({ flags, stage: (t) => reconciler.get(t), targetBreaker, pending, braked: (t) => brake.braked(t) });
    this.routing = routing;
    const consistency = new ConsistencyWindow(config.read.consistencySamples, config.read.consistencyWindowMs);
    this.consistency = consistency;
    // Figures kept in memory are set when the registry is read (a scrape here, or the
    // cluster primary collecting from every worker).
    const refreshGauges = () => {
      for (const name of this.policies.keys()) {
        this.metrics.readTargetPercent.set({ table: name }, routing.percent(name, 'readTarget'));
        const { ratio, samples } = consistency.ratio(name);
        this.metrics.consistency.set({ table: name }, ratio);
        this.metrics.consistencySamples.set({ table: name }, samples);
      }
    };
    for (const gauge of [this.metrics.readTargetPercent, this.metrics.consistency, this.metrics.consistencySamples]) {
      (gauge as unknown as { collect?: () => void }).collect = refreshGauges;
    }
    this.events.on((event) => {
      if (event.type !== 'shadow' || event.result === 'error') return;
      consistency.record(event.table, event.result === 'match');
      const { ratio, samples } = consistency.ratio(event.table);
      this.events.emit({ type: 'consistency', table: event.table, ratio, samples });
    });
    const reads = new ReadService({
      source,
      target,
      routing,
      targetBreaker,
      shadowBreakers,
      events,
      repair: async (policy, key) => {
        // Read-repair re-enqueues the source image: only while the source is primary.
        if (directory.primary(policy.name) === 'source') await requeueKey(source, policy, key);
      },
      options: { targetTimeoutMs: config.read.targetTimeoutMs, shadowTimeoutMs: config.read.shadowTimeoutMs },
    });

    // When the secondary is back, rows waiting out their backoff are due at once.
    this.events.on((event) => {
      if (event.type !== 'breaker') return;
      for (const [r, worker] of [
        [route, this.worker],
        [reverseRoute, this.reverseWorker],
      ] as const) {
        if (event.store !== r.to.name || !worker) continue;
        // Requests never take a half-open breaker's trial; the worker takes it at once.
        if (event.state === 'half-open') worker.poke();
        if (event.state === 'closed') {
          makePendingRowsDue(r.from)
            .then(() => worker.poke())
            .catch((error: unknown) => this.events.emit({ type: 'background.error', component: 'outbox.kick', error: coerceError(error) }));
        }
      }
    });
    this.housekeeper = new Housekeeper(source, tables, events, config.outbox.housekeepingIntervalMs, pending);
    await this.housekeeper.runOnce();
    this.housekeeper.start();
    // The target's outbox (reverse replication): its figures are the reverse lag.
    const reverseEvents = {
      emit: (event: TandemEvent) => events.emit(event.type === 'outbox.stats' ? { type: 'reverse.stats', tables: event.tables } : event),
    };
    this.reverseHousekeeper = new Housekeeper(target, tables, reverseEvents, config.outbox.housekeepingIntervalMs, undefined, reverseActive);
    await this.reverseHousekeeper.runOnce();
    this.reverseHousekeeper.start();

    const adminOpen = config.http.apiTokens.length === 0 && config.http.adminToken === undefined;
    this.express = makeHttpApp({
      policies: this.policies,
      writes,
      reads,
      events,
      bodyLimit: config.http.bodyLimit,
      apiTokens: config.http.apiTokens.length > 0 ? config.http.apiTokens : undefined,
      adminTokens: adminOpen ? undefined : config.http.adminToken ? [config.http.adminToken] : [],
      health: () => this.health(),
      metrics: async () => {
        if (this.clusterMetrics) return this.clusterMetrics();
        return { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() };
      },
      accepting: () => this.accepting,
      admin: {
        status: () => this.status(),
        listDead: (o) => listDeadRows(source, o),
        replayDead: async (o) => {
          const n = (await replayDeadRows(source, o)) + (await replayDeadRows(target, o));
          this.worker?.poke();
          this.reverseWorker?.poke();
          await this.housekeeper?.runOnce();
          return n;
        },
        tables: () => new Set(this.policies.keys()),
        releaseBrake: (table) => brake.release(table),
        verify: (table, o) => this.verify(table, o),
      },
    });
    this.accepting = true;

    if (options.listen !== false) {
      const server = this.express.listen(config.http.port, config.http.host);
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
  }

  private bindPolicies(source: Store, target: Store): Promise<Map<string, Policy>> {
    return bindAllPolicies(this.config.policiesDir, source, target);
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
    const [source, target] = await Promise.all([ping(this.source), ping(this.target)]);
    const lastError = this.flags?.lastError();
    const flags = this.flags?.synchronized()
      ? lastError
        ? `ok, but the last refresh failed (serving the last flags): ${lastError}`
        : 'ok'
      : `not synchronized${lastError ? `: ${lastError}` : ''}`;
    return { ready: source === 'ok' && target === 'ok' && this.flags?.synchronized() === true && this.accepting, checks: { source, target, flags } };
  }

  async status(): Promise<unknown> {
    const stats = new Map((this.housekeeper?.stats() ?? []).map((s) => [s.table, s]));
    const reverseStats = new Map((this.reverseHousekeeper?.stats() ?? []).map((s) => [s.table, s]));
    const flags = this.flags;
    return {
      version: VERSION,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      stores: {
        // The primary has no breaker: a failing primary is the client's answer (503), never queued.
        // Roles are per table (tables[].primary); a store's breaker guards applies to it as a secondary.
        source: { url: this.source?.displayUrl, dialect: this.source?.dialect, breaker: this.breakers.get('source')?.state() ?? null, role: this.storeRole('source') },
        target: { url: this.target?.displayUrl, dialect: this.target?.dialect, breaker: this.breakers.get('target')?.state(), role: this.storeRole('target') },
      },
      flags: {
        origin: flags?.origin,
        synchronized: flags?.synchronized() ?? false,
        lastError: flags?.lastError() ?? null,
        killSwitch: flags?.isEnabled(KILL_SWITCH_FLAG) ?? false,
      },
      tables: [...this.policies.values()].map((policy) => {
        const stage = this.reconciler?.get(policy.name);
        const names = flagNames(policy.name);
        const outbox = stats.get(policy.name);
        const view = this.directory?.get(policy.name);
        const reverse = reverseStats.get(policy.name);
        return {
          table: policy.name,
          targetTable: policy.targetTable,
          stage: stage?.stage ?? 'source-only',
          primary: view ? (view.primary ?? null) : 'source',
          epoch: view?.epoch ?? stage?.state?.epoch ?? 1,
          // The current secondary may lack rows: the target before a cutover, the source after retire-source.
          stale: view?.primary === 'target' ? view.target.stale : (stage?.state?.stale ?? false),
          staleReason: view?.primary === 'target' ? view.target.staleReason : (stage?.state?.staleReason ?? null),
          flagConflict: stage?.conflict ?? null,
          flags: {
            dualWrite: flags?.isEnabled(names.dualWrite) ?? false,
            targetPrimary: flags?.isEnabled(names.targetPrimary) ?? false,
            retireSource: flags?.isEnabled(names.retireSource) ?? false,
          },
          switch: view?.switching ? { ...view.switching, elapsedMs: Date.now() - view.switching.startedAt } : null,
          lastSwitchMs: view?.lastSwitchMs ?? 0,
          reverse: { pending: reverse?.pending ?? 0, dead: reverse?.dead ?? 0, lagSeconds: reverse?.lagSeconds ?? 0 },
          readTargetPercent: this.routing?.percent(policy.name, 'readTarget') ?? 0,
          shadowReadPercent: this.routing?.percent(policy.name, 'shadowRead') ?? 0,
          consistency: this.consistency?.ratio(policy.name) ?? { ratio: 1, samples: 0 },
          brake: this.brake?.status(policy.name) ?? null,
          lastVerify: this.lastVerify.get(policy.name) ?? null,
          outbox: { pending: outbox?.pending ?? 0, dead: outbox?.dead ?? 0, lagSeconds: outbox?.lagSeconds ?? 0 },
        };
      }),
    };
  }

  /** `primary` / `secondary` when every table agrees, else `mixed` (see tables[].primary). */
  private storeRole(store: 'source' | 'target'): string {
    const primaries = new Set([...this.policies.keys()].map((t) => this.directory?.primary(t) ?? 'source'));
    if (primaries.size !== 1) return 'mixed';
    return primaries.has(store) ? 'primary' : 'secondary';
  }

  private readonly lastVerify = new Map<string, Omit<VerifyReport, 'differingKeys'> & { finishedAt: string }>();

  /**
   * verify (and --repair) from inside the server: differing keys are re-enqueued under a row
   * lock and the worker applies them. A clean verify of a dual-writing table clears its stale mark.
   */
  async verify(table: string, options: VerifyOptions & { repair?: boolean } = {}): Promise<VerifyReport & { repaired: number; staleCleared: boolean }> {
    const policy = this.policies.get(table);
    if (!policy || !this.source || !this.target) throw new TandemError('unknown_table', 404, `table: no table named "${table.slice(0, 64)}"`, { field: 'table' });
    // Whichever store is primary: map(primary) against the secondary (inverse mapping after a cutover).
    const direction = directionOf(this.source, this.target, policy, this.directory?.primary(table) ?? 'source');
    const result = await runVerify(direction.from, direction.to, direction.policy, this.events, options);
    const { differingKeys: _keys, ...summary } = result;
    this.lastVerify.set(table, { ...summary, finishedAt: new Date().toISOString() });
    this.worker?.poke();
    this.reverseWorker?.poke();
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
    await this.worker?.stop();
    await this.reverseWorker?.stop();
    await this.applier?.flush();
    await this.housekeeper?.stop();
    await this.reverseHousekeeper?.stop();
    for (const breaker of this.breakers.values()) breaker.shutdown();
    this.flags?.stop();
    await Promise.all([this.source?.knex.destroy(), this.target?.knex.destroy()]);
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

/** One log line per event worth a line. Values of rows never appear; keys and tables do. */
function logEvent(logger: Logger, event: TandemEvent): void {
  switch (event.type) {
    case 'http.request': {
      // One event per request: build nothing when the line would not be written.
      if (event.status < 500 && !logger.isLevelEnabled('info')) return;
      const fields = {
        reqId: event.requestId,
        method: event.method,
        route: event.route,
        ...(event.table ? { table: event.table } : {}),
        status: event.status,
        ms: Math.round(event.durationMs * 10) / 10,
        ...(event.code ? { code: event.code } : {}),
      };
      if (event.status >= 500) logger.error({ ...fields, err: event.error, msg2: event.message }, 'request failed');
      else if (event.route === '/healthz' || event.route === '/readyz' || event.route === '/metrics') logger.debug(fields, 'request');
      else logger.info(fields, 'request');
      return;
    }
    case 'shadow':
      if (event.result === 'mismatch') {
        logger.warn({ table: event.table, key: event.key, columns: event.columns, shadowStore: event.shadowStore }, 'shadow read mismatch');
      }
      return;
    case 'read':
      if (event.result === 'fallback') logger.warn({ table: event.table, err: event.error?.message }, 'target read failed; served by the source');
      return;
    case 'brake':
      if (event.active) logger.error({ table: event.table, signal: event.signal, value: event.value, threshold: event.threshold }, `safety brake tripped: ${event.reason}`);
      else logger.warn({ table: event.table }, `safety brake released: ${event.reason}`);
      return;
    case 'brake.warn':
      logger.warn({ table: event.table, signal: event.signal, value: event.value, warnAt: event.threshold }, 'safety signal past its warning level');
      return;
    case 'verify': {
      const r = event.report;
      logger.info(
        { table: r.table, matching: r.matching, mismatched: r.mismatched, missingInTarget: r.missingInTarget, extraInTarget: r.extraInTarget, ms: r.durationMs, rowsPerSecond: r.rowsPerSecond },
        r.clean ? 'verify: clean' : 'verify: drift found',
      );
      return;
    }
    case 'apply.failed':
      logger.warn(
        { store: event.store, rows: event.rows, path: event.path, willRetry: event.willRetry, err: event.error.message },
        'apply to secondary failed; rows stay queued',
      );
      return;
    case 'outbox.dead':
      logger.error({ table: event.table, key: event.rowKey, outboxId: event.id, err: event.error }, 'outbox row is dead: replay it after fixing the cause');
      return;
    case 'breaker':
      (event.state === 'closed' ? logger.info : logger.warn).call(logger, { store: event.store, state: event.state }, 'circuit breaker');
      return;
    case 'stage':
      logger.info({ table: event.table, stage: event.stage, stale: event.stale, reason: event.reason }, 'table stage');
      return;
    case 'flags.loaded':
      logger.info({ origin: event.origin, features: event.features }, 'flags loaded');
      return;
    case 'flags.error':
      logger.error({ origin: event.origin, err: event.error.message }, 'flags could not be refreshed; keeping the last good flags');
      return;
    case 'cutover.step':
      logger.warn({ table: event.table, from: event.from, to: event.to, step: event.step, phase: event.phase, replica: event.replica, ...(event.ms !== undefined ? { ms: event.ms } : {}) }, `primary switch: ${event.step}`);
      return;
    case 'cutover.switched':
      logger.warn({ table: event.table, primary: event.to, epoch: event.epoch, ms: event.ms }, `primary switched to the ${event.to}`);
      return;
    case 'cutover.identity':
      logger.info({ table: event.table, store: event.store, oldMax: event.oldMax, movedTo: event.movedTo }, 'identity counter moved past the old primary');
      return;
    case 'cutover.refused':
      logger.error({ table: event.table, to: event.to, reason: event.reason }, 'primary switch refused');
      return;
    case 'cutover.abandoned':
      logger.error({ table: event.table, from: event.from, reason: event.reason }, 'primary switch abandoned before its commit point; the old primary takes writes again');
      return;
    case 'flag.conflict':
      logger.warn({ table: event.table, reason: event.reason }, 'flag combination refused; keeping the last good stage');
      return;
    case 'background.error':
      logger.error({ component: event.component, err: event.error.message }, 'background task failed; it carries on');
      return;
    case 'driver':
      logger.warn({ store: event.store, driverLevel: event.level }, event.message.slice(0, 500));
      return;
    case 'lifecycle':
      logger.info({ phase: event.phase, ...event.detail }, `tandem ${event.phase}`);
      return;
    default:
      return;
  }
}

/**
 * Runs verify, publishes its metrics, repairs when asked (re-enqueue each differing key's
 * source image under a row lock), and clears the stale mark after a clean run while
 * dual-write is on. Shared by the admin endpoint and the CLI.
 */
export async function runVerify(
  source: Store,
  target: Store,
  policy: Policy,
  events: EventBus,
  options: VerifyOptions & { repair?: boolean },
): Promise<VerifyReport & { repaired: number; staleCleared: boolean }> {
  const report = await verifyTable(source, target, policy, options);
  events.emit({ type: 'verify', report });
  let repaired = 0;
  if (options.repair) {
    for (const key of report.differingKeys as KeyValues[]) if (await requeueKey(source, policy, key)) repaired++;
  }
  let staleCleared = false;
  if (report.clean) {
    staleCleared = await source.knex.transaction(async (trx) => {
      const state = await readStateForUpdate(trx, source.dialect, policy.name);
      if (!state?.dualWrite || !state.stale) return false;
      await writeState(trx, policy.name, { stale: false, staleReason: null });
      return true;
    });
    if (staleCleared) {
      const stage = source.name === 'source' ? 'dual-write' : 'target-primary';
      events.emit({ type: 'stage', table: policy.name, stage, stale: false, reason: `a clean verify cleared the stale mark of the ${target.name}` });
    }
  }
  return { ...report, repaired, staleCleared };
}

/** Stores and bound policies without the server around them: the CLI's tools (verify, backfill). */
export async function openToolkit(config: Readonly<TandemConfig>): Promise<{
  source: Store;
  target: Store;
  policies: Map<string, Policy>;
  close(): Promise<void>;
}> {
  const source = makeStore('source', config.source.url, { ...config.db });
  const target = makeStore('target', config.target.url, { ...config.db });
  const close = async () => {
    await Promise.all([source.knex.destroy(), target.knex.destroy()]);
  };
  try {
    await Promise.all([ensureInternalTables(source), ensureInternalTables(target)]);
    const policies = await bindAllPolicies(config.policiesDir, source, target);
    const names = [...policies.keys()];
    await ensureStateRows(source, names, 'primary');
    await ensureStateRows(target, names, 'secondary');
    return { source, target, policies, close };
  } catch (error) {
    await close();
    throw error;
  }
}

export async function bindAllPolicies(dir: string, source: Store, target: Store): Promise<Map<string, Policy>> {
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
