import type { StatementPlan } from './classify.js';
import type { SqlBackend } from './sql-backend.js';

type Refusal = Extract<StatementPlan, { kind: 'refuse' }>;
type CutoverView = Pick<SqlBackend, 'primaryOf' | 'sourceStale' | 'target' | 'targetDialect'>;

/** The policy table a statement writes (guarded statements included: they change it too), if any. */
function writtenTable(plan: StatementPlan): string | undefined {
  return plan.kind === 'write' || plan.kind === 'guarded' ? plan.table : undefined;
}

/**
 * A write to a policy table whose primary moved to the target at cutover, refused before it
 * runs. The SQL front's connections and rewrite point at the source, now the secondary,
 * where the rewrite's state-row check would fail it with a cast error that explains nothing
 * (and a guarded statement there would break the reverse replication).
 */
export function refuseWriteAfterCutover(backend: CutoverView, plan: StatementPlan): Refusal | undefined {
  const table = writtenTable(plan);
  if (table === undefined || backend.primaryOf(table) === 'source') return undefined;
  const why = backend.target
    ? 'the SQL front does not route writes to the target yet'
    : 'the SQL front speaks PostgreSQL and writes only to a PostgreSQL primary';
  return {
    kind: 'refuse',
    stmtKind: plan.stmtKind,
    table,
    reason: 'target_primary',
    message: `${table} is not writable through the SQL front: its primary moved to the target (${backend.targetDialect}) at cutover and ${why}; write it through the HTTP API (/v1/tables/${table}/rows) or roll the cutover back`,
  };
}

/**
 * A statement about to read, on the source, a table whose primary is the target while the
 * source is stale (retired, or not resynced since): it misses the target's writes, so
 * answering (or writing another table from it) would be wrong without saying so. A source
 * kept current by reverse replication serves it (behind by the reverse lag).
 */
export function refuseStaleRead(backend: CutoverView, plan: StatementPlan): Refusal | undefined {
  if (plan.kind !== 'read' && plan.kind !== 'write') return undefined;
  const table = plan.tables.find((t) => backend.sourceStale(t));
  if (table === undefined) return undefined;
  return {
    kind: 'refuse',
    stmtKind: plan.stmtKind,
    table,
    reason: 'source_stale',
    message: `${table} cannot be read here: its primary moved to the target (${backend.targetDialect}) at cutover and the source, where the SQL front would run this read, is stale (retire-source: it misses the target's writes); read it through the HTTP API (/v1/tables/${table}/rows), or as a single-table SELECT outside a transaction that the target can answer`,
  };
}
