import cluster from 'node:cluster';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { TandemConfig } from '../config/schema.js';

/** Tandem's pino logger: JSON lines (or `stream`, e.g. pino-pretty on a terminal), the cluster worker's id, secrets redacted. */
export function makeAppLogger(config: Readonly<TandemConfig>, stream?: DestinationStream): Logger {
  const options = {
    level: config.log.level,
    base: { service: 'tandem', ...(cluster.worker ? { worker: cluster.worker.id } : {}) },
    redact: ['authorization', '*.authorization', '*.password'],
  };
  return stream ? pino(options, stream) : pino(options);
}
