import type { Knex } from 'knex';
import type { ClassifiedQuery, SqlTable, StatementPlan } from './classify.js';
import { translateRead, type TranslatedRead } from './knex-read.js';
import { BodyReader, bindComplete, commandComplete, dataRow, int16, message, parseComplete, readyForQuery, rowDescription } from './protocol.js';

/** A prepared statement as a batch uses it: the session's, or one a Parse of the batch creates. */
export interface BatchStatement {
  plan: StatementPlan;
  fingerprint: string;
  /** Parameter type OIDs the Parse declared (0: unknown). */
  types: readonly number[];
}

/** A batch a target of another engine answers, planned before anything runs. */
export interface OtherEngineBatch {
  /** The statements its Parses create, for the session to keep once this answer is the one sent. */
  parsed: Array<{ name: string; sql: string; types: number[] }>;
  /** The statement each Execute runs (each is reported as a statement served by the target). */
  executed: BatchStatement[];
  /** Runs the reads on the target: the client's answers up to ReadyForQuery, or why the source answers instead. */
  run(knex: Knex): Promise<Buffer[] | { reason: string }>;
}

interface Deps {
  table: SqlTable;
  target: { dialect: string; translatesReads: boolean };
  classifier: { classify(sql: string): ClassifiedQuery };
  /** The session's statement by name ('' the unnamed one). */
  statement(name: string): BatchStatement | undefined;
}

type Step = Buffer | { read: TranslatedRead; maxRows: number };

/**
 * Plans an extended-protocol read batch (Parse/Bind/Describe/Execute up to Sync, one table)
 * for a target of another engine: each Bind's text parameters substituted in the translated
 * subset (knex-read.ts), and the answers PostgreSQL would give in protocol order. Whatever the
 * plan cannot answer exactly as PostgreSQL would (binary formats, an error PostgreSQL would
 * raise, a portal that would be suspended) answers the reason the batch runs on the source.
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
export function planOtherEngineBatch(batch: ReadonlyArray<{ type: string; body: Buffer }>, deps: Deps): OtherEngineBatch | { reason: string } {
  const parsed: OtherEngineBatch['parsed'] = [];
  const executed: BatchStatement[] = [];
  const local = new Map<string, BatchStatement>();
  const portals = new Map<string, { stmt: BatchStatement; read: TranslatedRead; done: boolean }>();
  const steps: Step[] = [];
  const statement = (name: string) => local.get(name) ?? deps.statement(name);
  try {
    for (const m of batch) {
      const r = new BodyReader(m.body);
      if (m.type === 'P') {
        const name = r.cstring();
        const sql = r.cstring();
        const types = Array.from({ length: r.int16() }, () => r.int32());
        // Only the unnamed statement is replaced by a Parse; PostgreSQL refuses a named one that exists.
        if (name !== '' && statement(name)) return { reason: 'a prepared statement name in use' };
        const classified = deps.classifier.classify(sql);
        const [plan] = classified.statements;
        if (!plan) return { reason: 'an empty statement' };
        local.set(name, { plan, fingerprint: classified.fingerprint, types });
        parsed.push({ name, sql, types });
        steps.push(parseComplete());
      } else if (m.type === 'B') {
        const bind = readBind(r);
        if ('reason' in bind) return bind;
        const stmt = statement(bind.statement);
        if (!stmt) return { reason: 'an unknown prepared statement' };
        const read = translate(stmt, deps, bind.values);
        if ('reason' in read) return read;
        if (bind.values.length !== read.paramTypes.length) return { reason: 'a Bind with the wrong number of parameters' };
        portals.set(bind.portal, { stmt, read, done: false });
        steps.push(bindComplete());
      } else if (m.type === 'D') {
        const kind = r.byte();
        const name = r.cstring();
        const described = kind === 'S' ? describeStatement(statement(name), deps) : kind === 'P' ? portals.get(name)?.read.fields : undefined;
        if (!described || 'reason' in described) return described ?? { reason: 'an unknown portal' };
        steps.push(...(Array.isArray(described) ? [rowDescription(described)] : described.messages));
      } else if (m.type === 'E') {
        const portal = portals.get(r.cstring());
        if (!portal || portal.done) return { reason: 'an unknown or finished portal' };
        portal.done = true;
        executed.push(portal.stmt);
        steps.push({ read: portal.read, maxRows: r.int32() });
      } else return { reason: `message ${m.type} in a read batch` };
    }
  } catch {
    // A malformed message or statement: the source answers it with PostgreSQL's own error.
    return { reason: 'a message the target path cannot read' };
  }
  return {
    parsed,
    executed,
    async run(knex) {
      const answers: Buffer[] = [];
      for (const step of steps) {
        if (Buffer.isBuffer(step)) {
          answers.push(step);
          continue;
        }
        const rows = await step.read.run(knex);
        // PostgreSQL suspends a portal that reaches max-rows (PortalSuspended): out of scope here.
        if (step.maxRows > 0 && rows.length >= step.maxRows) return { reason: 'an Execute with a row limit' };
        for (const row of rows) answers.push(dataRow(row));
        answers.push(commandComplete(`SELECT ${rows.length}`));
      }
      answers.push(readyForQuery('I'));
      return answers;
    },
  };
}

/**
 * The statement's read in the translated subset, with these parameter values (undefined: only
 * described), and the type of each of its parameters: declared, or as PostgreSQL infers it.
 */
