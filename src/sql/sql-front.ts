import { randomInt } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import {
  authenticationOk,
  backendKeyData,
  BodyReader,
  CANCEL_REQUEST,
  errorResponse,
  GSSENC_REQUEST,
  message,
  MessageReader,
  MessageTooLarge,
  parameterStatus,
  PROTOCOL_V3,
  ProtocolViolation,
  readyForQuery,
  SQLSTATE,
  SSL_REQUEST,
  type ErrorFields,
} from './protocol.js';
import { makeVerifier, SCRAM_MECHANISM, ScramExchange, type ScramVerifier } from './scram.js';
import type { SqlBackend } from './sql-backend.js';
import { ProtocolError, SqlSession } from './session.js';

export interface SqlFrontOptions {
  host: string;
  port: number;
  /** SCRAM users; empty means no password check (the config refuses that off loopback). */
  users: ReadonlyArray<{ name: string; password: string }>;
  maxSessions: number;
  maxMessageBytes: number;
  /** ParameterStatus values sent at startup (the primary's own, read once). */
  parameters: ReadonlyMap<string, string>;
  /** TLS: answered to SSLRequest when set; `required` refuses clients that do not ask for it. */
  tls?: { context: tls.SecureContext; required: boolean };
}

/**
 * The PostgreSQL-protocol listener (DESIGN §13): startup, SSLRequest (TLS when a certificate is configured, else 'N'),
 * SCRAM-SHA-256, BackendKeyData and CancelRequest, session and message-size limits; each
 * authenticated connection is an SqlSession.
 */
export class SqlFront {
  private server: net.Server | undefined;
  private readonly verifiers = new Map<string, ScramVerifier>();
  private readonly sessions = new Map<number, { session: SqlSession; secret: number; socket: net.Socket }>();
  private readonly sockets = new Set<net.Socket>();
  private nextId = 1;

  constructor(
    private readonly backend: SqlBackend,
    private readonly options: SqlFrontOptions,
  ) {
    for (const user of options.users) this.verifiers.set(user.name, makeVerifier(user.password));
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
  }

  address(): { host: string; port: number } {
    const addr = this.server?.address() as AddressInfo | null | undefined;
    if (!addr) throw new Error('the SQL front is not listening');
    return { host: addr.address, port: addr.port };
  }

  activeSessions(): number {
    return this.sessions.size;
  }

