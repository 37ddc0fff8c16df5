import type { Socket } from 'node:net';
import type pg from 'pg';
import type { TxStatus } from './protocol.js';

/**
 * One conversation with the primary on a pooled node-postgres connection, in raw protocol
 * messages: what the SQL front writes goes to the socket as bytes, and every message the
 * primary answers is handed over as its raw bytes (so row descriptions, binary values,
 * errors with their position are relayed exactly), until ReadyForQuery.
 *
 * node-postgres keeps parsing the same bytes for its own bookkeeping: the exchange poses as
 * its active query (a "submittable", as pg-cursor does), so the client stays consistent and
 * returns to its pool in a clean state.
 */
export class Exchange {
  private socket: Socket | undefined;
  private pendingWrites: Buffer[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  private done = false;
  private readonly finished: Promise<TxStatus>;
  private resolve!: (status: TxStatus) => void;
  private reject!: (error: Error) => void;
  private readonly tap = (chunk: Buffer) => this.onData(chunk);

  constructor(
    private readonly client: pg.PoolClient,
    /** Each message of the primary, raw; called synchronously in order. */
    private readonly onMessage: (type: string, body: Buffer, raw: Buffer) => void,
  ) {
    this.finished = new Promise<TxStatus>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    const onError = (error: Error) => this.fail(error);
    client.once('error', onError);
    void this.finished.catch(() => undefined).finally(() => client.removeListener('error', onError));
    client.query(this as unknown as pg.Submittable);
  }

  /** Resolves with the ReadyForQuery status that ends the exchange. */
  result(): Promise<TxStatus> {
    return this.finished;
  }

  /** Sends protocol bytes to the primary (queued until node-postgres hands over the connection). */
  write(bytes: Buffer): void {
    if (this.done) return;
    if (!this.socket) {
      this.pendingWrites.push(bytes);
      return;
    }
    this.socket.write(bytes);
  }

  // --- node-postgres Submittable ---

  submit(connection: { stream: Socket }): void {
    this.socket = connection.stream;
    this.socket.on('data', this.tap);
    if (this.pendingWrites.length > 0) this.socket.write(Buffer.concat(this.pendingWrites));
    this.pendingWrites = [];
  }
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
  /**
   * node-postgres reports an ErrorResponse here too (already relayed from the raw bytes, so
   * ignored), and connection failures (no `severity`), which end the exchange.
   */
  handleError(error: Error & { severity?: string }): void {
    if (!this.socket || error.severity === undefined) this.fail(error);
  }
  handleReadyForQuery(): void {}

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    while (!this.done && this.buffer.length >= 5) {
      const length = this.buffer.readInt32BE(1);
      if (this.buffer.length < length + 1) return;
      const raw = this.buffer.subarray(0, length + 1);
      this.buffer = this.buffer.subarray(length + 1);
      const type = String.fromCharCode(raw[0] as number);
      const body = raw.subarray(5);
      try {
        this.onMessage(type, body, raw);
      } catch (error) {
        this.fail(error as Error);
        return;
      }
      if (type === 'Z') {
        this.finish();
        this.resolve(String.fromCharCode(body[0] as number) as TxStatus);
      }
    }
  }

  private finish(): void {
    this.done = true;
    this.socket?.removeListener('data', this.tap);
  }

  private fail(error: Error): void {
    if (this.done) return;
    this.finish();
    this.reject(error);
  }

  /** The connection broke or the exchange was abandoned: reject whoever waits. */
  abort(error: Error): void {
    this.fail(error);
  }
}

/** The primary's backend process id of a pooled client (for CancelRequest). */
export function backendPid(client: pg.PoolClient): number | undefined {
  return (client as unknown as { processID?: number }).processID;
}
