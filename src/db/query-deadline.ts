/** Thrown when a statement got no answer within its deadline; its connection was cut. */
export class QueryDeadlineError extends Error {
  readonly code = 'ETANDEMDEADLINE';
  constructor(ms: number) {
    super(`the database gave no answer within ${ms} ms; connection destroyed`);
    this.name = 'DeadlineError';
  }
}

type Callback = (error: unknown, ...results: unknown[]) => void;

/**
 * Gives every statement sent on one driver connection (pg, mysql2) a client-side deadline.
 * The server's statement timeout cannot fire when the network stops answering (a black
 * hole): the query would wait for TCP to give up, minutes later, pinning the connection and
 * whatever waits on it (a request, the outbox worker). Past `ms` the socket is destroyed,
 * the query fails with a `DeadlineError` (classified transient), and the pool replaces the
 * connection (knex sees the destroyed socket when it validates it). Network engines only
 * (session-setup.ts skips in-process ones). `ms` sits above the server's statement timeout, so a slow statement still
 * ends with the server's own error code.
 */
export function addQueryDeadline(connection: unknown, ms: number, destroy: (connection: unknown) => void): void {
  const conn = connection as { query: (...args: unknown[]) => unknown };
  const original = conn.query.bind(conn);
  conn.query = (...args: unknown[]) => {
    const at = args.findIndex((a) => typeof a === 'function');
    if (at < 0) return withPromiseDeadline(connection, ms, original(...args), destroy);
    const callback = args[at] as Callback;
    let settled = false;
    // Answered here, not by the driver: a destroyed mysql2 connection never calls back.
    const timer = setTimeout(() => {
      settled = true;
      destroy(connection);
      callback(new QueryDeadlineError(ms));
    }, ms);
    timer.unref();
    args[at] = (error: unknown, ...results: unknown[]) => {
      clearTimeout(timer);
      if (settled) return;
      settled = true;
      callback(error, ...results);
    };
    return original(...args);
  };
}

/** pg's promise-style query (the folded write path): the same deadline, as a race. */
function withPromiseDeadline(connection: unknown, ms: number, result: unknown, destroy: (connection: unknown) => void): unknown {
  if (!result || typeof (result as PromiseLike<unknown>).then !== 'function') return result; // a stream
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      destroy(connection);
      reject(new QueryDeadlineError(ms));
    }, ms);
    timer.unref();
  });
  const running = Promise.resolve(result as PromiseLike<unknown>);
  running.catch(() => undefined); // after a deadline its rejection is expected and unobserved
  return Promise.race([running, deadline]).finally(() => clearTimeout(timer));
}
