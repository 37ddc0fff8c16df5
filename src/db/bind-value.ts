import type { ColumnKind } from '../shared/column-kind.js';
import type { Dialect } from './dialects/dialect.js';
import { makeAdapter } from './dialects/index.js';

const ADAPTERS = new Map<Dialect, ReturnType<typeof makeAdapter>>();

/**
 * Turns a JSON-ish value into what the engine's driver binds correctly for a column of
 * this kind (the engine's adapter decides; src/db/dialects/common.ts bindWith). Every value
 * still travels as a bound parameter; this only fixes its JS type.
 */
export function bindValue(value: unknown, kind: ColumnKind | null, dialect: Dialect): unknown {
  let adapter = ADAPTERS.get(dialect);
  if (!adapter) {
    adapter = makeAdapter(dialect);
    ADAPTERS.set(dialect, adapter);
  }
  return adapter.bind(value, kind);
}
