import type { Server } from 'node:http';
import type { Express } from 'express';
import type { TandemConfig } from '../config/schema.js';

/** Opens the HTTP port with the configured request and header timeouts; resolves once listening. */
export async function listenHttp(express: Express, config: Readonly<TandemConfig>): Promise<Server> {
  const server = express.listen(config.http.port, config.http.host);
  server.requestTimeout = config.http.requestTimeoutMs;
  server.headersTimeout = Math.min(config.http.requestTimeoutMs, 60_000);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return server;
}

/**
 * Stops accepting, lets requests in flight finish, closes idle keep-alive connections at
 * once and cuts the rest after `drainTimeoutMs`.
 */
export async function closeHttp(server: Server, drainTimeoutMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const timer = setTimeout(() => server.closeAllConnections(), drainTimeoutMs);
  timer.unref();
  await closed;
  clearTimeout(timer);
}
