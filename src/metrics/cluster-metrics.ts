import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

const REQUEST = 'tandem:metrics:request';
const REPLY = 'tandem:metrics:reply';
const TIMEOUT_MS = 5_000;

interface Reply {
  type: typeof REPLY;
  id: number;
  body?: string;
  error?: string;
}

export interface MetricsText {
  contentType: string;
  body: string;
}

/**
 * The primary of a cluster (TANDEM_WORKERS > 1): answers a worker's /metrics with every
 * worker's metrics, aggregated by prom-client (which asks each worker over IPC).
 */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: { type?: unknown; id?: unknown }) => {
    if (message?.type !== REQUEST || typeof message.id !== 'number') return;
    const id = message.id;
    aggregator.clusterMetrics().then(
      (body) => worker.send({ type: REPLY, id, body } satisfies Reply),
      (error: unknown) => worker.send({ type: REPLY, id, error: (error as Error).message } satisfies Reply),
    );
  });
}

/**
 * A cluster worker: its registry answers the primary's aggregation requests, and /metrics
 * asks the primary for the whole cluster's. Undefined outside a cluster.
 */
export function clusterMetricsClient(registry: Registry): (() => Promise<MetricsText>) | undefined {
  if (!cluster.isWorker || !process.send) return undefined;
  // Constructing one installs prom-client's listener that answers the primary's requests.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  const waiting = new Map<number, { resolve: (text: MetricsText) => void; reject: (error: Error) => void }>();
  let nextId = 0;
  process.on('message', (message: Partial<Reply>) => {
    if (message?.type !== REPLY || typeof message.id !== 'number') return;
    const pending = waiting.get(message.id);
    if (!pending) return;
    waiting.delete(message.id);
    if (message.body !== undefined) pending.resolve({ contentType: registry.contentType, body: message.body });
    else pending.reject(new Error(`cluster metrics: ${message.error ?? 'no answer'}`));
  });
  return () =>
    new Promise<MetricsText>((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`cluster metrics: the primary did not answer within ${TIMEOUT_MS} ms`));
      }, TIMEOUT_MS);
      timer.unref();
      waiting.set(id, {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      process.send?.({ type: REQUEST, id });
    });
}
