import type { StatementKind, StatementPlan } from './classify.js';
import type { SqlBackend } from './sql-backend.js';

type Refusal = Extract<StatementPlan, { kind: 'refuse' }>;

/** The policy table a statement writes (guarded statements included: they change it too), if any. */
export function writtenTable(plan: StatementPlan): string | undefined {
  return plan.kind === 'write' || plan.kind === 'guarded' ? plan.table : undefined;
}

/**
 * A write to a policy table whose primary moved to the target at cutover, refused before it
 * runs. The SQL front's connections and rewrite point at the source, now the secondary,
 * where the rewrite's state-row check would fail it with a cast error that explains nothing
 * (and a guarded statement there would break the reverse replication).
 */
export function refuseAfterCutover(backend: Pick<SqlBackend, 'primaryOf' | 'target' | 'targetDialect'>, table: string, stmtKind: StatementKind): Refusal | undefined {
  if (backend.primaryOf(table) === 'source') return undefined;
  const why = backend.target
    ? 'the SQL front does not route writes to the target yet'
    : 'the SQL front speaks PostgreSQL and writes only to a PostgreSQL primary';
  return {
    kind: 'refuse',
    stmtKind,
    table,
    reason: 'target_primary',
    message: `${table} is not writable through the SQL front: its primary moved to the target (${backend.targetDialect}) at cutover and ${why}; write it through the HTTP API (/v1/tables/${table}/rows) or roll the cutover back`,
  };
}
