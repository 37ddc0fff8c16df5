/**
 * PostgreSQL frontend/backend protocol v3: message framing and the backend messages the SQL
 * front writes itself. Messages relayed from the primary are passed on as their raw bytes.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

export const PROTOCOL_V3 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** One framed message: its type byte, its body (without type and length) and its raw bytes. */
export interface Message {
  type: string;
  body: Buffer;
  raw: Buffer;
}

export class MessageTooLarge extends Error {
  constructor(readonly length: number) {
    super(`message of ${length} bytes is larger than the limit`);
  }
}

/**
 * Splits a byte stream into messages. `startup` mode reads the untyped startup packet
 * (length, then body) until the session switches to typed messages.
 */
export class MessageReader {
  private buffer: Buffer = Buffer.alloc(0);
  startup = true;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }

  /** The next complete message, or undefined when more bytes are needed. */
  next(): Message | undefined {
    if (this.startup) {
      if (this.buffer.length < 4) return undefined;
      const length = this.buffer.readInt32BE(0);
      if (length < 8 || length > Math.min(this.maxBytes, 10_000) + 8) throw new MessageTooLarge(length);
      if (this.buffer.length < length) return undefined;
      const raw = this.buffer.subarray(0, length);
      this.buffer = this.buffer.subarray(length);
      return { type: '', body: raw.subarray(4), raw };
    }
    if (this.buffer.length < 5) return undefined;
    const length = this.buffer.readInt32BE(1);
    if (length < 4 || length - 4 > this.maxBytes) throw new MessageTooLarge(length);
    if (this.buffer.length < length + 1) return undefined;
    const raw = this.buffer.subarray(0, length + 1);
    this.buffer = this.buffer.subarray(length + 1);
    return { type: String.fromCharCode(raw[0] as number), body: raw.subarray(5), raw };
  }
}

/** Reads fields out of a message body. */
export class BodyReader {
  offset = 0;
  constructor(private readonly body: Buffer) {}

  cstring(): string {
    const end = this.body.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolViolation('unterminated string in message');
    const text = this.body.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return text;
  }
  int16(): number {
    if (this.offset + 2 > this.body.length) throw new ProtocolViolation('message too short');
    const v = this.body.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  int32(): number {
    if (this.offset + 4 > this.body.length) throw new ProtocolViolation('message too short');
    const v = this.body.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.offset + n > this.body.length) throw new ProtocolViolation('message too short');
    const v = this.body.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  byte(): string {
    return String.fromCharCode(this.bytes(1)[0] as number);
  }
}

export class ProtocolViolation extends Error {}

/** Builds one backend message. */
export function message(type: string, ...parts: Array<Buffer | string | number>): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    if (typeof part === 'string') chunks.push(Buffer.from(`${part}\0`, 'utf8'));
    else if (typeof part === 'number') {
      const b = Buffer.alloc(4);
      b.writeInt32BE(part);
      chunks.push(b);
    } else chunks.push(part);
  }
  const body = Buffer.concat(chunks);
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

export function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}

export const readyForQuery = (status: TxStatus): Buffer => message('Z', Buffer.from(status, 'latin1'));
export const parseComplete = (): Buffer => message('1');
export const bindComplete = (): Buffer => message('2');
export const closeComplete = (): Buffer => message('3');
export const noData = (): Buffer => message('n');
export const commandComplete = (tag: string): Buffer => message('C', tag);
export const parameterStatus = (name: string, value: string): Buffer => message('S', name, value);
export const backendKeyData = (pid: number, secret: number): Buffer => message('K', pid, secret);
export const authenticationOk = (): Buffer => message('R', 0);

export type TxStatus = 'I' | 'T' | 'E';

const TYPE_LENGTHS: Record<number, number> = { 16: 1, 20: 8, 21: 2, 23: 4, 1082: 4 };

/** RowDescription of computed columns (no table), text format. */
export function rowDescription(fields: ReadonlyArray<{ name: string; oid: number }>): Buffer {
  const parts: Buffer[] = [int16(fields.length)];
  for (const f of fields) {
    const b = Buffer.alloc(18);
    b.writeInt32BE(0, 0);
    b.writeInt16BE(0, 4);
    b.writeInt32BE(f.oid, 6);
    b.writeInt16BE(TYPE_LENGTHS[f.oid] ?? -1, 10);
    b.writeInt32BE(-1, 12);
    b.writeInt16BE(0, 16);
    parts.push(Buffer.from(`${f.name}\0`, 'utf8'), b);
  }
  return message('T', Buffer.concat(parts));
}

/** DataRow of text values (null: SQL NULL). */
export function dataRow(values: ReadonlyArray<string | null>): Buffer {
  const parts: Buffer[] = [int16(values.length)];
  for (const v of values) {
    if (v === null) {
      const b = Buffer.alloc(4);
      b.writeInt32BE(-1);
      parts.push(b);
    } else {
      const bytes = Buffer.from(v, 'utf8');
      const b = Buffer.alloc(4);
      b.writeInt32BE(bytes.length);
      parts.push(b, bytes);
    }
  }
  return message('D', Buffer.concat(parts));
}

/** The fields of an ErrorResponse / NoticeResponse (single-letter codes, as on the wire). */
export interface ErrorFields {
  severity?: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: number;
}

export function errorResponse(e: ErrorFields): Buffer {
  const severity = e.severity ?? 'ERROR';
  const parts: Buffer[] = [field('S', severity), field('V', severity), field('C', e.code), field('M', e.message)];
  if (e.detail) parts.push(field('D', e.detail));
  if (e.hint) parts.push(field('H', e.hint));
  if (e.position !== undefined) parts.push(field('P', String(e.position)));
  parts.push(Buffer.from([0]));
  return message('E', Buffer.concat(parts));
}

function field(code: string, value: string): Buffer {
  return Buffer.from(`${code}${value}\0`, 'utf8');
}

/** Reads the code (C), message (M) and position (P) of a raw ErrorResponse body. */
export function readErrorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const code = String.fromCharCode(body[offset] as number);
    const end = body.indexOf(0, offset + 1);
    if (end < 0) break;
    out[code] = body.toString('utf8', offset + 1, end);
    offset = end + 1;
  }
  return out;
}

/** The column count and text values of a raw DataRow body (text format). */
export function readDataRow(body: Buffer): Array<Buffer | null> {
  const r = new BodyReader(body);
  const n = r.int16();
  const out: Array<Buffer | null> = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    out.push(len < 0 ? null : r.bytes(len));
  }
  return out;
}

/** SQLSTATEs the SQL front raises itself (README "SQL front"). */
export const SQLSTATE = {
  /** A statement that would escape replication (DDL, TRUNCATE, COPY FROM, an uncapturable write). */
  refused: '0A000',
  syntax: '42601',
  protocolViolation: '08P01',
  tooManyConnections: '53300',
  programLimitExceeded: '54000',
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
  queryCanceled: '57014',
  connectionFailure: '08006',
  cannotConnectNow: '57P03',
} as const;
