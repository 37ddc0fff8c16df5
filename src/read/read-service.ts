import type { Knex } from 'knex';
import { bindValue } from '../db/bind-value.js';
import { classifyDbError } from '../db/classify-error.js';
import type { Store } from '../db/store.js';
import { TandemError } from '../errors.js';
import type { Policy } from '../policy/policy.js';
import { formatKey, parseKey, type KeyValues } from '../policy/row-key.js';
import { keyWhere } from '../write/primary-ops.js';
import { toApiRow, type Row } from '../write/image-codec.js';

export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 100;

export interface ReadResult<T> {
  value: T;
  store: 'source' | 'target';
}

export interface ListQuery {
  filters: Record<string, string>;
  limit: number;
  after: string | undefined;
}

/** Reads served by the table's primary (routing to the target comes with read-target). */
export class ReadService {
  constructor(private readonly primary: () => Store) {}

  async getRow(policy: Policy, key: KeyValues): Promise<ReadResult<Row | undefined>> {
    const store = this.primary();
    const row = (await guard(store.knex(policy.sourceTable).select('*').where(keyWhere(policy, key)).first())) as Row | undefined;
    return { value: row ? toApiRow(row) : undefined, store: store.name };
  }

  async listRows(policy: Policy, query: ListQuery): Promise<ReadResult<{ rows: Row[]; next: string | null }>> {
    const store = this.primary();
    let builder = store.knex(policy.sourceTable).select('*');
    for (const [name, text] of Object.entries(query.filters)) {
      builder = builder.where(name, filterValue(policy, name, text, store));
    }
    if (query.after !== undefined) {
      const after = parseKey(policy, query.after, '_after');
      builder = afterKey(builder, policy, after);
    }
    for (const col of policy.primaryKey) builder = builder.orderBy(col, 'asc');
    const rows = (await guard(builder.limit(query.limit))) as Row[];
    const last = rows[rows.length - 1];
    const next = rows.length === query.limit && last ? formatKey(policy.primaryKey.map((c) => last[c])) : null;
    return { value: { rows: rows.map(toApiRow), next }, store: store.name };
  }
}

/** Keyset condition `(k1, k2, …) > (v1, v2, …)` written out so every dialect plans it the same. */
function afterKey(builder: Knex.QueryBuilder, policy: Policy, after: KeyValues): Knex.QueryBuilder {
  const cols = policy.primaryKey;
  return builder.where((outer) => {
    cols.forEach((_, i) => {
      outer.orWhere((inner) => {
        for (let j = 0; j < i; j++) inner.andWhere(cols[j] as string, after[j] as Knex.Value);
        inner.andWhere(cols[i] as string, '>', after[i] as Knex.Value);
      });
    });
  });
}

function filterValue(policy: Policy, name: string, text: string, store: Store): Knex.Value {
  const column = policy.columns.get(name);
  if (!column) throw new TandemError('unknown_column', 400, `${name}: unknown column of table ${policy.name}`, { field: name });
  switch (column.kind) {
    case 'integer':
      if (!/^-?\d{1,20}$/.test(text)) throw new TandemError('invalid_value', 400, `${name}: expected an integer`, { field: name });
      return Number.isSafeInteger(Number(text)) ? Number(text) : text;
    case 'boolean':
      if (!/^(true|false|1|0)$/.test(text)) throw new TandemError('invalid_value', 400, `${name}: expected true or false`, { field: name });
      return bindValue(text === 'true' || text === '1', 'boolean', store.dialect) as Knex.Value;
    case 'json':
    case 'binary':
      throw new TandemError('invalid_value', 400, `${name}: cannot filter on a ${column.kind} column`, { field: name });
    default:
      return bindValue(text, column.kind, store.dialect) as Knex.Value;
  }
}

async function guard<T>(query: Promise<T> | Knex.QueryBuilder): Promise<T> {
  try {
    return (await query) as T;
  } catch (error) {
    if (error instanceof TandemError) throw error;
    const kind = classifyDbError(error);
    if (kind === 'data') throw new TandemError('invalid_value', 400, 'a filter value does not fit its column', { cause: error });
    throw new TandemError(kind === 'timeout' ? 'timeout' : 'primary_unavailable', 503, 'the database could not answer the read', {
      cause: error,
      headers: { 'Retry-After': '1' },
    });
  }
}
