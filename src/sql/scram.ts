import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * SCRAM-SHA-256 (RFC 5802 / 7677) as PostgreSQL speaks it, server side. Each user's salted
 * password is derived once at start; the password itself is not kept.
 * @see https://www.postgresql.org/docs/current/sasl-authentication.html
 */
export interface ScramVerifier {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export const SCRAM_MECHANISM = 'SCRAM-SHA-256';
const ITERATIONS = 4096;

export function makeVerifier(password: string): ScramVerifier {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, ITERATIONS, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { salt, iterations: ITERATIONS, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** One exchange: client-first → server-first, client-final → server-final (or refusal). */
export class ScramExchange {
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';

  constructor(private readonly verifier: ScramVerifier | undefined) {}

  /** The server-first message; throws on a malformed client-first message. */
  start(clientFirst: string): string {
    // gs2 header: "n,," (no channel binding) or "y,,"; channel binding "p=" is not offered.
    const match = /^([ny]),[^,]*,(.*)$/.exec(clientFirst);
    if (!match) throw new Error('malformed SCRAM client-first message');
    this.clientFirstBare = match[2] ?? '';
    const clientNonce = attribute(this.clientFirstBare, 'r');
    if (!clientNonce) throw new Error('SCRAM client-first message without a nonce');
    // An unknown user gets a made-up salt and fails at the proof, like PostgreSQL (no user probing).
    const salt = this.verifier?.salt ?? randomBytes(16);
    this.nonce = clientNonce + randomBytes(18).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${salt.toString('base64')},i=${this.verifier?.iterations ?? ITERATIONS}`;
    return this.serverFirst;
  }

  /** The server-final message when the proof is right, else undefined. */
  finish(clientFinal: string): string | undefined {
    const at = clientFinal.lastIndexOf(',p=');
    if (at < 0 || !this.verifier) return undefined;
    const withoutProof = clientFinal.slice(0, at);
    if (attribute(withoutProof, 'r') !== this.nonce) return undefined;
    const proof = Buffer.from(clientFinal.slice(at + 3), 'base64');
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const signature = hmac(this.verifier.storedKey, authMessage);
    if (proof.length !== signature.length) return undefined;
    const clientKey = Buffer.alloc(proof.length);
    for (let i = 0; i < proof.length; i++) clientKey[i] = (proof[i] as number) ^ (signature[i] as number);
    if (!timingSafeEqual(sha256(clientKey), this.verifier.storedKey)) return undefined;
    return `v=${hmac(this.verifier.serverKey, authMessage).toString('base64')}`;
  }
}

function attribute(message: string, name: string): string | undefined {
  for (const part of message.split(',')) if (part.startsWith(`${name}=`)) return part.slice(name.length + 1);
  return undefined;
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
