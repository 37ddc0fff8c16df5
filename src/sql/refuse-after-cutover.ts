import type { StatementPlan, WritePlan } from './classify.js';
import type { SqlBackend } from './sql-backend.js';
import { writeForTarget } from './target-write.js';

type Refusal = Extract<StatementPlan, { kind: 'refuse' }>;
type CutoverView = Pick<SqlBackend, 'primaryOf' | 'sourceStale' | 'target' | 'targetDialect' | 'classifier'>;

/** The policy table a statement writes (guarded statements included: they change it too), if any. */
function writtenTable(plan: StatementPlan): string | undefined {
  return plan.kind === 'write' || plan.kind === 'guarded' ? plan.table : undefined;
}

/** Where a write to a table whose primary moved runs: the target (its renamed form), or nowhere. */
export type Placement = { write: WritePlan } | { refuse: Refusal };

/**
 * A write to a policy table whose primary moved to the target at cutover. A PostgreSQL
 * target takes an INSERT/UPDATE/DELETE the policy's renames can be applied to
 * (target-write.ts) when it can run there (`alone`): on its own, or in a transaction opened
 * on the target. A transaction (or query string) running on the source's connection cannot
 * take it: there the rewrite's state-row check would fail it with a cast error that explains
 * nothing. Anything else is refused before it runs, saying why. Undefined: the table's
 * primary is the source.
 */
export function placeAfterCutover(backend: CutoverView, plan: StatementPlan, alone: boolean): Placement | undefined {
  const table = writtenTable(plan);
  if (table === undefined || backend.primaryOf(table) === 'source') return undefined;
  if (!backend.target) return refusal(backend, plan, table, 'the SQL front speaks PostgreSQL and writes only to a PostgreSQL primary');
  if (plan.kind !== 'write') return refusal(backend, plan, table, `the SQL front writes there only INSERT, UPDATE and DELETE (not ${plan.stmtKind.toUpperCase()})`);
  const source = backend.classifier.table(table);
  const form = source ? writeForTarget(plan, source, backend.classifier.targetTable(table)) : { reason: 'its policy is unknown' };
  if ('reason' in form) return refusal(backend, plan, table, `the SQL front cannot write this statement there: ${form.reason}`);
  if (!alone) {
    return refusal(backend, plan, table, 'the SQL front runs a transaction (or a query string of several statements) on one server, here the source: send this write on its own, or as the first statement of its transaction');
  }
  return { write: form };
}

/** placeAfterCutover's refusal alone (where a statement cannot run on the target in any case). */
export function refuseWriteAfterCutover(backend: CutoverView, plan: StatementPlan): Refusal | undefined {
  const placed = placeAfterCutover(backend, plan, false);
  return placed && 'refuse' in placed ? placed.refuse : undefined;
}

function refusal(backend: CutoverView, plan: StatementPlan, table: string, why: string): { refuse: Refusal } {
  return {
    refuse: {
      kind: 'refuse',
      stmtKind: plan.stmtKind,
      table,
      reason: 'target_primary',
      message: `${table} is not writable through the SQL front here: its primary moved to the target (${backend.targetDialect}) at cutover and ${why}; write it through the HTTP API (/v1/tables/${table}/rows) or roll the cutover back`,
    },
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
