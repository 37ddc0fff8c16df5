import { describe, it, expect } from 'vitest';
import { coalesce } from '../../src/write/apply-entries.js';
import { backoffMs } from '../../src/write/applier.js';
import { decodeImage, encodeImage, throughImage, toApiRow } from '../../src/outbox/image-codec.js';
import { compareVersion, entryFromRecord, type OutboxEntry } from '../../src/outbox/outbox-entry.js';

describe('backoffMs', () => {
  const base = 100;
  const max = 10_000;
  // Ceiling per attempt: base · 2^(attempt-1), capped at max.
  const ceilings = [100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000, 10_000];

  it.each(ceilings.map((ceiling, i) => [i + 1, ceiling] as const))(
    'attempt %i: between half of %i and all of it',
    (attempt, ceiling) => {
      expect(backoffMs(attempt, base, max, () => 0)).toBe(ceiling / 2);
      expect(backoffMs(attempt, base, max, () => 1)).toBe(ceiling);
      expect(backoffMs(attempt, base, max, () => 0.5)).toBe(Math.round(ceiling * 0.75));
    },
  );

  it('never exceeds the maximum, even for huge attempt counts', () => {
    for (const attempts of [11, 20, 64, 1_100, 5_000]) {
      expect(backoffMs(attempts, base, max, () => 1)).toBe(max);
      expect(backoffMs(attempts, base, max, () => 0)).toBe(max / 2);
    }
  });

  it('treats attempt 0 like attempt 1', () => {
    expect(backoffMs(0, base, max, () => 1)).toBe(base);
  });

  it('stays inside the bounds with the default random source', () => {
    for (let i = 0; i < 200; i++) {
      const delay = backoffMs(4, base, max);
      expect(delay).toBeGreaterThanOrEqual(400);
      expect(delay).toBeLessThanOrEqual(800);
      expect(Number.isInteger(delay)).toBe(true);
    }
  });
});

function entry(id: string, rowKey: string, epoch = 1, table = 'users'): OutboxEntry {
  return { id, table, rowKey, op: 'upsert', image: { id: rowKey, v: id }, epoch, attempts: 0, createdAt: 0 };
}

describe('coalesce', () => {
  it('keeps the newest entry per key and collects every id', () => {
    const input = [entry('10', '1'), entry('14', '1'), entry('11', '2'), entry('13', '3'), entry('12', '1')];
    const groups = coalesce(input);
    expect(groups.map((g) => [g.newest.rowKey, g.newest.id, g.ids])).toEqual([
      ['1', '14', ['10', '14', '12']],
      ['2', '11', ['11']],
      ['3', '13', ['13']],
    ]);
    expect(groups[0]?.newest).toBe(input[1]);
    expect(groups.flatMap((g) => g.ids).sort()).toEqual(input.map((e) => e.id).sort());
  });

  it('compares seqs as numbers, not text ("10" is newer than "9")', () => {
    const [group] = coalesce([entry('9', 'k'), entry('10', 'k')]);
    expect(group?.newest.id).toBe('10');
  });

  it('lets a newer epoch win over a higher seq', () => {
    const older = entry('900', 'k', 1);
    const newer = entry('5', 'k', 2);
    expect(coalesce([older, newer])[0]?.newest).toBe(newer);
    expect(coalesce([newer, older])[0]?.newest).toBe(newer);
  });

  it('orders seqs beyond 2^53 exactly', () => {
    const [group] = coalesce([entry('9007199254740993', 'k'), entry('9007199254740992', 'k')]);
    expect(group?.newest.id).toBe('9007199254740993');
  });

  it('keeps the same key of different tables apart', () => {
    const groups = coalesce([entry('1', '7', 1, 'users'), entry('2', '7', 1, 'orders')]);
    expect(groups.map((g) => [g.newest.table, g.newest.id])).toEqual([
      ['orders', '2'],
      ['users', '1'],
    ]);
  });

  it('returns groups in one sorted key order whatever the input order', () => {
    const entries = [entry('1', 'b'), entry('2', 'a'), entry('3', 'c', 1, 'aaa'), entry('4', 'a')];
    const expected = [
      ['aaa', 'c'],
      ['users', 'a'],
      ['users', 'b'],
    ];
    expect(coalesce(entries).map((g) => [g.newest.table, g.newest.rowKey])).toEqual(expected);
    expect(coalesce([...entries].reverse()).map((g) => [g.newest.table, g.newest.rowKey])).toEqual(expected);
  });

  it('returns nothing for nothing', () => {
    expect(coalesce([])).toEqual([]);
  });
});

describe('compareVersion', () => {
  it('orders by epoch first, then by seq', () => {
    expect(compareVersion({ epoch: 2, seq: '1' }, { epoch: 1, seq: '999' })).toBe(1);
    expect(compareVersion({ epoch: 1, seq: '999' }, { epoch: 2, seq: '1' })).toBe(-1);
    expect(compareVersion({ epoch: 3, seq: '10' }, { epoch: 3, seq: '9' })).toBe(1);
    expect(compareVersion({ epoch: 3, seq: '9' }, { epoch: 3, seq: '10' })).toBe(-1);
    expect(compareVersion({ epoch: 3, seq: '42' }, { epoch: 3, seq: '42' })).toBe(0);
  });

  it('compares seqs beyond 2^53 exactly', () => {
    // Both parse to the same double: 9007199254740992.
    const a = { epoch: 1, seq: '9007199254740993' };
    const b = { epoch: 1, seq: '9007199254740992' };
    expect(Number(a.seq)).toBe(Number(b.seq));
    expect(compareVersion(a, b)).toBe(1);
    expect(compareVersion(b, a)).toBe(-1);
    expect(compareVersion({ epoch: 1, seq: '18446744073709551615' }, { epoch: 1, seq: '18446744073709551614' })).toBe(1);
  });
});

