import { coerceError } from '../errors.js';
import type { EventBus } from '../events.js';
import { makePendingRowsDue } from '../outbox/make-rows-due.js';
import type { OutboxRoute, OutboxWorker } from '../outbox/outbox-worker.js';

/**
 * Follows the secondary's breaker: half-open wakes the worker (requests never take the
 * trial, the worker does at once); closed makes every pending row that waits out its
 * backoff due now and wakes the worker, so the backlog drains immediately.
 */
export function wakeOnRecovery(events: EventBus, route: OutboxRoute, worker: OutboxWorker): () => void {
  return events.on((event) => {
    if (event.type !== 'breaker' || event.store !== route.secondary.name) return;
    if (event.state === 'half-open') worker.poke();
    if (event.state === 'closed') {
      makePendingRowsDue(route.primary)
        .then(() => worker.poke())
        .catch((error: unknown) => events.emit({ type: 'background.error', component: 'outbox.kick', error: coerceError(error) }));
    }
  });
}
