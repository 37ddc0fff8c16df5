import type { Knex } from 'knex';
import { bindValue } from '../db/bind-value.js';
import type { Dialect } from '../db/store.js';
import { TandemError } from '../errors.js';
import type { Policy } from '../policy/policy.js';
import type { KeyValues } from '../policy/row-key.js';
import type { Row } from './image-codec.js';

/** The primary's view of one change: the after-image, or a tombstone for a delete. */
export interface PrimaryChange {
  status: 200 | 201 | 204;
  key: KeyValues;
  /** Full row as stored; undefined for deletes. */
  row: Row | undefined;
}

/** Source-shaped values → values bound for the primary's dialect. */
export function bindRow(policy: Policy, values: Row, dialect: Dialect): Row {
  const out: Row = {};
  for (const [name, value] of Object.entries(values)) out[name] = bindValue(value, policy.columns.get(name)?.kind ?? null, dialect);
  return out;
}

export function keyWhere(policy: Policy, key: KeyValues, columns: readonly string[] = policy.primaryKey): Row {
  const where: Row = {};
  columns.forEach((col, i) => {
    where[col] = key[i];
  });
  return where;
}

function lockRow(trx: Knex.Transaction, dialect: Dialect, policy: Policy, key: KeyValues) {
  const query = trx(policy.sourceTable).select('*').where(keyWhere(policy, key)).first();
  return dialect === 'sqlite' ? query : query.forUpdate();
}

/**
 * The key as the primary stores it. Versions are per stored key: a URL may spell the same
 * row differently (case under a case-insensitive collation, a UUID's case, a date's form).
 */
export function storedKey(policy: Policy, row: Row): KeyValues {
  return policy.primaryKey.map((c) => row[c]);
}

export function notFound(policy: Policy, field: string): TandemError {
  return new TandemError('not_found', 404, `${field}: no row with this key in ${policy.name}`, { field });
}

/** INSERT; the after-image comes from RETURNING, or on MySQL from a locked re-read. */
export async function insertRow(
  trx: Knex.Transaction,
  dialect: Dialect,
  policy: Policy,
  values: Row,
  field: string,
): Promise<PrimaryChange> {
  const bound = bindRow(policy, values, dialect);
  if (dialect !== 'mysql') {
    const [row] = (await trx(policy.sourceTable).insert(bound).returning('*')) as Row[];
    if (!row) throw new TandemError('internal', 500, 'insert returned no row');
    return { status: 201, key: policy.primaryKey.map((c) => row[c]), row };
  }
  const result = (await trx(policy.sourceTable).insert(bound)) as number[];
  let key: KeyValues;
  if (policy.primaryKey.every((c) => values[c] !== undefined && values[c] !== null)) {
    key = policy.primaryKey.map((c) => values[c]);
  } else if (policy.primaryKey.length === 1 && result[0]) {
    key = [result[0]];
  } else {
    const missing = policy.primaryKey.find((c) => values[c] === undefined) ?? policy.primaryKey[0];
    throw new TandemError('invalid_value', 400, `${field}.${missing}: required (the key is not generated)`, {
      field: `${field}.${missing}`,
    });
  }
  const row = (await lockRow(trx, dialect, policy, key)) as Row | undefined;
  if (!row) throw new TandemError('internal', 500, 'inserted row not found on re-read');
  return { status: 201, key: policy.primaryKey.map((c) => row[c]), row };
}

/** UPDATE by key; 404 when the key does not exist. Key columns cannot change. */
export async function updateRow(
  trx: Knex.Transaction,
  dialect: Dialect,
  policy: Policy,
  key: KeyValues,
  values: Row,
  field: string,
  keyField: string,
): Promise<PrimaryChange> {
  const bound = bindRow(policy, updateChanges(policy, key, values, field), dialect);
  if (dialect !== 'mysql') {
    const [row] = (await trx(policy.sourceTable).where(keyWhere(policy, key)).update(bound).returning('*')) as Row[];
    if (!row) throw notFound(policy, keyField);
    return { status: 200, key: storedKey(policy, row), row };
  }
  const before = await lockRow(trx, dialect, policy, key);
  if (!before) throw notFound(policy, keyField);
  await trx(policy.sourceTable).where(keyWhere(policy, key)).update(bound);
  const row = (await lockRow(trx, dialect, policy, key)) as Row;
  return { status: 200, key: storedKey(policy, row), row };
}

/** Insert or update by key (PUT). The key comes from the URL; values may repeat it. */
export async function upsertRow(
  trx: Knex.Transaction,
  dialect: Dialect,
  policy: Policy,
  key: KeyValues,
  values: Row,
  field: string,
): Promise<PrimaryChange> {
  const changes = withoutKey(policy, key, values, field);
  const existing = (await lockRow(trx, dialect, policy, key)) as Row | undefined;
  if (!existing) {
    const change = await insertRow(trx, dialect, policy, { ...changes, ...keyWhere(policy, key) }, field);
    return { ...change, status: 201 };
  }
  if (Object.keys(changes).length === 0) return { status: 200, key: storedKey(policy, existing), row: existing };
  const change = await updateRow(trx, dialect, policy, key, changes, field, 'key');
  return { ...change, status: 200 };
}

/** DELETE by key; 404 when absent. */
export async function deleteRow(
  trx: Knex.Transaction,
  dialect: Dialect,
  policy: Policy,
  key: KeyValues,
  keyField: string,
): Promise<PrimaryChange> {
  if (dialect === 'pg') {
    const rows = (await trx(policy.sourceTable).where(keyWhere(policy, key)).del().returning([...policy.primaryKey])) as Row[];
    const [gone] = rows;
    if (!gone) throw notFound(policy, keyField);
    return { status: 204, key: storedKey(policy, gone), row: undefined };
  }
  // SQLite (no RETURNING on deletes in knex) and MySQL: read the stored key, then delete.
  const before = (await lockRow(trx, dialect, policy, key)) as Row | undefined;
  if (!before) throw notFound(policy, keyField);
  await trx(policy.sourceTable).where(keyWhere(policy, key)).del();
  return { status: 204, key: storedKey(policy, before), row: undefined };
}

/** The columns an update changes: never a key column, and at least one (400 otherwise). */
export function updateChanges(policy: Policy, key: KeyValues, values: Row, field: string): Row {
  const changes = withoutKey(policy, key, values, field);
  if (Object.keys(changes).length === 0) {
    throw new TandemError('bad_request', 400, `${field}: name at least one column to change`, { field });
  }
  return changes;
}

/** 503 while a table switches its primary (its state row says it is not the primary here). */
export function tableFrozen(table: string): TandemError {
  return new TandemError('table_frozen', 503, `table ${table} is switching its primary; retry shortly`, {
    headers: { 'Retry-After': '1' },
  });
}

function withoutKey(policy: Policy, key: KeyValues, values: Row, field: string): Row {
  const out: Row = {};
  for (const [name, value] of Object.entries(values)) {
    const index = policy.primaryKey.indexOf(name);
    if (index === -1) {
      out[name] = value;
      continue;
    }
    if (String(value) !== String(key[index])) {
      throw new TandemError('invalid_value', 400, `${field}.${name}: primary-key columns cannot be changed`, {
        field: `${field}.${name}`,
      });
    }
  }
  return out;
}
