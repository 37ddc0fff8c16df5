import { describe, expect, it } from 'vitest';
import { SafetyBrake, parseWindow } from '../../src/consistency/safety-brake.js';
import type { TandemEvent } from '../../src/events.js';
import { canonical, canonicalJson, canonicalTimestamp, valuesEqual, type CompareSettings } from '../../src/policy/normalize.js';
import { canonicalNumber } from '../../src/shared/canonical-number.js';
import { policyFileSchema, type Policy } from '../../src/policy/policy.js';

const settings: CompareSettings = { timestampPrecision: 'ms', floatTolerance: 1e-9, caseInsensitive: new Set(['email']), ignore: new Set() };

describe('canonical values across engines', () => {
  it.each([
    ['010.500', '10.5'],
    ['-0.000', '0'],
    ['12.5000', '12.5'],
    ['9223372036854775807', '9223372036854775807'],
    ['+7', '7'],
    ['1e3', '1000'],
  ])('decimal text %s → %s', (input, output) => {
    expect(canonicalNumber(input)).toBe(output);
  });

  it('timestamps with and without zone meet in UTC at the precision', () => {
    const a = canonicalTimestamp('2024-05-01T12:30:45.123+02:00', 'ms');
    const b = canonicalTimestamp(new Date('2024-05-01T10:30:45.123Z'), 'ms');
    const c = canonicalTimestamp('2024-05-01 10:30:45.123456', 'ms'); // naive = UTC
    expect(a).toBe('2024-05-01T10:30:45.123Z');
    expect(b).toBe(a);
    expect(c).toBe(a);
    expect(canonicalTimestamp('2024-05-01 10:30:45.123456', 'us')).toBe('2024-05-01T10:30:45.123456Z');
    expect(canonicalTimestamp('2024-05-01T10:30:45.999Z', 's')).toBe('2024-05-01T10:30:45Z');
    expect(canonicalTimestamp('2024-05-01T10:30:46.123Z', 'ms')).not.toBe(a);
  });

  it('JSON compares by content, not by key order or spacing', () => {
    expect(canonicalJson('{"b": 1, "a": [1, 2]}')).toBe(canonicalJson({ a: [1, 2], b: 1 }));
    expect(canonicalJson('{"a": [2, 1]}')).not.toBe(canonicalJson({ a: [1, 2] }));
  });

  it('booleans and tinyint(1) agree; NULL and empty string do not; trailing spaces count', () => {
    expect(canonical(true, 'boolean', 'integer', settings, 'flag')).toBe(canonical(1, 'integer', 'boolean', settings, 'flag'));
    expect(canonical(null, 'string', 'string', settings, 'name')).not.toBe(canonical('', 'string', 'string', settings, 'name'));
    expect(canonical('x ', 'string', 'string', settings, 'name')).not.toBe(canonical('x', 'string', 'string', settings, 'name'));
    expect(canonical('A@X.TEST', 'string', 'string', settings, 'email')).toBe(canonical('a@x.test', 'string', 'string', settings, 'email'));
  });

  it('big integers stay exact; floats compare within the tolerance', () => {
    expect(canonical('9007199254740993', 'integer', 'integer', settings, 'id')).toBe('9007199254740993');
    expect(canonical('9007199254740993', 'integer', 'integer', settings, 'id')).not.toBe(canonical('9007199254740992', 'integer', 'integer', settings, 'id'));
    expect(valuesEqual(0.1 + 0.2, 0.3, 1e-9)).toBe(true);
    expect(valuesEqual(0.1, 0.2, 1e-9)).toBe(false);
  });

  it('binary compares by bytes', () => {
    expect(canonical(Buffer.from([0, 1, 255]), 'binary', 'binary', settings, 'bin')).toBe(canonical(Buffer.from([0, 1, 255]), 'binary', 'binary', settings, 'bin'));
    expect(canonical(Buffer.from([0, 1, 254]), 'binary', 'binary', settings, 'bin')).not.toBe(canonical(Buffer.from([0, 1, 255]), 'binary', 'binary', settings, 'bin'));
  });
});

function brakePolicy(): Policy {
  const file = policyFileSchema.parse({ table: 'people', safety: { maxTargetErrorRate: 0.1, minConsistency: 0.99, maxLagSeconds: 120, window: '60s', minSamples: 100 } });
  return { name: 'people', sourceTable: 'people', targetTable: 'people', primaryKey: ['id'], targetPrimaryKey: ['id'], columns: new Map(), redact: new Set(), file, sourcePath: 'x' };
}

function rig(options: { autoRollback?: boolean; targetPrimary?: boolean } = {}) {
  let now = 1_000_000;
  const events: TandemEvent[] = [];
  const policy = brakePolicy();
  if (options.autoRollback) policy.file.safety.autoRollback = true;
  const brake = new SafetyBrake([policy], { emit: (e) => events.push(e) }, () => now, () => options.targetPrimary === true);
  return { brake, events, advance: (ms: number) => (now += ms) };
}

