import { describe, it, expect, afterEach } from 'vitest';
import { createServer, connect as netConnect } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import type { FaultProxy } from '../helpers/fault-proxy.js';

// ---------------------------------------------------------------------------
// Fixtures: an echo server, the proxy in front of it, and tracked client sockets.
// ---------------------------------------------------------------------------

let echo: Server | undefined;
const echoSockets = new Set<Socket>();
let proxy: FaultProxy | undefined;
const clients = new Set<Socket>();

async function startEcho(): Promise<number> {
  echo = createServer((s) => {
    echoSockets.add(s);
    s.on('error', () => {});
    s.on('close', () => echoSockets.delete(s));
    s.pipe(s);
  });
  const server = echo;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  return (server.address() as AddressInfo).port;
}

async function setup(): Promise<FaultProxy> {
  const port = await startEcho();
  proxy = await startFaultProxy({ targetHost: '127.0.0.1', targetPort: port });
  return proxy;
}

/** Connect; resolves on 'connect', rejects with the socket error. */
function connect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: '127.0.0.1', port });
    clients.add(s);
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
  });
}

/** Error code the connect attempt fails with (throws if it connects). */
function connectError(port: number): Promise<string | undefined> {
  return connect(port).then(
    () => {
      throw new Error('connect unexpectedly succeeded');
    },
    (err: NodeJS.ErrnoException) => err.code,
  );
}

/** Write `msg` and wait until the same number of bytes came back (or fail after timeoutMs). */
function roundTrip(s: Socket, msg: string, timeoutMs = 1000): Promise<string> {
  const reply = readN(s, msg.length, timeoutMs);
  s.write(msg);
  return reply;
}

/** Collect `n` bytes (ASCII) from `s`, failing on close or after timeoutMs. */
function readN(s: Socket, n: number, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const done = (fn: () => void): void => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      fn();
    };
    const onData = (b: Buffer): void => {
      got += b.toString('utf8');
      if (got.length >= n) done(() => resolve(got));
    };
    const onClose = (): void => done(() => reject(new Error(`socket closed, got ${JSON.stringify(got)}`)));
    const timer = setTimeout(() => done(() => reject(new Error(`timeout, got ${JSON.stringify(got)}`))), timeoutMs);
    s.on('data', onData);
    s.on('close', onClose);
  });
}

/** Resolves true when nothing at all arrives within `ms` and the socket stays open. */
function staysSilent(s: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    let silent = true;
    const onData = (): void => {
      silent = false;
    };
    const onClose = (): void => {
      silent = false;
    };
    s.on('data', onData);
    s.on('close', onClose);
    setTimeout(() => {
      s.off('data', onData);
      s.off('close', onClose);
      resolve(silent && !s.destroyed);
    }, ms);
  });
}

/** Resolves with the first error code (if any) once the socket has closed. */
function closedWith(s: Socket, timeoutMs = 1000): Promise<{ code: string | undefined }> {
  return new Promise((resolve, reject) => {
    let code: string | undefined;
    if (s.destroyed) {
      resolve({ code });
      return;
    }
    const timer = setTimeout(() => reject(new Error('socket did not close')), timeoutMs);
    s.on('error', (err: NodeJS.ErrnoException) => {
      code ??= err.code;
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ code });
    });
  });
}

afterEach(async () => {
  for (const s of clients) s.destroy();
  clients.clear();
  if (proxy) await proxy.close();
  proxy = undefined;
  for (const s of echoSockets) s.destroy();
  if (echo) {
    const e = echo;
    await new Promise<void>((r) => e.close(() => r()));
  }
  echo = undefined;
});

// ---------------------------------------------------------------------------

