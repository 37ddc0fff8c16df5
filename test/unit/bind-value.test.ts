import { describe, it, expect } from 'vitest';
import { bindValue } from '../../src/db/bind-value.js';
import { DIALECTS } from '../../src/db/store.js';

describe('bindValue on every dialect', () => {
  it.each(DIALECTS)('%s: null and undefined bind as null', (dialect) => {
    expect(bindValue(null, 'string', dialect)).toBeNull();
    expect(bindValue(undefined, 'integer', dialect)).toBeNull();
  });

  it.each(DIALECTS)('%s: base64 text for a binary column becomes the decoded bytes', (dialect) => {
    const bound = bindValue('AAH6/w==', 'binary', dialect);
    expect(Buffer.isBuffer(bound)).toBe(true);
    expect(bound).toEqual(Buffer.from([0, 1, 250, 255]));
  });

  it.each(DIALECTS)('%s: a Buffer passes through as the same object', (dialect) => {
    const bytes = Buffer.from('hi');
    expect(bindValue(bytes, 'binary', dialect)).toBe(bytes);
  });

  it.each(DIALECTS)('%s: bigints bind as exact decimal text', (dialect) => {
    expect(bindValue(9007199254740993n, 'integer', dialect)).toBe('9007199254740993');
  });

  it.each(DIALECTS)('%s: objects and arrays bind as JSON text', (dialect) => {
    expect(bindValue({ a: [1, 'two'], b: null }, 'json', dialect)).toBe('{"a":[1,"two"],"b":null}');
    // node-pg would otherwise send a JS array as a PostgreSQL array literal.
    expect(bindValue([1, 2, 3], 'json', dialect)).toBe('[1,2,3]');
  });

  it.each(DIALECTS)('%s: numbers and plain strings are left alone', (dialect) => {
    expect(bindValue(42, 'integer', dialect)).toBe(42);
    expect(bindValue(1.5, 'float', dialect)).toBe(1.5);
    expect(bindValue('hello', 'string', dialect)).toBe('hello');
    expect(bindValue('12.50', 'decimal', dialect)).toBe('12.50');
  });
});

describe('bindValue on sqlite', () => {
  it('binds booleans as 1/0 whatever the column kind', () => {
    expect(bindValue(true, 'boolean', 'sqlite')).toBe(1);
    expect(bindValue(false, 'boolean', 'sqlite')).toBe(0);
    expect(bindValue(true, 'integer', 'sqlite')).toBe(1);
    expect(bindValue(false, null, 'sqlite')).toBe(0);
  });

  it('binds a Date as ISO-8601 UTC text', () => {
    expect(bindValue(new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)), 'datetime', 'sqlite')).toBe('2024-01-02T03:04:05.006Z');
  });

  it('leaves date-time text as written', () => {
    expect(bindValue('2024-01-02T03:04:05Z', 'datetime', 'sqlite')).toBe('2024-01-02T03:04:05Z');
  });
});

describe('bindValue on pg', () => {
  it('keeps booleans for boolean columns, 1/0 for integer columns', () => {
    expect(bindValue(true, 'boolean', 'pg')).toBe(true);
    expect(bindValue(false, 'boolean', 'pg')).toBe(false);
    expect(bindValue(true, 'integer', 'pg')).toBe(1);
    expect(bindValue(false, 'integer', 'pg')).toBe(0);
  });

  it('passes JSON text for a json column through unchanged', () => {
    expect(bindValue('{"a":1}', 'json', 'pg')).toBe('{"a":1}');
  });

  it('passes a Date through and leaves date-time text to the server', () => {
    const at = new Date('2024-01-02T03:04:05Z');
    expect(bindValue(at, 'datetime', 'pg')).toBe(at);
    expect(bindValue('2024-01-02 03:04:05', 'datetime', 'pg')).toBe('2024-01-02 03:04:05');
  });
});

describe('bindValue on mysql', () => {
  it('keeps booleans for boolean columns, 1/0 for integer (tinyint) columns', () => {
    expect(bindValue(true, 'boolean', 'mysql')).toBe(true);
    expect(bindValue(true, 'integer', 'mysql')).toBe(1);
    expect(bindValue(false, 'integer', 'mysql')).toBe(0);
  });

  it('turns an ISO date-time with Z into the same instant as a Date', () => {
    const bound = bindValue('2024-01-02T03:04:05.123Z', 'datetime', 'mysql');
    expect(bound).toBeInstanceOf(Date);
    expect((bound as Date).toISOString()).toBe('2024-01-02T03:04:05.123Z');
  });

  it('honours an explicit offset', () => {
    const bound = bindValue('2024-01-02T05:04:05+02:00', 'datetime', 'mysql');
    expect(bound).toBeInstanceOf(Date);
    expect((bound as Date).toISOString()).toBe('2024-01-02T03:04:05.000Z');
    expect((bindValue('2024-01-01T22:04:05-0500', 'datetime', 'mysql') as Date).toISOString()).toBe(
      '2024-01-02T03:04:05.000Z',
    );
  });

  it('reads a date-time without zone as UTC, with "T" or a space', () => {
    expect((bindValue('2024-01-02T03:04:05', 'datetime', 'mysql') as Date).toISOString()).toBe('2024-01-02T03:04:05.000Z');
    expect((bindValue('2024-01-02 03:04:05', 'datetime', 'mysql') as Date).toISOString()).toBe('2024-01-02T03:04:05.000Z');
    expect((bindValue('2024-01-02 03:04', 'datetime', 'mysql') as Date).toISOString()).toBe('2024-01-02T03:04:00.000Z');
  });

  it('leaves text it cannot read as a date-time unchanged', () => {
    expect(bindValue('2024-13-45T99:99:99', 'datetime', 'mysql')).toBe('2024-13-45T99:99:99');
    expect(bindValue('2024-01-02', 'datetime', 'mysql')).toBe('2024-01-02');
    expect(bindValue('tomorrow', 'datetime', 'mysql')).toBe('tomorrow');
  });

  it('converts date-time text only for datetime columns', () => {
    expect(bindValue('2024-01-02T03:04:05Z', 'string', 'mysql')).toBe('2024-01-02T03:04:05Z');
    expect(bindValue('2024-01-02T03:04:05Z', 'date', 'mysql')).toBe('2024-01-02T03:04:05Z');
  });

  it('passes a Date through', () => {
    const at = new Date('2024-01-02T03:04:05Z');
    expect(bindValue(at, 'datetime', 'mysql')).toBe(at);
  });
});
