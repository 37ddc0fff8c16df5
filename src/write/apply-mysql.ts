import type { Knex } from 'knex';
import { APPLIED_TABLE } from '../db/internal-tables.js';
import { destroyConnection, type Store } from '../db/store.js';
import { withDeadlineConnection } from '../db/with-deadline.js';
import type { Policy } from '../policy/policy.js';
import type { Row } from './image-codec.js';
import { planSlice, splitByPresence, targetKey, whereKeys } from './apply-plan.js';
import type { OutboxEntry } from './outbox/outbox-entry.js';

interface Statement {
  sql: string;
  bindings: readonly unknown[];
}

/** One table's distinct keys, in sorted order (at most one slice of SLICE keys). */
export interface MysqlSlice {
  policy: Policy;
  entries: readonly OutboxEntry[];
}

/**
 * The versioned apply of DESIGN §3.4 on a MySQL/MariaDB secondary in two round trips
 * instead of seven: the same statements as the other dialects' path, sent as two
 * multi-statement queries on one connection.
 *
 *   1. START TRANSACTION; per slice: create-or-lock the keys' ledger rows, read their
 *      versions, lock the target rows that exist.
 *   2. per slice: delete tombstones, insert new keys, update existing ones, record the
 *      versions; COMMIT.
 *
 * Between them, the versions decide in JS which images are newer. Every value is a bound
 * parameter (mysql2 formats them into the text client-side, as for every knex query). A
 * failure rolls the transaction back; if that fails too, the connection is destroyed.
 */
export async function applyMysqlSlices(
  secondary: Store,
  slices: readonly MysqlSlice[],
  deadlineMs: number,
): Promise<Array<{ applied: number; skipped: number }>> {
  const { knex } = secondary;
  return withDeadlineConnection(secondary, deadlineMs, async (connection) => {
    const run = async (statements: readonly Statement[]): Promise<unknown[]> => {
      const [results] = (await knex
        .raw(statements.map((s) => s.sql).join(';\n'), statements.flatMap((s) => [...s.bindings]) as Knex.ValueDict[])
        .connection(connection as never)) as unknown as [unknown];
      // One statement answers with its result; several with an array of results.
      return statements.length === 1 ? [results] : (results as unknown[]);
    };
    try {
      const first: Statement[] = [{ sql: 'START TRANSACTION', bindings: [] }];
      const now = Date.now();
      for (const { policy, entries } of slices) {
        const keys = entries.map((e) => e.rowKey);
        first.push({
          sql: `INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES ${keys.map(() => '(?, ?, -1, -1, ?)').join(', ')} ON DUPLICATE KEY UPDATE epoch = epoch`,
          bindings: keys.flatMap((k) => [policy.name, k, now]),
        });
        first.push(native(knex(APPLIED_TABLE).select('row_key', 'epoch', 'seq').where('tbl', policy.name).whereIn('row_key', keys).forUpdate()));
        const targetKeys = entries.map((e) => targetKey('mysql', policy, e.rowKey));
        first.push(native(whereKeys(knex(policy.targetTable).select([...policy.targetPrimaryKey]), policy.targetPrimaryKey, targetKeys).forUpdate()));
      }
      const results = await run(first);

      const second: Statement[] = [];
      const counts = slices.map(({ policy, entries }, i) => {
        const ledgerRows = results[1 + i * 3 + 1] as Array<{ row_key: string; epoch: number | string; seq: number | string }>;
        const existingRows = results[1 + i * 3 + 2] as Row[];
        const current = new Map(ledgerRows.map((r) => [r.row_key, { epoch: Number(r.epoch), seq: String(r.seq) }]));
        const plan = planSlice('mysql', policy, entries, current);
        if (plan.newer.length === 0) return { applied: 0, skipped: entries.length };
        const keyCols = policy.targetPrimaryKey;
        if (plan.deletes.length > 0) second.push(native(whereKeys(knex(policy.targetTable), keyCols, plan.deletes).del()));
        const { fresh, updates } = splitByPresence(keyCols, plan.upserts, existingRows);
        if (fresh.length > 0) second.push(native(knex(policy.targetTable).insert(fresh)));
        for (const { where, set } of updates) second.push(native(knex(policy.targetTable).where(where).update(set)));
        second.push({ sql: mysqlLedgerUpsert(plan.ledger.length), bindings: plan.ledger.flatMap((l) => [l.tbl, l.row_key, l.epoch, l.seq, l.applied_at]) });
        return { applied: plan.newer.length, skipped: entries.length - plan.newer.length };
      });
      second.push({ sql: 'COMMIT', bindings: [] });
      await run(second);
      return counts;
    } catch (error) {
      await run([{ sql: 'ROLLBACK', bindings: [] }]).catch(() => destroyConnection(secondary.dialect, connection));
      throw error;
    }
  });
}

/** MySQL/MariaDB: records new versions for `n` keys (parameters: tbl, row_key, epoch, seq, applied_at per key). */
function mysqlLedgerUpsert(n: number): string {
  return `INSERT INTO ${APPLIED_TABLE} (tbl, row_key, epoch, seq, applied_at) VALUES ${Array.from({ length: n }, () => '(?, ?, ?, ?, ?)').join(', ')}
       ON DUPLICATE KEY UPDATE epoch = VALUES(epoch), seq = VALUES(seq), applied_at = VALUES(applied_at)`;
}

function native(query: Knex.QueryBuilder): Statement {
  const { sql, bindings } = query.toSQL().toNative();
  return { sql, bindings };
}