function translate(stmt: BatchStatement, deps: Deps, values?: ReadonlyArray<string | null>): TranslatedRead | { reason: string } {
  const plan = stmt.plan;
  if (plan.kind !== 'read' || plan.stmtKind !== 'select' || plan.table !== deps.table.name) return { reason: 'not a read of the table' };
  if (plan.routable !== undefined) return { reason: plan.routable };
  const read = translateRead(plan.select, deps.table, deps.target, { types: stmt.types, ...(values ? { values } : {}) });
  if ('reason' in read) return read;
  const paramTypes = Array.from({ length: Math.max(stmt.types.length, read.paramTypes.length) }, (_, i) => stmt.types[i] || read.paramTypes[i] || 0);
  // A parameter neither declared nor used: PostgreSQL refuses the Parse ("could not determine data type").
  return paramTypes.includes(0) ? { reason: 'a parameter whose type PostgreSQL would not know' } : { ...read, paramTypes };
}

/** Describe of a statement: ParameterDescription, then RowDescription. */
function describeStatement(stmt: BatchStatement | undefined, deps: Deps): { messages: Buffer[] } | { reason: string } {
  if (!stmt) return { reason: 'an unknown prepared statement' };
  const read = translate(stmt, deps);
  if ('reason' in read) return read;
  return { messages: [message('t', int16(read.paramTypes.length), ...read.paramTypes), rowDescription(read.fields)] };
}

/** A Bind's portal, statement and parameters in text form; binary parameters or results stay on the source. */
export function readBind(r: BodyReader): { portal: string; statement: string; values: Array<string | null> } | { reason: string } {
  const portal = r.cstring();
  const statement = r.cstring();
  const formats = Array.from({ length: r.int16() }, () => r.int16());
  const raw = Array.from({ length: r.int16() }, () => {
    const length = r.int32();
    return length < 0 ? null : r.bytes(length);
  });
  const results = Array.from({ length: r.int16() }, () => r.int16());
  if (formats.length > 1 && formats.length !== raw.length) return { reason: 'a Bind with the wrong number of parameter formats' };
  if (formats.some((f) => f !== 0) || results.some((f) => f !== 0)) return { reason: 'binary format' };
  const values = raw.map((b) => (b === null ? null : b.toString('utf8')));
  // PostgreSQL refuses bytes that are not UTF-8 (the client encoding); toString would have replaced them.
  if (values.some((v, i) => v !== null && !Buffer.from(v, 'utf8').equals(raw[i] as Buffer))) return { reason: 'a parameter that is not UTF-8' };
  return { portal, statement, values };
}
