import { describe, expect, it } from 'vitest';
import { printable } from '../../src/cli/printable.js';
import { isOutboxId } from '../../src/outbox/outbox-id.js';

describe('printable: database text made safe for a terminal', () => {
  it('escapes ESC sequences, carriage returns, BEL, C1 controls and lone surrogates; keeps other text', () => {
    expect(printable('a\u001b[31mred\u001b[0m\r\u0007\u009b')).toBe('a\\x1b[31mred\\x1b[0m\\r\\x07\\x9b');
    expect(printable('x\ud800y')).toBe('x\\u{d800}y');
    expect(printable('héllo 😀, tab\tend')).toBe('héllo 😀, tab\\tend');
  });
});

describe('isOutboxId', () => {
  it('accepts 1 to 2^63-1 as digits (string or safe number), nothing else', () => {
    expect(isOutboxId('1')).toBe(true);
    expect(isOutboxId(42)).toBe(true);
    expect(isOutboxId('9223372036854775807')).toBe(true);
    expect(isOutboxId('9223372036854775808')).toBe(false);
    expect(isOutboxId('99999999999999999999')).toBe(false);
    expect(isOutboxId('0')).toBe(false);
    expect(isOutboxId('-1')).toBe(false);
    expect(isOutboxId('1e3')).toBe(false);
    expect(isOutboxId(1.5)).toBe(false);
    expect(isOutboxId(null)).toBe(false);
  });
});
