import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { catchTandemError } from '../helpers/errors.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ColumnInfo, TableInfo } from '../../src/db/introspect.js';
import { bindPolicy } from '../../src/policy/bind-policy.js';
import { loadPolicyFiles, type LoadedPolicyFile } from '../../src/policy/load-policies.js';
import { mapBackward, mapForward } from '../../src/policy/mapping.js';
import { policyFileSchema, type Policy } from '../../src/policy/policy.js';
import { formatKey, keyFromJson, keyOfRow, parseKey } from '../../src/policy/row-key.js';
import { validateValues } from '../../src/policy/validate-values.js';

// ---------------------------------------------------------------------------
// Fixtures: hand-written catalog descriptions and policy files.
// ---------------------------------------------------------------------------

function col(name: string, type: string, maxLength: number | null = null, nullable = true): ColumnInfo {
  return { name, type, nullable, maxLength };
}

function loaded(raw: unknown, file = '/policies/test.yaml'): LoadedPolicyFile {
  return { file: policyFileSchema.parse(raw), path: file };
}

/** The demo's shape: `users` → `app_users` with renames and an excluded column. */
const usersSource: TableInfo = {
  table: 'users', dialect: 'pg',
  columns: [
    col('id', 'integer', null, false),
    col('full_name', 'varchar', 5),
    col('email', 'text'),
    col('created_date', 'timestamp'),
    col('legacy_flags', 'integer'),
    col('active', 'boolean'),
    col('born_on', 'date'),
    col('balance', 'numeric'),
    col('score', 'real'),
    col('profile', 'jsonb'),
    col('avatar', 'bytea'),
    col('small_flag', 'tinyint(1)'),
    col('shape', 'point'),
  ],
  primaryKey: ['id'],
};

const usersTarget: TableInfo = {
  table: 'app_users', dialect: 'pg',
  columns: [
    col('id', 'bigint', null, false),
    col('name', 'varchar', 200),
    col('email', 'varchar', 255),
    col('created_at', 'datetime'),
    col('active', 'tinyint(1)'),
    col('born_on', 'date'),
    col('balance', 'decimal'),
    col('score', 'double'),
    col('profile', 'json'),
    col('avatar', 'longblob'),
    col('small_flag', 'tinyint(1)'),
    col('shape', 'point'),
    col('target_only', 'text'),
  ],
  primaryKey: ['id'],
};

const usersPolicyFile = {
  table: 'users',
  primaryKey: ['id'],
  target: {
    table: 'app_users',
    columns: { full_name: 'name', created_date: 'created_at' },
    exclude: ['legacy_flags'],
  },
  redact: ['email'],
};

function bindOk(file: LoadedPolicyFile, source: TableInfo, target: TableInfo): Policy {
  const { policy, problems } = bindPolicy(file, source, target);
  expect(problems).toEqual([]);
  if (!policy) throw new Error('expected a bound policy');
  return policy;
}

function usersPolicy(): Policy {
  return bindOk(loaded(usersPolicyFile), usersSource, usersTarget);
}

/** `memberships(tenant varchar, seq integer)` with the same shape on both sides. */
function compositePolicy(): Policy {
  const table: TableInfo = {
    table: 'memberships', dialect: 'pg',
    columns: [col('tenant', 'varchar', 64, false), col('seq', 'integer', null, false), col('role', 'text')],
    primaryKey: ['tenant', 'seq'],
  };
  return bindOk(loaded({ table: 'memberships' }), table, table);
}

function problemsOf(file: LoadedPolicyFile, source: TableInfo | undefined, target: TableInfo | undefined): string[] {
  const result = bindPolicy(file, source, target);
  expect(result.policy).toBeUndefined();
  expect(result.problems.length).toBeGreaterThan(0);
  return result.problems;
}

// ---------------------------------------------------------------------------
// bindPolicy
// ---------------------------------------------------------------------------

