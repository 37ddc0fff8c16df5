/**
 * A tiny TCP fault-injection proxy for integration tests.
 *
 * It listens on 127.0.0.1 (OS-chosen port) and forwards to a real target
 * (e.g. PostgreSQL / MariaDB). The fault mode can be switched at any time:
 *
 * - `pass`      forward bytes both ways.
 * - `refuse`    stop listening (new connects get ECONNREFUSED), destroy existing
 *               connections; leaving the mode listens again on the SAME port.
 * - `reset`     existing connections are reset (RST) on both sides; new
 *               connections are accepted then reset immediately.
 * - `blackhole` every byte (and every FIN/close) in either direction is dropped;
 *               new connections are accepted but never connected upstream.
 *               Leaving `blackhole` destroys every connection that lived through it.
 * - `delay`     forward both ways, each chunk delayed by `delayMs` (order kept).
 *
 * Only `node:net` is used. No socket error can escape as an uncaught exception.
 */
import { createServer, connect as netConnect } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export type FaultMode = 'pass' | 'refuse' | 'reset' | 'blackhole' | 'delay';

export interface FaultProxy {
  /** Local port it listens on (127.0.0.1), chosen by the OS; stable across `refuse`. */
  readonly port: number;
  /** Always '127.0.0.1'. */
  readonly host: string;
  mode(): FaultMode;
  /** Switch mode. Semantics in the module comment. delayMs only for 'delay' (required there). */
  set(mode: FaultMode, opts?: { delayMs?: number }): Promise<void>;
  /** Number of currently open client connections. */
  connections(): number;
  /** Closes the listener and destroys every socket; safe to call twice. */
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const RELISTEN_RETRY_MS = 25;
const RELISTEN_TIMEOUT_MS = 3000;
const MODES: readonly FaultMode[] = ['pass', 'refuse', 'reset', 'blackhole', 'delay'];

/** One step of a direction's ordered output: a chunk, a FIN, or "the source closed". */
type Item =
  | { kind: 'data'; chunk: Buffer }
  | { kind: 'end' }
  | { kind: 'closed'; hadError: boolean };

/** Ordered, optionally delayed, one-way channel towards `dest`. */
interface Lane {
  queue: { due: number; item: Item }[];
  lastDue: number;
  timer: NodeJS.Timeout | undefined;
  /** Source paused until the destination drains. */
  awaitingDrain: boolean;
}

interface Conn {
  client: Socket;
  /** null when the connection was accepted in blackhole mode (never connected upstream). */
  upstream: Socket | null;
  /** Opened or black-holed while in blackhole mode: destroyed when blackhole is left. */
  tainted: boolean;
  /** Forgotten by the proxy: nothing may be scheduled for it any more. */
  dead: boolean;
  toUpstream: Lane;
  toClient: Lane;
}

function newLane(): Lane {
  return { queue: [], lastDue: 0, timer: undefined, awaitingDrain: false };
}

/** Send a TCP RST if possible, otherwise just destroy. Never throws. */
function hardReset(sock: Socket): void {
  try {
    if (sock.destroyed) return;
    // resetAndDestroy() on a still-connecting socket waits for 'connect'; we want it gone now.
    if (sock.connecting) sock.destroy();
    else sock.resetAndDestroy();
  } catch {
    sock.destroy();
  }
}

function listenOn(port: number, onConnection: (s: Socket) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ allowHalfOpen: true }, onConnection);
    const onError = (err: Error): void => {
      server.close();
      reject(err);
    };
    server.once('error', onError);
    server.listen({ host: HOST, port }, () => {
      server.off('error', onError);
      // Accept-time errors (EMFILE, ...) must never crash the process.
      server.on('error', () => {});
      resolve(server);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    // The listening fd is released synchronously; the callback waits for its sockets,
    // which the caller has already destroyed.
    server.close(() => resolve());
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class FaultProxyImpl implements FaultProxy {
  readonly host = HOST;
  readonly port: number;

  private current: FaultMode = 'pass';
  private delayMs = 0;
  private server: Server | null;
  private readonly conns = new Set<Conn>();
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private closePromise: Promise<void> | undefined;
  private readonly targetHost: string;
  private readonly targetPort: number;

  constructor(server: Server, targetHost: string, targetPort: number) {
    this.targetHost = targetHost;
    this.targetPort = targetPort;
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  readonly onConnection = (client: Socket): void => {
    client.on('error', () => {});
    if (this.closed || this.current === 'refuse' || this.current === 'reset') {
      // 'refuse' can only get here through a race with server.close(); a reset is the closest thing.
      hardReset(client);
      return;
    }
    const conn: Conn = {
      client,
      upstream: null,
      tainted: false,
      dead: false,
      toUpstream: newLane(),
      toClient: newLane(),
    };
    this.conns.add(conn);

    if (this.current === 'blackhole') {
      conn.tainted = true;
    } else {
      const upstream = netConnect({ host: this.targetHost, port: this.targetPort, allowHalfOpen: true });
      upstream.on('error', () => {});
      upstream.setNoDelay(true);
      conn.upstream = upstream;
      this.wire(conn, upstream, client, conn.toClient);
      upstream.on('close', () => this.maybeForget(conn));
    }
    client.setNoDelay(true);
    // Writes to a still-connecting upstream are buffered by net.Socket.
    if (conn.upstream) this.wire(conn, client, conn.upstream, conn.toUpstream);
    else this.wireBlackholeOnly(client);
    client.on('close', () => this.maybeForget(conn));
  };

  /** A connection opened in blackhole mode: read and drop everything until it is destroyed. */
  private wireBlackholeOnly(client: Socket): void {
    client.on('data', () => {});
  }

  /** Forward src -> dest through `lane`, honouring the mode at the moment each event arrives. */
  private wire(conn: Conn, src: Socket, dest: Socket, lane: Lane): void {
    src.on('data', (chunk: Buffer) => {
      if (this.current === 'blackhole' || conn.tainted) return;
      this.push(conn, src, dest, lane, { kind: 'data', chunk });
    });
    src.on('end', () => {
      if (this.current === 'blackhole' || conn.tainted) return;
      this.push(conn, src, dest, lane, { kind: 'end' });
    });
    src.on('close', (hadError: boolean) => {
      if (this.current === 'blackhole' || conn.tainted) return;
      this.push(conn, src, dest, lane, { kind: 'closed', hadError });
    });
  }

  private push(conn: Conn, src: Socket, dest: Socket, lane: Lane, item: Item): void {
    if (conn.dead) return;
    const now = performance.now();
    const delay = this.current === 'delay' ? this.delayMs : 0;
    // Never let a later item overtake an earlier one (e.g. after delay -> pass).
    const due = Math.max(now + delay, lane.lastDue);
    lane.lastDue = due;
    if (lane.queue.length === 0 && due <= now) {
      this.deliver(conn, src, dest, lane, item);
      return;
    }
    lane.queue.push({ due, item });
    this.schedule(conn, src, dest, lane);
  }

  private schedule(conn: Conn, src: Socket, dest: Socket, lane: Lane): void {
    if (lane.timer !== undefined) return;
    const head = lane.queue[0];
    if (!head) return;
    const wait = Math.max(0, Math.ceil(head.due - performance.now()));
    lane.timer = setTimeout(() => {
      lane.timer = undefined;
      const now = performance.now();
      while (lane.queue.length > 0) {
        const next = lane.queue[0];
        if (!next || next.due > now) break;
        lane.queue.shift();
        this.deliver(conn, src, dest, lane, next.item);
      }
      this.schedule(conn, src, dest, lane);
    }, wait);
  }

  private deliver(conn: Conn, src: Socket, dest: Socket, lane: Lane, item: Item): void {
    // Items queued before a switch to blackhole are dropped too.
    if (this.current === 'blackhole' || conn.tainted || conn.dead || dest.destroyed) return;
    switch (item.kind) {
      case 'data':
        if (!dest.writableEnded && !dest.write(item.chunk) && !src.destroyed && !lane.awaitingDrain) {
          // Backpressure: stop reading the source until the destination drains.
          lane.awaitingDrain = true;
          src.pause();
          dest.once('drain', () => {
            lane.awaitingDrain = false;
            src.resume();
          });
        }
        return;
      case 'end':
        if (!dest.writableEnded) dest.end();
        return;
      case 'closed':
        if (item.hadError) {
          hardReset(dest);
        } else if (dest.writableFinished) {
          dest.destroy();
        } else {
          // Flush what is buffered, then go away (the other side cannot answer anyway).
          dest.once('finish', () => dest.destroy());
          if (!dest.writableEnded) dest.end();
        }
        return;
    }
  }

  private maybeForget(conn: Conn): void {
    const upstreamGone = conn.upstream === null || conn.upstream.destroyed;
    if (conn.client.destroyed && upstreamGone) this.forget(conn);
  }

  private forget(conn: Conn): void {
    conn.dead = true;
    for (const lane of [conn.toUpstream, conn.toClient]) {
      if (lane.timer !== undefined) clearTimeout(lane.timer);
      lane.timer = undefined;
      lane.queue.length = 0;
    }
    this.conns.delete(conn);
  }

  private destroyConn(conn: Conn, how: 'destroy' | 'reset'): void {
    this.forget(conn);
    if (how === 'reset') {
      hardReset(conn.client);
      if (conn.upstream) hardReset(conn.upstream);
    } else {
      conn.client.destroy();
      conn.upstream?.destroy();
    }
  }

  mode(): FaultMode {
    return this.current;
  }

  connections(): number {
    let n = 0;
    for (const c of this.conns) if (!c.client.destroyed) n++;
    return n;
  }

  set(mode: FaultMode, opts?: { delayMs?: number }): Promise<void> {
    if (!MODES.includes(mode)) return Promise.reject(new TypeError(`unknown fault mode: ${String(mode)}`));
    let delayMs: number | undefined;
    if (mode === 'delay') {
      delayMs = opts?.delayMs;
      if (delayMs === undefined || !Number.isFinite(delayMs) || delayMs < 0) {
        return Promise.reject(new TypeError(`set('delay') needs opts.delayMs >= 0, got ${String(delayMs)}`));
      }
    }
    const run = this.chain.then(() => this.apply(mode, delayMs));
    this.chain = run.catch(() => {});
    return run;
  }

  private async apply(mode: FaultMode, delayMs: number | undefined): Promise<void> {
    if (this.closed) throw new Error('fault proxy is closed');
    const prev = this.current;
    this.current = mode;
    if (delayMs !== undefined) this.delayMs = delayMs;

    switch (mode) {
      case 'refuse':
        for (const c of [...this.conns]) this.destroyConn(c, 'destroy');
        break;
      case 'reset':
        for (const c of [...this.conns]) this.destroyConn(c, 'reset');
        break;
      case 'blackhole':
        for (const c of this.conns) c.tainted = true;
        break;
      case 'pass':
      case 'delay':
        // Byte streams that went through the blackhole are corrupt: kill them.
        for (const c of [...this.conns]) if (c.tainted) this.destroyConn(c, 'destroy');
        break;
    }

    if (mode === 'refuse' && this.server) {
      const server = this.server;
      this.server = null;
      await closeServer(server);
    } else if (prev === 'refuse' && mode !== 'refuse' && !this.server) {
      try {
        await this.relisten();
      } catch (err) {
        this.current = 'refuse';
        throw err;
      }
    }
  }

  private async relisten(): Promise<void> {
    const deadline = performance.now() + RELISTEN_TIMEOUT_MS;
    for (;;) {
      if (this.closed) return;
      try {
        const server = await listenOn(this.port, this.onConnection);
        if (this.closed) {
          await closeServer(server);
          return;
        }
        this.server = server;
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EADDRINUSE' || performance.now() >= deadline) {
          throw new Error(`fault proxy could not listen again on ${HOST}:${this.port}: ${String(err)}`, {
            cause: err,
          });
        }
        await sleep(RELISTEN_RETRY_MS);
      }
    }
  }

  close(): Promise<void> {
    if (this.closePromise) return this.closePromise;
    this.closed = true;
    const sockets: Socket[] = [];
    for (const c of this.conns) {
      sockets.push(c.client);
      if (c.upstream) sockets.push(c.upstream);
    }
    for (const c of [...this.conns]) this.destroyConn(c, 'destroy');
    const server = this.server;
    this.server = null;
    this.closePromise = (async () => {
      if (server) await closeServer(server);
      // A set() may be mid-relisten; it notices `closed` and releases what it opened.
      await this.chain;
      // 'close' on a socket fires once its handle is really gone.
      await Promise.all(sockets.map((s) => (s.closed ? undefined : new Promise((r) => s.once('close', r)))));
      // A server's 'close' fires before libuv has released its handle: let one loop turn pass.
      await sleep(0);
    })();
    return this.closePromise;
  }
}

export async function startFaultProxy(opts: { targetHost: string; targetPort: number }): Promise<FaultProxy> {
  // The listener exists before the proxy object does; route through a late-bound reference.
  const ref: { proxy?: FaultProxyImpl } = {};
  const server = await listenOn(0, (s) => {
    if (ref.proxy) ref.proxy.onConnection(s);
    else s.destroy();
  });
  ref.proxy = new FaultProxyImpl(server, opts.targetHost, opts.targetPort);
  return ref.proxy;
}