describe('fault proxy', () => {
  it('pass: forwards both ways and counts connections', async () => {
    const p = await setup();
    expect(p.host).toBe('127.0.0.1');
    expect(p.port).toBeGreaterThan(0);
    expect(p.mode()).toBe('pass');

    const a = await connect(p.port);
    const b = await connect(p.port);
    expect(await roundTrip(a, 'hello')).toBe('hello');
    expect(await roundTrip(b, 'world')).toBe('world');
    expect(p.connections()).toBe(2);

    // A larger payload survives intact.
    const big = 'x'.repeat(256 * 1024);
    expect(await roundTrip(a, big)).toBe(big);

    a.destroy();
    await closedWith(a);
    await expect.poll(() => p.connections()).toBe(1);
  });

  it('refuse: ECONNREFUSED while refusing, existing connections die, same port afterwards', async () => {
    const p = await setup();
    const port = p.port;
    const a = await connect(port);
    expect(await roundTrip(a, 'ping')).toBe('ping');

    const aClosed = closedWith(a);
    await p.set('refuse');
    expect(p.mode()).toBe('refuse');
    await aClosed;
    expect(p.connections()).toBe(0);
    expect(await connectError(port)).toBe('ECONNREFUSED');

    await p.set('pass');
    expect(p.port).toBe(port);
    const b = await connect(port);
    expect(await roundTrip(b, 'back')).toBe('back');
  });

  it('reset: open connections get ECONNRESET, new ones are reset, pass recovers', async () => {
    const p = await setup();
    const a = await connect(p.port);
    expect(await roundTrip(a, 'ping')).toBe('ping');

    const aClosed = closedWith(a);
    await p.set('reset');
    expect((await aClosed).code).toBe('ECONNRESET');
    expect(p.connections()).toBe(0);

    // Accepted by the kernel, then reset by the proxy. Depending on timing the client
    // sees the RST right after 'connect' or instead of it.
    const s = netConnect({ host: '127.0.0.1', port: p.port });
    clients.add(s);
    expect((await closedWith(s)).code).toBe('ECONNRESET');

    await p.set('pass');
    const b = await connect(p.port);
    expect(await roundTrip(b, 'again')).toBe('again');
  });

  it('blackhole: silence both ways; back to pass kills black-holed connections', async () => {
    const p = await setup();
    const old = await connect(p.port);
    expect(await roundTrip(old, 'before')).toBe('before');

    await p.set('blackhole');
    const fresh = await connect(p.port); // accepted, never connected upstream
    old.write('lost-1');
    fresh.write('lost-2');
    const [oldSilent, freshSilent] = await Promise.all([staysSilent(old, 300), staysSilent(fresh, 300)]);
    expect(oldSilent).toBe(true);
    expect(freshSilent).toBe(true);
    expect(p.connections()).toBe(2);

    const oldClosed = closedWith(old);
    const freshClosed = closedWith(fresh);
    await p.set('pass');
    await Promise.all([oldClosed, freshClosed]);
    expect(p.connections()).toBe(0);

    const next = await connect(p.port);
    expect(await roundTrip(next, 'after')).toBe('after');
  });

  it('delay: each direction is delayed by delayMs, order is kept, pass is fast again', async () => {
    const p = await setup();
    const a = await connect(p.port);
    expect(await roundTrip(a, 'warm')).toBe('warm');

    const delayMs = 150;
    await p.set('delay', { delayMs });
    expect(p.mode()).toBe('delay');

    let t0 = performance.now();
    expect(await roundTrip(a, 'slow')).toBe('slow');
    const slow = performance.now() - t0;
    // Delayed on the way up and on the way down.
    expect(slow).toBeGreaterThanOrEqual(2 * delayMs - 1);

    // Several chunks written back to back come back complete and in order.
    const parts = ['a1', 'b2', 'c3', 'd4', 'e5'];
    const collected = readN(a, 10);
    for (const part of parts) a.write(part);
    expect(await collected).toBe('a1b2c3d4e5');

    await p.set('pass');
    t0 = performance.now();
    expect(await roundTrip(a, 'fast')).toBe('fast');
    expect(performance.now() - t0).toBeLessThan(delayMs);
  });

  it('delay -> pass: bytes sent after the switch never overtake delayed ones', async () => {
    const p = await setup();
    const a = await connect(p.port);
    await p.set('delay', { delayMs: 100 });
    const all = readN(a, 'first-second'.length);
    a.write('first-');
    await new Promise((r) => setTimeout(r, 20));
    await p.set('pass');
    a.write('second');
    expect(await all).toBe('first-second');
  });

  it('rejects set(delay) without delayMs and set() after close', async () => {
    const p = await setup();
    await expect(p.set('delay')).rejects.toThrow(/delayMs/);
    expect(p.mode()).toBe('pass');
    await p.close();
    await expect(p.set('pass')).rejects.toThrow(/closed/);
  });

  it('close: destroys sockets, stops listening, is idempotent (also from refuse)', async () => {
    const p = await setup();
    const a = await connect(p.port);
    expect(await roundTrip(a, 'x')).toBe('x');
    const aClosed = closedWith(a);
    await Promise.all([p.close(), p.close()]);
    await p.close();
    await aClosed;
    expect(p.connections()).toBe(0);
    expect(await connectError(p.port)).toBe('ECONNREFUSED');

    const q = await startFaultProxy({ targetHost: '127.0.0.1', targetPort: p.port });
    await q.set('refuse');
    await q.close();
    await q.close();
  });

  it('an unreachable target closes the client instead of crashing', async () => {
    // Grab a free port, then free it: nothing listens there.
    const tmp = createServer();
    await new Promise<void>((r) => tmp.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    const deadPort = (tmp.address() as AddressInfo).port;
    await new Promise<void>((r) => tmp.close(() => r()));

    proxy = await startFaultProxy({ targetHost: '127.0.0.1', targetPort: deadPort });
    const a = await connect(proxy.port);
    a.write('anyone?');
    await closedWith(a);
    await expect.poll(() => proxy?.connections()).toBe(0);
  });
});