describe('bindPolicy', () => {
  it('resolves a valid policy: target table, mapped key, target names and kinds', () => {
    const policy = usersPolicy();
    expect(policy.name).toBe('users');
    expect(policy.sourceTable).toBe('users');
    expect(policy.targetTable).toBe('app_users');
    expect(policy.primaryKey).toEqual(['id']);
    expect(policy.targetPrimaryKey).toEqual(['id']);
    expect(policy.sourcePath).toBe('/policies/test.yaml');
    expect([...policy.redact]).toEqual(['email']);
    expect([...policy.columns.keys()]).toEqual(usersSource.columns.map((c) => c.name));

    expect(policy.columns.get('full_name')).toEqual({
      name: 'full_name',
      kind: 'string',
      type: 'varchar',
      nullable: true,
      maxLength: 5,
      targetName: 'name',
      targetKind: 'string',
      targetType: 'varchar',
    });
    expect(policy.columns.get('created_date')?.targetName).toBe('created_at');
    expect(policy.columns.get('created_date')?.targetKind).toBe('datetime');
    expect(policy.columns.get('email')?.targetName).toBe('email');
    expect(policy.columns.get('legacy_flags')?.targetName).toBeNull();
    expect(policy.columns.get('legacy_flags')?.targetKind).toBeNull();
    // Kinds come from each side's own type name.
    expect(policy.columns.get('active')?.kind).toBe('boolean');
    expect(policy.columns.get('active')?.targetKind).toBe('integer');
    expect(Object.isFrozen(policy)).toBe(true);
  });

  it('defaults the target table to the source name and the key to the table key', () => {
    const table: TableInfo = { table: 'notes', dialect: 'pg', columns: [col('id', 'integer'), col('body', 'text')], primaryKey: ['id'] };
    const policy = bindOk(loaded({ table: 'notes' }), table, { ...table });
    expect(policy.targetTable).toBe('notes');
    expect(policy.primaryKey).toEqual(['id']);
    expect(policy.targetPrimaryKey).toEqual(['id']);
  });

  it('maps a renamed key column into the target primary key', () => {
    const source: TableInfo = { table: 'a', dialect: 'pg', columns: [col('id', 'integer'), col('v', 'text')], primaryKey: ['id'] };
    const target: TableInfo = { table: 'b', dialect: 'pg', columns: [col('a_id', 'integer'), col('v', 'text')], primaryKey: ['a_id'] };
    const policy = bindOk(loaded({ table: 'a', target: { table: 'b', columns: { id: 'a_id' } } }), source, target);
    expect(policy.targetPrimaryKey).toEqual(['a_id']);
  });

  it('refuses missing source or target tables', () => {
    const file = loaded(usersPolicyFile);
    expect(problemsOf(file, undefined, usersTarget).join('\n')).toMatch(/source table users does not exist/);
    expect(problemsOf(file, usersSource, undefined).join('\n')).toMatch(/target table app_users does not exist/);
  });

  it('refuses a source table without a primary key', () => {
    const source: TableInfo = { table: 'logs', dialect: 'pg', columns: [col('id', 'integer'), col('line', 'text')], primaryKey: [] };
    const target: TableInfo = { ...source, primaryKey: ['id'] };
    const problems = problemsOf(loaded({ table: 'logs' }), source, target);
    expect(problems.join('\n')).toMatch(/source table logs has no primary key/);
  });

  it('refuses a policy primaryKey column that does not exist, naming it', () => {
    const problems = problemsOf(loaded({ ...usersPolicyFile, primaryKey: ['uid'] }), usersSource, usersTarget);
    expect(problems.join('\n')).toMatch(/primaryKey column uid does not exist in users/);
  });

  it('refuses a policy primaryKey that differs from the table key', () => {
    const problems = problemsOf(loaded({ ...usersPolicyFile, primaryKey: ['email'] }), usersSource, usersTarget);
    expect(problems.join('\n')).toMatch(/primaryKey \[email\] differs from the table's primary key \[id\]/);
  });

  it('refuses target.columns naming a source column that does not exist', () => {
    const file = loaded({
      ...usersPolicyFile,
      target: { ...usersPolicyFile.target, columns: { ...usersPolicyFile.target.columns, nickname: 'name2' } },
    });
    const problems = problemsOf(file, usersSource, usersTarget);
    expect(problems.join('\n')).toMatch(/target\.columns names source column nickname, which does not exist in users/);
  });

  it('refuses a mapped target column that is missing, naming the column', () => {
    const target: TableInfo = { ...usersTarget, columns: usersTarget.columns.filter((c) => c.name !== 'created_at') };
    const problems = problemsOf(loaded(usersPolicyFile), usersSource, target);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('created_date');
    expect(problems[0]).toContain('app_users.created_at');
  });

  it('refuses an unmapped source column the target lacks (not renamed, not excluded)', () => {
    const file = loaded({ ...usersPolicyFile, target: { ...usersPolicyFile.target, exclude: [] } });
    const problems = problemsOf(file, usersSource, usersTarget);
    expect(problems.join('\n')).toContain('app_users.legacy_flags');
  });

  it('refuses a target with a different primary key', () => {
    const target: TableInfo = { ...usersTarget, primaryKey: ['email'] };
    const problems = problemsOf(loaded(usersPolicyFile), usersSource, target);
    expect(problems.join('\n')).toMatch(/mapped key \[id\] is not the primary key of app_users \[email\]/);
  });

  it('refuses a target without a primary key', () => {
    const target: TableInfo = { ...usersTarget, primaryKey: [] };
    const problems = problemsOf(loaded(usersPolicyFile), usersSource, target);
    expect(problems.join('\n')).toMatch(/target table app_users has no primary key/);
  });

  it('refuses excluding a key column and two columns mapping to one target column', () => {
    const excluded = problemsOf(
      loaded({ ...usersPolicyFile, target: { ...usersPolicyFile.target, exclude: ['legacy_flags', 'id'] } }),
      usersSource,
      usersTarget,
    );
    expect(excluded.join('\n')).toMatch(/cannot exclude primary-key column id/);

    const clash = problemsOf(
      loaded({ ...usersPolicyFile, target: { ...usersPolicyFile.target, columns: { full_name: 'email', created_date: 'created_at' } } }),
      usersSource,
      usersTarget,
    );
    expect(clash.join('\n')).toMatch(/source columns full_name and email both map to app_users\.email/);
  });

  it('refuses redact/compare columns that do not exist', () => {
    const problems = problemsOf(loaded({ ...usersPolicyFile, redact: ['ssn'] }), usersSource, usersTarget);
    expect(problems.join('\n')).toMatch(/column ssn named in redact\/compare does not exist/);
  });

  it('reports every problem at once, each prefixed with the policy and its file', () => {
    const target: TableInfo = { ...usersTarget, columns: usersTarget.columns.filter((c) => c.name !== 'name'), primaryKey: ['email'] };
    const problems = problemsOf(loaded(usersPolicyFile, '/p/users.yaml'), usersSource, target);
    expect(problems.length).toBeGreaterThanOrEqual(2);
    for (const problem of problems) expect(problem.startsWith('policy users (/p/users.yaml): ')).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// loadPolicyFiles
// ---------------------------------------------------------------------------

describe('loadPolicyFiles', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tandem-policies-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads *.yaml, *.yml and *.json in name order, ignoring other files, applying defaults', () => {
    writeFileSync(path.join(dir, 'users.yaml'), 'table: users\nprimaryKey: [id]\ntarget:\n  table: app_users\n  columns: { full_name: name }\n');
    writeFileSync(path.join(dir, 'b-orders.yml'), 'table: orders\n');
    writeFileSync(path.join(dir, 'a-items.json'), JSON.stringify({ table: 'items' }));
    writeFileSync(path.join(dir, 'README.md'), '# not a policy\n');

    const files = loadPolicyFiles(dir);
    expect(files.map((f) => f.file.table)).toEqual(['items', 'orders', 'users']);
    expect(files.map((f) => f.path)).toEqual([
      path.join(dir, 'a-items.json'),
      path.join(dir, 'b-orders.yml'),
      path.join(dir, 'users.yaml'),
    ]);
    const users = files[2]?.file;
    expect(users?.target).toEqual({ table: 'app_users', columns: { full_name: 'name' }, exclude: [] });
    expect(users?.compare.timestampPrecision).toBe('ms');
    expect(users?.safety.maxTargetErrorRate).toBe(0.1);
    expect(users?.safety.minSamples).toBe(100);
  });

  it('refuses an unknown key, naming the file and the key', () => {
    writeFileSync(path.join(dir, 'good.yaml'), 'table: good\n');
    writeFileSync(path.join(dir, 'bad.yaml'), 'table: bad\ncolour: red\n');
    const error = catchTandemError(() => loadPolicyFiles(dir));
    expect(error.code).toBe('policy_invalid');
    expect(error.message).toContain(path.join(dir, 'bad.yaml'));
    expect(error.message).toContain('colour');
    expect(error.message).not.toContain('good.yaml');
  });

  it('refuses an unknown nested key, naming its section', () => {
    writeFileSync(path.join(dir, 'bad.yaml'), 'table: bad\ntarget:\n  tabel: other\n');
    const error = catchTandemError(() => loadPolicyFiles(dir));
    expect(error.message).toContain(`${path.join(dir, 'bad.yaml')}: target: unknown key(s) tabel`);
  });

  it('refuses two policies for one table, naming both files', () => {
    writeFileSync(path.join(dir, 'a.yaml'), 'table: users\n');
    writeFileSync(path.join(dir, 'b.yaml'), 'table: users\n');
    const error = catchTandemError(() => loadPolicyFiles(dir));
    expect(error.code).toBe('policy_invalid');
    expect(error.message).toContain(`${path.join(dir, 'b.yaml')}: table users already has a policy in ${path.join(dir, 'a.yaml')}`);
  });

  it('lists the problems of every file in one error', () => {
    writeFileSync(path.join(dir, 'a.yaml'), 'table: "not an identifier"\n');
    writeFileSync(path.join(dir, 'b.yaml'), 'table: [unclosed\n');
    writeFileSync(path.join(dir, 'c.yaml'), 'table: c\nsafety: { maxTargetErrorRate: 2 }\n');
    const error = catchTandemError(() => loadPolicyFiles(dir));
    expect(error.message).toContain(`${path.join(dir, 'a.yaml')}: table: must be a plain identifier`);
    expect(error.message).toContain(path.join(dir, 'b.yaml'));
    expect(error.message).toContain(`${path.join(dir, 'c.yaml')}: safety.maxTargetErrorRate`);
  });

  it('refuses a missing folder with policy_invalid naming it', () => {
    const missing = path.join(dir, 'nope');
    const error = catchTandemError(() => loadPolicyFiles(missing));
    expect(error.code).toBe('policy_invalid');
    expect(error.message).toContain(missing);
  });
});

// ---------------------------------------------------------------------------
// mapping
// ---------------------------------------------------------------------------

describe('mapForward / mapBackward', () => {
  it('renames source columns to target names and drops excluded and unknown columns', () => {
    const policy = usersPolicy();
    const created = new Date('2024-05-06T07:08:09.000Z');
    expect(
      mapForward(policy, { id: 7, full_name: 'Ada', email: 'a@x', created_date: created, legacy_flags: 3, not_a_column: 1 }),
    ).toEqual({ id: 7, name: 'Ada', email: 'a@x', created_at: created });
  });

  it('maps target names back, leaving out target-only columns', () => {
    const policy = usersPolicy();
    expect(mapBackward(policy, { id: 7, name: 'Ada', created_at: 'T', target_only: 'x', legacy_flags: 3 })).toEqual({
      id: 7,
      full_name: 'Ada',
      created_date: 'T',
    });
  });

  it('keeps null values (a null is a value, not an absence)', () => {
    const policy = usersPolicy();
    expect(mapForward(policy, { id: 1, full_name: null })).toEqual({ id: 1, name: null });
    expect(mapBackward(policy, { id: 1, name: null })).toEqual({ id: 1, full_name: null });
  });

  it('handles swapped column names without mixing them up, and round-trips', () => {
    const source: TableInfo = { table: 's', dialect: 'pg', columns: [col('id', 'integer'), col('a', 'text'), col('b', 'text')], primaryKey: ['id'] };
    const policy = bindOk(loaded({ table: 's', target: { columns: { a: 'b', b: 'a' } } }), source, { ...source });
    const row = { id: 1, a: 'from a', b: 'from b' };
    const forward = mapForward(policy, row);
    expect(forward).toEqual({ id: 1, b: 'from a', a: 'from b' });
    expect(mapBackward(policy, forward)).toEqual(row);
  });
});

// ---------------------------------------------------------------------------
// row keys
// ---------------------------------------------------------------------------

describe('formatKey / parseKey', () => {
  it('round-trips a composite key whose text part contains "," and "%"', () => {
    const policy = compositePolicy();
    const formatted = formatKey(['a,b%c', 42]);
    expect(formatted).toBe('a%2Cb%25c,42');
    expect(parseKey(policy, formatted)).toEqual(['a,b%c', 42]);
  });

  it('round-trips keys taken from a row with keyOfRow', () => {
    const policy = compositePolicy();
    const key = keyOfRow(policy, { role: 'admin', seq: 3, tenant: 'acme/é 1' });
    expect(key).toEqual(['acme/é 1', 3]);
    expect(parseKey(policy, formatKey(key))).toEqual(key);
  });

  it('formats dates as ISO-8601 and buffers as base64 (URL-encoded)', () => {
    expect(formatKey([new Date('2024-01-02T03:04:05.006Z')])).toBe(encodeURIComponent('2024-01-02T03:04:05.006Z'));
    expect(formatKey([Buffer.from([0xfb, 0xff])])).toBe(encodeURIComponent('+/8='));
  });

  it('parses integer parts as numbers, including negatives', () => {
    const policy = usersPolicy();
    expect(parseKey(policy, '42')).toEqual([42]);
    expect(parseKey(policy, '-7')).toEqual([-7]);
    expect(typeof parseKey(policy, '42')[0]).toBe('number');
  });

  it('keeps integers beyond 2^53 as exact decimal text (bigint key)', () => {
    const bigSource: TableInfo = { ...usersSource, columns: usersSource.columns.map((c) => (c.name === 'id' ? { ...c, type: 'bigint' } : c)) };
    const bigTarget: TableInfo = { ...usersTarget, columns: usersTarget.columns.map((c) => (c.name === 'id' ? { ...c, type: 'bigint' } : c)) };
    const policy = bindOk(loaded(usersPolicyFile), bigSource, bigTarget);
    expect(parseKey(policy, '9007199254740993')).toEqual(['9007199254740993']);
  });

  it('refuses a key outside a 32-bit integer column with invalid_key on "key"', () => {
    const error = catchTandemError(() => parseKey(usersPolicy(), '2147483648'));
    expect(error.code).toBe('invalid_key');
    expect(error.field).toBe('key');
    expect(parseKey(usersPolicy(), '2147483647')).toEqual([2147483647]);
  });

  it.each(['1.5', 'abc', '1e3', '', '0x10', '123456789012345678901'])('refuses %j as an integer key part', (raw) => {
    const error = catchTandemError(() => parseKey(usersPolicy(), raw));
    expect(error.code).toBe('invalid_key');
    expect(error.status).toBe(400);
    expect(error.field).toBe('key');
  });

  it('refuses the wrong number of parts with invalid_key on field "key"', () => {
    const single = catchTandemError(() => parseKey(usersPolicy(), '1,2'));
    expect(single.code).toBe('invalid_key');
    expect(single.status).toBe(400);
    expect(single.field).toBe('key');
    expect(single.message).toMatch(/expected 1 part/);

    const composite = catchTandemError(() => parseKey(compositePolicy(), 'acme'));
    expect(composite.code).toBe('invalid_key');
    expect(composite.field).toBe('key');
    expect(composite.message).toMatch(/expected 2 part\(s\) \(tenant, seq\).*got 1/);
  });

  it('refuses malformed URL encoding and empty text parts', () => {
    const policy = compositePolicy();
    expect(catchTandemError(() => parseKey(policy, '%E0%A4%A,1')).code).toBe('invalid_key');
    const empty = catchTandemError(() => parseKey(policy, ',1'));
    expect(empty.code).toBe('invalid_key');
    expect(empty.message).toMatch(/tenant is empty/);
  });

  it('names the given field instead of "key"', () => {
    const error = catchTandemError(() => parseKey(usersPolicy(), 'x', '_after'));
    expect(error.field).toBe('_after');
    expect(error.message.startsWith('_after:')).toBe(true);
  });
});

describe('keyFromJson', () => {
  it('accepts a number or a (URL-form) string for a one-column key', () => {
    const policy = usersPolicy();
    expect(keyFromJson(policy, 5, 'ops.0.key')).toEqual([5]);
    expect(keyFromJson(policy, '5', 'ops.0.key')).toEqual([5]);
  });

  it('accepts an array in key order, with "," and "%" inside parts', () => {
    expect(keyFromJson(compositePolicy(), ['a,b%c', 7], 'ops.0.key')).toEqual(['a,b%c', 7]);
  });

  it('accepts an object keyed by column name, in any property order', () => {
    expect(keyFromJson(compositePolicy(), { seq: 9, tenant: 'x%y' }, 'ops.0.key')).toEqual(['x%y', 9]);
  });

  it('refuses null, a bare number for a composite key, or missing parts, naming the field', () => {
    const policy = compositePolicy();
    for (const value of [null, undefined, true, 5, ['only-one'], { tenant: 'x' }]) {
      const error = catchTandemError(() => keyFromJson(policy, value, 'ops.3.key'));
      expect(error.code).toBe('invalid_key');
      expect(error.field).toBe('ops.3.key');
    }
  });
});

// ---------------------------------------------------------------------------
// validateValues
// ---------------------------------------------------------------------------

describe('validateValues', () => {
  it('returns a fresh object with the same values when every value fits', () => {
    const policy = usersPolicy();
    const values = {
      id: 1,
      full_name: 'Ada',
      email: 'a@x',
      created_date: '2024-01-02T03:04:05Z',
      active: true,
      born_on: '1815-12-10',
      balance: '12.50',
      score: 1.5,
      profile: { nested: [1, 'two'] },
      avatar: 'aGVsbG8=',
      small_flag: false,
      shape: '(1,2)',
    };
    const out = validateValues(policy, values);
    expect(out).toEqual(values);
    expect(out).not.toBe(values);
  });

  it('accepts null for every kind', () => {
    const policy = usersPolicy();
    const values = Object.fromEntries(usersSource.columns.map((c) => [c.name, null]));
    expect(validateValues(policy, values)).toEqual(values);
  });

  it('refuses an unknown column with unknown_column on field values.<col>', () => {
    const error = catchTandemError(() => validateValues(usersPolicy(), { id: 1, nickname: 'x' }));
    expect(error.code).toBe('unknown_column');
    expect(error.status).toBe(400);
    expect(error.field).toBe('values.nickname');
    expect(error.message).toContain('values.nickname');
  });

  it('refuses a body that is not an object', () => {
    for (const values of [null, [], 'x', 3]) {
      const error = catchTandemError(() => validateValues(usersPolicy(), values));
      expect(error.code).toBe('bad_request');
      expect(error.field).toBe('values');
    }
  });

  it.each([
    ['id', 1.5],
    ['id', '12a'],
    ['id', true],
    ['full_name', 12],
    ['email', { a: 1 }],
    ['active', 'yes'],
    ['active', 2],
    ['balance', 'abc'],
    ['balance', Number.NaN],
    ['score', Number.POSITIVE_INFINITY],
    ['created_date', 'not a date'],
    ['created_date', 12],
    ['born_on', '2024-01-02T00:00:00Z'],
    ['born_on', '02/01/2024'],
    ['avatar', 'not base64!'],
    ['avatar', 5],
    ['shape', { x: 1 }],
  ] as const)('refuses %s = %o with invalid_value naming the field', (name, value) => {
    const error = catchTandemError(() => validateValues(usersPolicy(), { [name]: value }));
    expect(error.code).toBe('invalid_value');
    expect(error.status).toBe(400);
    expect(error.field).toBe(`values.${name}`);
    expect(error.message.startsWith(`values.${name}:`)).toBe(true);
  });

  it('accepts integer text and booleans for tinyint(1) integers', () => {
    const policy = usersPolicy();
    expect(validateValues(policy, { id: '-12', small_flag: true })).toEqual({ id: '-12', small_flag: true });
    expect(validateValues(policy, { active: 0 })).toEqual({ active: 0 });
  });

  it('enforces maxLength in characters (code points), not UTF-16 units', () => {
    const policy = usersPolicy(); // full_name: varchar(5)
    expect(validateValues(policy, { full_name: 'abcde' })).toEqual({ full_name: 'abcde' });
    expect(validateValues(policy, { full_name: '😀😀😀😀😀' })).toEqual({ full_name: '😀😀😀😀😀' });
    const error = catchTandemError(() => validateValues(policy, { full_name: 'abcdef' }));
    expect(error.code).toBe('invalid_value');
    expect(error.field).toBe('values.full_name');
    expect(error.message).toContain('longer than 5');
  });

  it('names a nested field prefix (batch ops)', () => {
    const error = catchTandemError(() => validateValues(usersPolicy(), { id: 'x' }, 'ops.2.values'));
    expect(error.field).toBe('ops.2.values.id');
  });

  // The check promises "an ISO-8601 date-time string", but Date.parse accepts far more; with a
  // SQLite source such text is stored, then rejected by a PostgreSQL target on every apply.
  it.each(['1', 'March 7', 'Tue, 02 Jan 2024'])('refuses non-ISO date-time text %j', (value) => {
    const error = catchTandemError(() => validateValues(usersPolicy(), { created_date: value }));
    expect(error.code).toBe('invalid_value');
    expect(error.field).toBe('values.created_date');
  });

  it('refuses a calendar date that does not exist', () => {
    const error = catchTandemError(() => validateValues(usersPolicy(), { born_on: '2023-02-30' }));
    expect(error.code).toBe('invalid_value');
    expect(error.field).toBe('values.born_on');
  });
});
