import type { TandemConfig } from '../config/schema.js';
import { PrimaryDirectory } from '../cutover/primary-directory.js';
import { PrimarySwitch } from '../cutover/primary-switch.js';
import { StageReconciler } from '../cutover/stage-reconciler.js';
import type { StoreBreaker } from '../db/breaker.js';
import type { EventBus, TandemEvent } from '../events.js';
import type { FlagSource } from '../flags/flag-source.js';
import { Housekeeper } from '../outbox/housekeeper.js';
import { makePendingRowsDue } from '../outbox/make-rows-due.js';
import { PendingKeys } from '../outbox/pending-keys.js';
import { prepareFolds, WriteService } from '../write/write-service.js';
import { makeDelivery, type Delivery } from './make-delivery.js';
import type { Core } from './open-core.js';
import { wakeOnRecovery } from './wake-on-recovery.js';

/** What the reconciler asks the safety brake (built later, with the reads). */
interface BrakeView {
  holdsSource(table: string): boolean;
  braked(table: string): boolean;
}

/** The write side: both delivery routes, each table's primary, the write service, the switch and the reconciler. */
export interface WriteSide {
  /** Keys queued and not yet applied (read-your-writes). */
  pending: PendingKeys;
  /** From the source's outbox into the target (the source is every table's primary before cutover). */
  delivery: Delivery;
  /** From the target's outbox into the source while the target is primary. */
  reverse: Delivery;
  directory: PrimaryDirectory;
  writes: WriteService;
  reconciler: StageReconciler;
  /** Set by `startHousekeeping()`. */
  housekeeper?: Housekeeper;
  reverseHousekeeper?: Housekeeper;
  /** Starts both workers, then reconciles once and runs the reconcile loop. */
  start(): Promise<void>;
  /** Wakes the workers on recovery and runs both housekeepers (after the reads, whose brake counts their events). */
  startHousekeeping(): Promise<void>;
  /** Gives the reconciler the reads' safety brake (built after the first reconcile); a brake event reconciles at once. */
  useBrake(brake: BrakeView): void;
  /** Wakes both workers now. */
  poke(): void;
  /** The reconciler, both workers, the inline applies still running, the housekeepers: in that order. */
  stop(): Promise<void>;
}

export interface WriteSideDeps {
  config: Readonly<TandemConfig>;
  events: EventBus;
  core: Core;
  flags: FlagSource;
  /** This process's id as the owner of a primary switch. */
  replicaId: string;
  /** Each secondary's breaker is registered here as soon as it exists, so stop() shuts it down even when start fails. */
  breakers: Map<string, StoreBreaker>;
}

/**
 * Builds the write side (DESIGN §3, §5) without starting anything. Each table's primary comes
 * from its state rows; the reverse route carries the target's outbox into the source after a
 * cutover (the inverse mapping).
 */
export async function makeWriteSide(d: WriteSideDeps): Promise<WriteSide> {
  const { config, events, flags } = d;
  const { source, target, policies } = d.core;
  const tables = [...policies.keys()];
  const pending = new PendingKeys(config.read.maxPendingKeys);
  const delivery = makeDelivery(config, source, target, policies, events, { onApplied: (ids) => pending.complete(ids) });
  const { route } = delivery;
  d.breakers.set(target.name, delivery.breaker);
  events.emit({ type: 'breaker', store: target.name, state: 'closed' });
  const directory = new PrimaryDirectory(source, target);
  for (const table of tables) await directory.refresh(table);
  // The target's outbox holds rows only once some table's primary is (or was) the target:
  // before that the reverse direction sends nothing to the target at all.
  const reverseActive = () =>
    tables.some((t) => {
      const view = directory.get(t);
      return view !== undefined && (view.primary !== 'source' || view.switching !== null || view.epoch > 1);
    });
  const reverse = makeDelivery(config, target, source, policies, events, { onApplied: (ids) => pending.complete(ids), isActive: reverseActive });
  d.breakers.set(source.name, reverse.breaker);
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

  let lastHurry = 0;
  const switcher = new PrimarySwitch({
    source,
    target,
    events,
    replicaId: d.replicaId,
    options: { leaseMs: config.cutover.leaseMs, drainTimeoutMs: config.cutover.drainTimeoutMs, pauseAtStep: config.cutover.pauseAtStep, pauseMs: config.cutover.pauseMs },
    hurryDrain: async (from) => {
      const r = from === 'source' ? delivery : reverse;
      // Inline applies of both routes go through the request path's applier.
      await Promise.all([delivery.applier.flush(), reverse.applier.flush()]);
      // Rows waiting out a backoff or their inline grace are made due, at most twice a second.
      if (Date.now() - lastHurry > 500) {
        lastHurry = Date.now();
        await makePendingRowsDue(r.route.primary);
      }
      r.worker.poke();
    },
  });
  // The brake is built with the reads, after the first reconcile: asked through this holder.
  const brake: { current?: BrakeView } = {};
  const reconciler = new StageReconciler(source, target, [...policies.values()], flags, events, config.stages.reconcileIntervalMs, {
    directory,
    switcher,
    holdSource: (table) => brake.current?.holdsSource(table) ?? false,
    refuseForward: (table) => (brake.current?.braked(table) ? 'the safety brake is active: release it before switching to the target' : undefined),
  });

  const side: WriteSide = {
    pending,
    delivery,
    reverse,
    directory,
    writes,
    reconciler,
    async start() {
      // Both workers run before the first reconcile: a switch resumed at start drains through them.
      delivery.worker.start();
      reverse.worker.start();
      await reconciler.reconcileAll();
      reconciler.start();
    },
    async startHousekeeping() {
      wakeOnRecovery(events, route, delivery.worker);
      wakeOnRecovery(events, reverse.route, reverse.worker);
      side.housekeeper = new Housekeeper(route.primary, tables, events, config.outbox.housekeepingIntervalMs, pending);
      await side.housekeeper.runOnce();
      side.housekeeper.start();
      // The target's outbox (reverse replication): its figures are the reverse lag.
      const reverseEvents = { emit: (event: TandemEvent) => events.emit(event.type === 'outbox.stats' ? { type: 'reverse.stats', tables: event.tables } : event) };
      side.reverseHousekeeper = new Housekeeper(target, tables, reverseEvents, config.outbox.housekeepingIntervalMs, undefined, reverseActive);
      await side.reverseHousekeeper.runOnce();
      side.reverseHousekeeper.start();
    },
    useBrake(b) {
      brake.current = b;
      // An automatic rollback starts now, not at the next reconcile tick.
      events.on((event) => {
        if (event.type === 'brake' && (!event.active || b.holdsSource(event.table))) void reconciler.reconcileSoon();
      });
    },
    poke() {
      delivery.worker.poke();
      reverse.worker.poke();
    },
    async stop() {
      await reconciler.stop();
      await delivery.worker.stop();
      await reverse.worker.stop();
      await delivery.applier.flush();
      await reverse.applier.flush();
      await side.housekeeper?.stop();
      await side.reverseHousekeeper?.stop();
    },
  };
  return side;
}
