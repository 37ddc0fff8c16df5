/**
 * What a test file must give back: sockets, servers, child processes and referenced timers
 * (the resource kinds that keep Node's event loop alive, `process.getActiveResourcesInfo()`).
 */
const WATCHED = new Set(['TCPSocketWrap', 'TCPServerWrap', 'PipeWrap', 'ProcessWrap', 'Timeout', 'TTYWrap', 'UDPWrap', 'FSEventWrap', 'StatWatcher']);

export type Census = ReadonlyMap<string, number>;

/** How many resources of each watched kind are alive now. */
export function census(): Census {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) {
    if (WATCHED.has(kind)) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts;
}

/** What is alive now beyond `before` ("2 × TCPSocketWrap"), or nothing. */
export function excess(before: Census): string[] {
  const out: string[] = [];
  for (const [kind, n] of census()) {
    const extra = n - (before.get(kind) ?? 0);
    if (extra > 0) out.push(`${extra} × ${kind}`);
  }
  return out;
}

/**
 * Waits up to `timeoutMs` for everything beyond `before` to close (sockets close and child
 * processes are reaped a moment after their owner's stop() resolved); returns what is left.
 */
export async function leftOver(before: Census, timeoutMs = 5_000): Promise<string[]> {
  let left = excess(before);
  for (let waited = 0; left.length > 0 && waited < timeoutMs; waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100).unref());
    left = excess(before);
  }
  return left;
}
