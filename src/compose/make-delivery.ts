import type { TandemConfig } from '../config/schema.js';
import { makeStoreBreaker, type StoreBreaker } from '../db/breaker.js';
import type { Store } from '../db/store.js';
import type { EventSink } from '../events.js';
import { OutboxWorker, type OutboxRoute } from '../outbox/outbox-worker.js';
import type { Policy } from '../policy/policy.js';
import { Applier } from '../write/applier.js';

/** The secondary's breaker, the applier and the outbox worker of one route. */
export interface Delivery {
  route: OutboxRoute;
  breaker: StoreBreaker;
  applier: Applier;
  worker: OutboxWorker;
}

export interface DeliveryOptions {
  /** Told which outbox ids the secondary now has (read-your-writes bookkeeping). */
  onApplied?: (ids: readonly string[]) => void;
  /** Worker poll interval override (the CLI's local drain polls faster). */
  pollIntervalMs?: number;
  /** False while the route has nothing to carry (the reverse route before any cutover). */
  isActive?: () => boolean;
}

/**
 * Builds delivery from `primary`'s outbox to `secondary`, the same way for the server and
 * for the CLI's local drain (verify --repair). The worker is not started here.
 */
export function makeDelivery(
  config: Readonly<TandemConfig>,
  primary: Store,
  secondary: Store,
  policies: ReadonlyMap<string, Policy>,
  events: EventSink,
  options: DeliveryOptions = {},
): Delivery {
  // opossum writes its defaults into the options object: a fresh one per breaker.
  const breaker = makeStoreBreaker(secondary.name, { ...config.apply }, events);
  const route: OutboxRoute = { primary, secondary, breaker };
  const applier = new Applier(
    policies,
    events,
    {
      timeoutMs: config.apply.timeoutMs,
      batchTimeoutMs: config.apply.batchTimeoutMs,
      maxAttempts: config.outbox.maxAttempts,
      backoffBaseMs: config.outbox.backoffBaseMs,
      backoffMaxMs: config.outbox.backoffMaxMs,
    },
    options.onApplied,
  );
  const worker = new OutboxWorker(route, applier, events, {
    probeTimeoutMs: config.apply.timeoutMs,
    pollIntervalMs: options.pollIntervalMs ?? config.outbox.pollIntervalMs,
    batchSize: config.outbox.batchSize,
    concurrency: config.outbox.concurrency,
    leaseMs: config.outbox.leaseMs,
    ...(options.isActive ? { isActive: options.isActive } : {}),
  });
  return { route, breaker, applier, worker };
}
