/**
 * A minimal TCP proxy for the outage phase of the benchmark (the idea of
 * test/helpers/fault-proxy.ts, two modes only):
 *   pass    forward bytes both ways;
 *   refuse  stop listening (new connects get ECONNREFUSED) and destroy every open
 *           connection; going back to `pass` listens again on the same port.
 * No socket error can escape as an uncaught exception.
 */
import { createServer, connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * @param {{ targetHost: string, targetPort: number }} target
 */
export async function startProxy(target) {
  /** @type {Set<import('node:net').Socket>} */
  const sockets = new Set();
  /** @type {import('node:net').Server | null} */
  let server = null;
  let mode = /** @type {'pass' | 'refuse'} */ ('pass');
  let closed = false;

  const onConnection = (/** @type {import('node:net').Socket} */ client) => {
    client.on('error', () => {});
    if (mode !== 'pass' || closed) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: target.targetHost, port: target.targetPort });
    upstream.on('error', () => {});
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', drop);
    upstream.on('close', drop);
  };

  const listen = (/** @type {number} */ port) =>
    /** @type {Promise<import('node:net').Server>} */ (
      new Promise((resolve, reject) => {
        const s = createServer(onConnection);
        s.once('error', reject);
        s.listen({ host: '127.0.0.1', port }, () => {
          s.off('error', reject);
          s.on('error', () => {});
          resolve(s);
        });
      })
    );

  server = await listen(0);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const closeServer = (/** @type {import('node:net').Server} */ s) => /** @type {Promise<void>} */ (new Promise((resolve) => s.close(() => resolve())));

  return {
    port,
    mode: () => mode,
    /** @param {'pass' | 'refuse'} next */
    async set(next) {
      if (closed || next === mode) return;
      mode = next;
      if (next === 'refuse') {
        for (const s of sockets) s.destroy();
        sockets.clear();
        const s = server;
        server = null;
        if (s) await closeServer(s);
      } else {
        // The port was just released; retry briefly if the kernel has not let go of it yet.
        for (let i = 0; ; i++) {
          try {
            server = await listen(port);
            return;
          } catch (error) {
            if (i >= 100) throw error;
            await delay(20);
          }
        }
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
      if (server) await closeServer(server);
      server = null;
    },
  };
}