describe('safety brake', () => {
  it('parses windows', () => {
    expect(parseWindow('60s')).toBe(60_000);
    expect(parseWindow('2m')).toBe(120_000);
    expect(parseWindow('500ms')).toBe(500);
  });

  it('never trips on fewer than minSamples, then trips on the error rate', () => {
    const { brake, events } = rig();
    for (let i = 0; i < 99; i++) brake.observe({ type: 'read', table: 'people', store: 'target', result: 'fallback' });
    expect(brake.braked('people')).toBe(false);
    brake.observe({ type: 'read', table: 'people', store: 'target', result: 'fallback' });
    expect(brake.braked('people')).toBe(true);
    expect(events.find((e) => e.type === 'brake')).toMatchObject({ active: true, signal: 'error_rate' });
  });

  it('stays off below the threshold and trips above it', () => {
    const { brake } = rig();
    for (let i = 0; i < 95; i++) brake.observe({ type: 'read', table: 'people', store: 'target', result: 'ok' });
    for (let i = 0; i < 5; i++) brake.observe({ type: 'read', table: 'people', store: 'target', result: 'fallback' });
    expect(brake.braked('people')).toBe(false); // 5 % < 10 %
    brake.observe({ type: 'apply', table: 'people', store: 'target', result: 'failed', count: 20 });
    expect(brake.braked('people')).toBe(true); // 25 / 120 > 10 %
    expect(brake.status('people')?.signal).toBe('error_rate');
  });

  it('ordering rejections (a child before its parent) are no target errors', () => {
    const { brake } = rig();
    for (let i = 0; i < 100; i++) brake.observe({ type: 'read', table: 'people', store: 'target', result: 'ok' });
    brake.observe({ type: 'apply', table: 'people', store: 'target', result: 'failed', count: 50, ordering: true });
    expect(brake.braked('people')).toBe(false);
    expect(brake.status('people')?.window.targetErrorRate).toBe(0);
  });

  it('forgets samples older than the window', () => {
    const { brake, advance } = rig();
    for (let i = 0; i < 90; i++) brake.observe({ type: 'shadow', table: 'people', result: 'mismatch' });
    advance(61_000);
    for (let i = 0; i < 20; i++) brake.observe({ type: 'shadow', table: 'people', result: 'mismatch' });
    expect(brake.braked('people')).toBe(false); // only 20 in the window
    expect(brake.status('people')?.window.shadowSamples).toBe(20);
  });

  it('trips on lag from outbox statistics and is released by an operator', () => {
    const { brake, events } = rig();
    brake.observe({ type: 'outbox.stats', tables: [{ table: 'people', pending: 3, dead: 0, lagSeconds: 121 }] });
    expect(brake.status('people')).toMatchObject({ active: true, signal: 'lag', value: 121, threshold: 120 });
    expect(brake.release('people')).toBe(true);
    expect(brake.braked('people')).toBe(false);
    expect(brake.release('people')).toBe(false);
    expect(events.filter((e) => e.type === 'brake').map((e) => (e as { active: boolean }).active)).toEqual([true, false]);
  });

  it('warns once per window past the warning level', () => {
    const { brake, events } = rig();
    brake.observe({ type: 'outbox.stats', tables: [{ table: 'people', pending: 1, dead: 0, lagSeconds: 31 }] });
    brake.observe({ type: 'outbox.stats', tables: [{ table: 'people', pending: 1, dead: 0, lagSeconds: 40 }] });
    expect(events.filter((e) => e.type === 'brake.warn')).toHaveLength(1);
    expect(brake.braked('people')).toBe(false);
  });

  it('after a cutover, trips on the p99 of writes the target acknowledged, on enough samples, and rolls back when the policy asks', () => {
    const write = (ms: number) => ({ type: 'write' as const, table: 'people', store: 'target' as const, result: 'ok' as const, op: 'insert', durationMs: ms });
    const { brake, events } = rig({ autoRollback: true, targetPrimary: true });
    for (let i = 0; i < 98; i++) brake.observe(write(5));
    for (let i = 0; i < 1; i++) brake.observe(write(4_000));
    expect(brake.braked('people')).toBe(false); // 99 samples < minSamples
    brake.observe(write(5));
    expect(brake.braked('people')).toBe(false); // 1 slow of 100: p99 is 5 ms
    brake.observe(write(3_000));
    expect(brake.status('people')).toMatchObject({ active: true, rollback: true, signal: 'latency', value: 3_000, threshold: 1_000 });
    expect(events.find((e) => e.type === 'brake')).toMatchObject({ active: true, signal: 'latency' });
  });

  it('slow writes on the source (before a cutover) and writes under the threshold never trip the latency signal', () => {
    const { brake, events } = rig({ autoRollback: true });
    for (let i = 0; i < 200; i++) brake.observe({ type: 'write', table: 'people', store: 'source', result: 'ok', op: 'insert', durationMs: 5_000 });
    for (let i = 0; i < 200; i++) brake.observe({ type: 'write', table: 'people', store: 'target', result: 'ok', op: 'insert', durationMs: 700 });
    expect(brake.braked('people')).toBe(false);
    expect(brake.status('people')?.window).toMatchObject({ targetWrites: 200, writeP99Ms: 700 });
    // 700 ms is past the warning level (500 ms): one warning, no trip.
    expect(events.filter((e) => e.type === 'brake.warn').map((e) => (e as { signal: string }).signal)).toEqual(['latency']);
  });
});

describe('isBlankPadded (char(n) semantics)', () => {
  it('is true for fixed-length character types only', async () => {
    const { isBlankPadded } = await import('../../src/policy/column-kind.js');
    for (const t of ['character', 'char', 'char(10)', 'CHARACTER(20)', 'bpchar', 'nchar(3)']) expect(isBlankPadded(t), t).toBe(true);
    for (const t of ['character varying', 'varchar', 'varchar(20)', 'text', 'nvarchar(5)', null, '']) expect(isBlankPadded(t), String(t)).toBe(false);
  });
});
