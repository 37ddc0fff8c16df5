import type { Knex } from 'knex';
import type { Store } from '../db/store.js';
import { TandemError } from '../errors.js';
import type { TableRoute } from '../policy/table-route.js';
import type { KeyValues, Row } from '../shared/row.js';

/** The primary's view of one change: the after-image, or a tombstone for a delete. */
export interface PrimaryChange {
  status: 200 | 201 | 204;
  key: KeyValues;
  /** Full row as stored; undefined for deletes. */
  row: Row | undefined;
}

/** API-shaped values → values bound for the primary's engine. */
export function bindRow(primary: Store, route: TableRoute, values: Row): Row {
  const out: Row = {};
  for (const [name, value] of Object.entries(values)) out[name] = primary.adapter.bind(value, route.primary.kinds.get(name) ?? null);
  return out;
}

export function keyWhere(route: TableRoute, key: KeyValues): Row {
  const where: Row = {};
  route.primary.key.forEach((col, i) => {
    where[col] = key[i];
  });
  return where;
}

/**
 * The key as the primary stores it. Versions are per stored key: a URL may spell the same
 * row differently (case under a case-insensitive collation, a UUID's case, a date's form).
 */
export function storedKey(route: TableRoute, row: Row): KeyValues {
  return route.primary.key.map((c) => row[c]);
}

export function notFound(route: TableRoute, field: string): TandemError {
  return new TandemError('not_found', 404, `${field}: no row with this key in ${route.policy.name}`, { field });
}

/** INSERT and the row as stored (RETURNING, or a locked re-read: the primary's adapter decides). */
export async function insertRow(trx: Knex.Transaction, primary: Store, route: TableRoute, values: Row, field: string): Promise<PrimaryChange> {
  const row = await primary.adapter.insertReturning(trx, route.primary, bindRow(primary, route, values));
  if (!row) {
    const key = route.primary.key;
    const missing = key.find((c) => values[c] === undefined || values[c] === null) ?? key[0];
    throw new TandemError('invalid_value', 400, `${field}.${missing}: required (the key is not generated)`, { field: `${field}.${missing}` });
  }
  return { status: 201, key: storedKey(route, row), row };
}

/** UPDATE by key; 404 when the key does not exist. Key columns cannot change. */
export async function updateRow(
  trx: Knex.Transaction,
  primary: Store,
  route: TableRoute,
  key: KeyValues,
  values: Row,
  field: string,
  keyField: string,
): Promise<PrimaryChange> {
  const set = bindRow(primary, route, updateChanges(route, key, values, field));
  const row = await primary.adapter.updateReturning(trx, route.primary, keyWhere(route, key), set);
  if (!row) throw notFound(route, keyField);
  return { status: 200, key: storedKey(route, row), row };
}

/** Insert or update by key (PUT). The key comes from the URL; values may repeat it. */
export async function upsertRow(trx: Knex.Transaction, primary: Store, route: TableRoute, key: KeyValues, values: Row, field: string): Promise<PrimaryChange> {
  const changes = withoutKey(route, key, values, field);
  const existing = await primary.adapter.lockRow(trx, route.primary, keyWhere(route, key));
  if (!existing) {
    const change = await insertRow(trx, primary, route, { ...changes, ...keyWhere(route, key) }, field);
    return { ...change, status: 201 };
  }
  if (Object.keys(changes).length === 0) return { status: 200, key: storedKey(route, existing), row: existing };
  const change = await updateRow(trx, primary, route, key, changes, field, 'key');
  return { ...change, status: 200 };
}

/** DELETE by key; 404 when absent. */
export async function deleteRow(trx: Knex.Transaction, primary: Store, route: TableRoute, key: KeyValues, keyField: string): Promise<PrimaryChange> {
  const gone = await primary.adapter.deleteReturning(trx, route.primary, keyWhere(route, key));
  if (!gone) throw notFound(route, keyField);
  return { status: 204, key: storedKey(route, gone), row: undefined };
}

/** The columns an update changes: never a key column, and at least one (400 otherwise). */
export function updateChanges(route: TableRoute, key: KeyValues, values: Row, field: string): Row {
  const changes = withoutKey(route, key, values, field);
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

function withoutKey(route: TableRoute, key: KeyValues, values: Row, field: string): Row {
  const out: Row = {};
  for (const [name, value] of Object.entries(values)) {
    const index = route.primary.key.indexOf(name);
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