describe('entryFromRecord', () => {
  it('turns a database row into an entry: string id, decoded image, numbers', () => {
    const record = {
      id: 9007199254740993n.toString(),
      tbl: 'users',
      row_key: '7',
      op: 'upsert',
      image: encodeImage({ id: 7, avatar: Buffer.from('hi') }),
      epoch: '2',
      status: 'pending',
      attempts: '3',
      next_attempt_at: '0',
      last_error: null,
      created_at: '1700000000000',
    };
    const e = entryFromRecord(record);
    expect(e).toEqual({
      id: '9007199254740993',
      table: 'users',
      rowKey: '7',
      op: 'upsert',
      image: { id: 7, avatar: Buffer.from('hi') },
      epoch: 2,
      attempts: 3,
      createdAt: 1_700_000_000_000,
    });
    expect(entryFromRecord({ ...record, op: 'delete', image: null }).image).toBeNull();
    expect(entryFromRecord({ ...record, op: 'delete', image: null }).op).toBe('delete');
  });
});

describe('image codec', () => {
  it('round-trips buffers byte for byte, at top level and nested', () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    const decoded = decodeImage(encodeImage({ avatar: bytes, nested: { blob: Buffer.from('x') }, list: [Buffer.from('y')] }));
    expect(Buffer.isBuffer(decoded['avatar'])).toBe(true);
    expect(decoded['avatar']).toEqual(bytes);
    expect((decoded['nested'] as Record<string, unknown>)['blob']).toEqual(Buffer.from('x'));
    expect((decoded['list'] as unknown[])[0]).toEqual(Buffer.from('y'));
  });

  it('encodes buffers as {"$b64": …}', () => {
    expect(JSON.parse(encodeImage({ b: Buffer.from('hello') }))).toEqual({ b: { $b64: 'aGVsbG8=' } });
  });

  it('encodes dates as ISO-8601 UTC and bigints as exact decimal strings', () => {
    const text = encodeImage({ at: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)), big: 12345678901234567890n, neg: -5n });
    expect(JSON.parse(text)).toEqual({ at: '2024-01-02T03:04:05.006Z', big: '12345678901234567890', neg: '-5' });
  });

  it('keeps plain JSON values (null, numbers, strings, booleans, objects, arrays)', () => {
    const row = { a: null, b: 1.5, c: 'text', d: true, e: { x: [1, { y: 'z' }] }, f: [] };
    expect(decodeImage(encodeImage(row))).toEqual(row);
  });

  it('round-trips a JSON column value that happens to look like an encoded buffer', () => {
    // A jsonb value {"$b64": "aGk="} is data, not bytes; decoding must not turn it into a Buffer.
    const row = { doc: { $b64: 'aGk=' } };
    expect(decodeImage(encodeImage(row))).toEqual(row);
  });

  it('throughImage gives what decodeImage(encodeImage(row)) gives, value by value', () => {
    const rows: Array<Record<string, unknown>> = [
      { id: '42', name: 'Ada', qty: 7, price: '12.50', ok: true, off: false, none: null, at: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)) },
      { big: 12345678901234567890n, neg: -5n, zero: -0, nan: Number.NaN, inf: Number.POSITIVE_INFINITY, gone: undefined, bad: new Date(Number.NaN) },
      { bytes: Buffer.from([0, 1, 250, 255]), empty: Buffer.alloc(0), text: 'tab\t "quoted" \u2028 \ud800', $dollar: 'kept', $b64: 'aGk=' },
      { '10': 'numeric key', a: 1, '2': 'order' },
      // Objects take the real round trip: JSON values, arrays, bytes inside them.
      { doc: { $b64: 'aGk=', $x: 1, nested: [Buffer.from('y'), new Date(0)] }, list: [1, 'two', null] },
    ];
    for (const row of rows) {
      const expected = decodeImage(encodeImage(row));
      const got = throughImage(row);
      expect(got).toStrictEqual(expected);
      expect(Object.keys(got)).toEqual(Object.keys(expected));
      for (const key of Object.keys(expected)) {
        const value = expected[key];
        if (value === null || typeof value !== 'object') expect(Object.is(got[key], value)).toBe(true); // -0, NaN and null told apart
      }
    }
    const bytes = Buffer.from('abc');
    const copy = throughImage({ bytes })['bytes'];
    expect(copy).toEqual(bytes);
    expect(copy).not.toBe(bytes);
  });

  it('toApiRow: buffers to base64, bigints to strings, other values untouched, input not mutated', () => {
    const at = new Date('2024-01-02T03:04:05.006Z');
    const row = { id: 1, avatar: Buffer.from('hello'), big: 9007199254740993n, at, name: 'Ada', none: null };
    const api = toApiRow(row);
    expect(api).toEqual({ id: 1, avatar: 'aGVsbG8=', big: '9007199254740993', at, name: 'Ada', none: null });
    expect(Buffer.isBuffer(row.avatar)).toBe(true);
    expect(row.big).toBe(9007199254740993n);
    // What the client finally sees: dates as ISO-8601 strings.
    expect(JSON.parse(JSON.stringify(api))).toEqual({
      id: 1,
      avatar: 'aGVsbG8=',
      big: '9007199254740993',
      at: '2024-01-02T03:04:05.006Z',
      name: 'Ada',
      none: null,
    });
  });
});
