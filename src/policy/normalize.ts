import { canonicalNumber } from '../shared/canonical-number.js';
import type { ColumnKind } from '../shared/column-kind.js';
import { isBlankPadded } from './column-kind.js';
import type { Policy } from './policy.js';

/** How values are made comparable across engines (policy `compare`). */
export interface CompareSettings {
  timestampPrecision: 's' | 'ms' | 'us';
  floatTolerance: number;
  caseInsensitive: ReadonlySet<string>;
  ignore: ReadonlySet<string>;
}

const settingsOf = new WeakMap<Policy, CompareSettings>();

/** A policy's compare settings, built once per policy (every shadow read asks). */
export function compareSettings(policy: Policy): CompareSettings {
  let settings = settingsOf.get(policy);
  if (!settings) {
    const c = policy.file.compare;
    settings = {
      timestampPrecision: c.timestampPrecision,
      floatTolerance: c.floatTolerance,
      caseInsensitive: new Set(c.caseInsensitive),
      ignore: new Set(c.ignore),
    };
    settingsOf.set(policy, settings);
  }
  return settings;
}

const NUMERIC = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

/**
 * The canonical text of one value, given the column's kind on each side, so equal data
 * from PostgreSQL, MariaDB and SQLite compares equal while real differences (NULL vs '',
 * a changed digit, trailing spaces) stay different. Floats come back as numbers and are
 * compared with a tolerance by {@link valuesEqual}.
 */
export function canonical(value: unknown, kind: ColumnKind, other: ColumnKind | null, settings: CompareSettings, column: string): unknown {
  return canonicalizer(kind, other, settings, column)(value);
}

type Canonicalizer = (value: unknown) => unknown;
const canonicalizers = new WeakMap<CompareSettings, Map<string, Canonicalizer>>();
const PLAIN_INTEGER = /^-?[1-9]\d*$/;

/**
 * The canonical function of one column and side, built once per compare settings: verify
 * and shadow reads canonicalise every value, and deciding per value what the column is
 * showed in verify's profile.
 */
export function canonicalizer(kind: ColumnKind, other: ColumnKind | null, settings: CompareSettings, column: string): Canonicalizer {
  let cache = canonicalizers.get(settings);
  if (!cache) {
    cache = new Map();
    canonicalizers.set(settings, cache);
  }
  const cacheKey = `${kind}\u0000${other ?? ''}\u0000${column}`;
  let fn = cache.get(cacheKey);
  if (!fn) {
    fn = buildCanonicalizer(kind, other, settings, column);
    cache.set(cacheKey, fn);
  }
  return fn;
}

function buildCanonicalizer(kind: ColumnKind, other: ColumnKind | null, settings: CompareSettings, column: string): Canonicalizer {
  const kinds = new Set([kind, other ?? kind]);
  const general: Canonicalizer = (value) => canonicalValue(value, kinds, settings, column);
  if (kinds.has('datetime')) {
    const precision = settings.timestampPrecision;
    return (value) => (value === null || value === undefined ? null : canonicalTimestamp(value, precision));
  }
  const numeric = kinds.has('integer') || kinds.has('decimal');
  if (numeric && !kinds.has('date') && !kinds.has('json') && !kinds.has('binary') && !kinds.has('boolean') && !kinds.has('float')) {
    // Fast paths for what drivers hand back most: safe integers and plain integer text.
    return (value) => {
      if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
      if (typeof value === 'string' && (value === '0' || PLAIN_INTEGER.test(value))) return value;
      return general(value);
    };
  }
  return general;
}

function canonicalValue(value: unknown, kinds: ReadonlySet<ColumnKind>, settings: CompareSettings, column: string): unknown {
  if (value === null || value === undefined) return null;
  if (kinds.has('datetime')) return canonicalTimestamp(value, settings.timestampPrecision);
  if (kinds.has('date')) return canonicalDate(value);
  if (kinds.has('json')) return canonicalJson(value);
  if (kinds.has('binary')) return Buffer.isBuffer(value) ? `b64:${value.toString('base64')}` : `b64:${Buffer.from(String(value)).toString('base64')}`;
  if (kinds.has('boolean')) {
    if (typeof value === 'boolean') return value ? '1' : '0';
    if (value === 1 || value === '1' || value === 1n) return '1';
    if (value === 0 || value === '0' || value === 0n) return '0';
  }
  if (kinds.has('float')) {
    const n = typeof value === 'number' ? value : Number(value);
    return Number.isFinite(n) ? n : String(value);
  }
  if (kinds.has('integer') || kinds.has('decimal')) {
    if (typeof value === 'number' || typeof value === 'bigint') return canonicalNumber(String(value));
    if (typeof value === 'string' && NUMERIC.test(value.trim())) return canonicalNumber(value.trim());
    if (typeof value === 'boolean') return value ? '1' : '0';
  }
  if (Buffer.isBuffer(value)) return `b64:${value.toString('base64')}`;
  if (value instanceof Date) return canonicalTimestamp(value, settings.timestampPrecision);
  if (typeof value === 'object') return canonicalJson(value);
  const text = String(value);
  return settings.caseInsensitive.has(column) ? text.toLowerCase() : text;
}