  /** Stops accepting; open sessions are closed (their transactions roll back). Safe twice. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** One client connection; `secure` once it has been upgraded to TLS (a second SSLRequest is then a protocol violation). */
  private accept(socket: net.Socket, secure = false): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true);
    this.sockets.add(socket);
    const reader = new MessageReader(this.options.maxMessageBytes);
    let session: SqlSession | undefined;
    let id = 0;
    let queue: Promise<void> = Promise.resolve();
    let auth: ((type: string, body: Buffer) => void) | undefined;
    let user = '';
    let upgraded = false;

    const fatal = (fields: ErrorFields) => {
      socket.end(errorResponse({ severity: 'FATAL', ...fields }));
    };
    const finish = () => {
      this.sockets.delete(socket);
      if (session) {
        session.close();
        this.sessions.delete(id);
        this.backend.emit({ type: 'sql.session', phase: 'close', session: id, user, active: this.sessions.size });
      }
    };
    socket.on('close', finish);
    socket.on('error', () => undefined);

    const ready = (params: Map<string, string>) => {
      if (this.sessions.size >= this.options.maxSessions) {
        this.backend.emit({ type: 'sql.refused', reason: 'limit', table: '' });
        this.backend.emit({ type: 'sql.session', phase: 'refused', session: 0, user, reason: 'max sessions', active: this.sessions.size });
        fatal({ code: SQLSTATE.tooManyConnections, message: `sorry, too many clients already (sql.maxSessions is ${this.options.maxSessions})` });
        return;
      }
      id = this.nextId++;
      const secret = randomInt(1, 2 ** 31 - 1);
      session = new SqlSession(id, socket, this.backend);
      this.sessions.set(id, { session, secret, socket });
      this.backend.emit({ type: 'sql.session', phase: 'open', session: id, user, active: this.sessions.size });
      const out = [authenticationOk()];
      for (const [name, value] of this.options.parameters) out.push(parameterStatus(name, value));
      out.push(parameterStatus('application_name', params.get('application_name') ?? ''));
      out.push(parameterStatus('session_authorization', user));
      out.push(backendKeyData(id, secret));
      out.push(readyForQuery('I'));
      socket.write(Buffer.concat(out));
    };

    const onStartup = (body: Buffer) => {
      const r = new BodyReader(body);
      const code = r.int32();
      if (code === SSL_REQUEST && this.options.tls && !secure) {
        // 'S', then the TLS handshake on the same connection; the conversation starts again inside it.
        socket.write('S');
        upgraded = true;
        socket.removeAllListeners('data');
        this.accept(new tls.TLSSocket(socket, { isServer: true, secureContext: this.options.tls.context }), true);
        return;
      }
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        if (secure) throw new ProtocolViolation('SSLRequest on a connection already using TLS');
        // No TLS (or GSSAPI) here: the client may continue in plain text (sslmode=prefer) or give up.
        socket.write('N');
        return;
      }
      if (code === CANCEL_REQUEST) {
        this.cancel(r.int32(), r.int32());
        socket.end();
        return;
      }
      if (code !== PROTOCOL_V3) {
        fatal({ code: SQLSTATE.protocolViolation, message: `unsupported frontend protocol ${code >> 16}.${code & 0xffff}: Tandem speaks 3.0` });
        return;
      }
      if (this.options.tls?.required && !secure) {
        this.backend.emit({ type: 'sql.session', phase: 'refused', session: 0, user: '', reason: 'TLS required', active: this.sessions.size });
        fatal({ code: SQLSTATE.invalidAuthorization, message: 'this server requires TLS (sql.tls.required): connect with sslmode=require' });
        return;
      }
      const params = new Map<string, string>();
      for (;;) {
        const key = r.cstring();
        if (key === '') break;
        params.set(key, r.cstring());
      }
      user = params.get('user') ?? '';
      reader.startup = false;
      if (this.verifiers.size === 0) {
        ready(params);
        return;
      }
      const scram = new ScramExchange(this.verifiers.get(user));
      const refuse = () => {
        this.backend.emit({ type: 'sql.session', phase: 'refused', session: 0, user, reason: 'authentication failed', active: this.sessions.size });
        fatal({ code: SQLSTATE.invalidPassword, message: `password authentication failed for user "${user}"` });
      };
      socket.write(message('R', 10, SCRAM_MECHANISM, Buffer.from([0])));
      let step = 0;
      auth = (type, msgBody) => {
        if (type !== 'p') throw new ProtocolViolation(`expected a password message, got "${type}"`);
        const mr = new BodyReader(msgBody);
        if (step === 0) {
          const mechanism = mr.cstring();
          if (mechanism !== SCRAM_MECHANISM) {
            fatal({ code: SQLSTATE.invalidAuthorization, message: `unsupported SASL mechanism "${mechanism}"` });
            return;
          }
          const length = mr.int32();
          const first = mr.bytes(length).toString('utf8');
          let serverFirst: string;
          try {
            serverFirst = scram.start(first);
          } catch {
            refuse();
            return;
          }
          step = 1;
          socket.write(message('R', 11, Buffer.from(serverFirst, 'utf8')));
          return;
        }
        const final = scram.finish(msgBody.toString('utf8'));
        auth = undefined;
        if (final === undefined) {
          refuse();
          return;
        }
        socket.write(message('R', 12, Buffer.from(final, 'utf8')));
        ready(params);
      };
    };

    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
        for (let m = reader.next(); m; m = reader.next()) {
          if (m.type === '') {
            onStartup(m.body);
            if (upgraded) return;
          }
          else if (auth) auth(m.type, m.body);
          else if (!session) throw new ProtocolViolation('message before authentication completed');
          else if (m.type === 'X') socket.end();
          else if (m.type === 'd' || m.type === 'c' || m.type === 'f') session.copyData(m.raw);
          else {
            const s = session;
            const { type, body, raw } = m;
            queue = queue.then(() => s.handle(type, body, raw)).catch((error: unknown) => this.failed(socket, id, error));
          }
        }
      } catch (error) {
        this.failed(socket, id, error);
      }
    });
  }

  private failed(socket: net.Socket, id: number, error: unknown): void {
    if (socket.destroyed) return;
    if (error instanceof MessageTooLarge) {
      this.backend.emit({ type: 'sql.refused', reason: 'limit', table: '' });
      socket.end(errorResponse({ severity: 'FATAL', code: SQLSTATE.programLimitExceeded, message: `message of ${error.length} bytes exceeds sql.maxMessageBytes (${this.options.maxMessageBytes})` }));
      return;
    }
    if (error instanceof ProtocolViolation || error instanceof ProtocolError) {
      socket.end(errorResponse({ severity: 'FATAL', code: SQLSTATE.protocolViolation, message: `protocol violation: ${error.message}` }));
      return;
    }
    const e = error instanceof Error ? error : new Error(String(error));
    this.backend.emit({ type: 'sql.error', session: id, error: e });
    // The primary connection broke (or refused a connection): the session cannot go on.
    socket.end(errorResponse({ severity: 'FATAL', code: SQLSTATE.connectionFailure, message: `the primary is unavailable: ${e.message}` }));
  }

  /** CancelRequest: cancels what the session runs now (pg_cancel_backend on the server running it). */
  private cancel(id: number, secret: number): void {
    const entry = this.sessions.get(id);
    if (!entry || entry.secret !== secret) return;
    const running = entry.session.running();
    if (!running) return;
    running.pool
      .query('SELECT pg_cancel_backend($1)', [running.pid])
      .catch((error: unknown) => this.backend.emit({ type: 'sql.error', session: id, error: error as Error }));
  }
}