/** UTC ISO-8601 cut to the precision; naive timestamps (no zone) are taken as UTC. */
export function canonicalTimestamp(value: unknown, precision: 's' | 'ms' | 'us'): string {
  let iso: string;
  let micros = '';
  if (value instanceof Date) {
    iso = value.toISOString();
  } else {
    const text = String(value).trim();
    const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i.exec(text);
    if (!m) {
      const date = new Date(text);
      if (Number.isNaN(date.getTime())) return text;
      iso = date.toISOString();
    } else {
      const [, day, time, fraction = '', zone] = m;
      const seconds = (time as string).length === 5 ? `${time}:00` : time;
      const zoneText = !zone || zone.toUpperCase() === 'Z' ? 'Z' : normalizeZone(zone);
      const date = new Date(`${day}T${seconds}.${(fraction + '000').slice(0, 3)}${zoneText}`);
      if (Number.isNaN(date.getTime())) return text;
      iso = date.toISOString();
      micros = (fraction + '000000').slice(3, 6);
    }
  }
  // ISO text is 24 characters (YYYY-MM-DDTHH:MM:SS.mmmZ) for years 0000-9999.
  if (precision === 's') return `${iso.slice(0, 19)}Z`;
  if (precision === 'ms') return iso;
  return `${iso.slice(0, 23)}${micros || '000'}Z`;
}

function normalizeZone(zone: string): string {
  const m = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone);
  return m ? `${m[1]}${m[2]}:${m[3] ?? '00'}` : zone;
}

function canonicalDate(value: unknown): string {
  if (value instanceof Date) return value.toISOString().slice(0, 10);
  const text = String(value).trim();
  const m = /^(\d{4}-\d{2}-\d{2})/.exec(text);
  return m ? (m[1] as string) : text;
}

/** JSON with sorted keys; JSON text is parsed first so `{"a":1}` equals `{ "a": 1 }`. */
export function canonicalJson(value: unknown): string {
  let parsed = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch {
      return value;
    }
  }
  return JSON.stringify(sortKeys(parsed));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

export function valuesEqual(a: unknown, b: unknown, tolerance: number): boolean {
  if (typeof a === 'number' && typeof b === 'number') {
    return Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(a), Math.abs(b));
  }
  return a === b;
}

/**
 * Compares a source row with a target row already mapped back to source names. Returns the
 * source column names whose values differ (excluded and ignored columns are not compared).
 */
export function diffRows(policy: Policy, settings: CompareSettings, source: Record<string, unknown>, target: Record<string, unknown>): string[] {
  const differing: string[] = [];
  for (const column of comparePlan(policy, settings)) {
    if (!column.equal(source[column.name], target[column.name])) differing.push(column.name);
  }
  return differing;
}

/** One compared column: its name and whether a source value and a target value are the same data. */
interface ComparedColumn {
  readonly name: string;
  readonly equal: (source: unknown, target: unknown) => boolean;
}

const plans = new WeakMap<CompareSettings, WeakMap<Policy, readonly ComparedColumn[]>>();

/**
 * The compared columns of a policy with their comparison built once: verify compares every
 * row and shadow reads every served row, and looking up each value's canonical function
 * (a cache key per value) and re-testing each type for blank padding showed in verify's
 * profile of a 20-column table.
 */
function comparePlan(policy: Policy, settings: CompareSettings): readonly ComparedColumn[] {
  let byPolicy = plans.get(settings);
  if (!byPolicy) {
    byPolicy = new WeakMap();
    plans.set(settings, byPolicy);
  }
  let plan = byPolicy.get(policy);
  if (!plan) {
    plan = [...policy.columns.values()]
      .filter((column) => column.targetName !== null && !settings.ignore.has(column.name))
      .map((column) => ({ name: column.name, equal: columnEquality(column.name, column.kind, column.targetKind, column.type, column.targetType, settings) }));
    byPolicy.set(policy, plan);
  }
  return plan;
}

function columnEquality(
  name: string,
  kind: ColumnKind,
  targetKind: ColumnKind | null,
  type: string,
  targetType: string | null | undefined,
  settings: CompareSettings,
): (source: unknown, target: unknown) => boolean {
  const ofSource = canonicalizer(kind, targetKind, settings, name);
  const ofTarget = canonicalizer(targetKind ?? kind, kind, settings, name);
  const padded = isBlankPadded(type) || isBlankPadded(targetType);
  const tolerance = settings.floatTolerance;
  return (x, y) => {
    // Identical driver values have identical canonical forms (same primitive, same instant,
    // same bytes): no need to canonicalise them.
    if (x === y) return true;
    if (x instanceof Date && y instanceof Date && x.getTime() === y.getTime()) return true;
    if (Buffer.isBuffer(x) && Buffer.isBuffer(y) && x.equals(y)) return true;
    let a = ofSource(x);
    let b = ofTarget(y);
    if (padded && typeof a === 'string' && typeof b === 'string' && a !== b) {
      a = a.replace(/ +$/, '');
      b = b.replace(/ +$/, '');
    }
    return valuesEqual(a, b, tolerance);
  };
}
