import { beforeAll, describe, expect, it } from 'vitest';
import { SqlClassifier, loadParser, type SqlTable, type StatementPlan } from '../../src/sql/classify.js';
import { refuseStaleRead, refuseWriteAfterCutover } from '../../src/sql/refuse-after-cutover.js';

const table = (name: string): SqlTable => ({
  name,
  sourceTable: name,
  targetTable: name,
  primaryKey: ['id'],
  columns: [{ name: 'id', oid: 23 }, { name: 'v', oid: 25 }],
  targetColumns: new Map(),
});

let classifier: SqlClassifier;
beforeAll(async () => {
  await loadParser({ warmUp: true });
  classifier = new SqlClassifier([table('moved'), table('home')]);
});

const plan = (sql: string) => classifier.classify(sql).statements[0] as StatementPlan;
/** A backend where `moved` has the target as primary; `stale` says whether its source is stale. */
const view = (options: { pgTarget: boolean; stale: boolean }) => ({
  primaryOf: (t: string) => (t === 'moved' ? ('target' as const) : ('source' as const)),
  sourceStale: (t: string) => t === 'moved' && options.stale,
  target: options.pgTarget ? ({} as never) : undefined,
  targetDialect: options.pgTarget ? 'pg' : 'mysql',
});

describe('SQL front refusals after a cutover', () => {
  it('refuses writes and guarded statements on a moved table only, saying why for each target engine', () => {
    const other = view({ pgTarget: false, stale: false });
    for (const sql of ['INSERT INTO moved (id) VALUES (1)', 'UPDATE moved SET v = $1', 'DELETE FROM moved', 'TRUNCATE moved', 'ALTER TABLE moved ADD COLUMN x int']) {
      const refusal = refuseWriteAfterCutover(other, plan(sql));
      expect(refusal, sql).toMatchObject({ kind: 'refuse', table: 'moved', reason: 'target_primary' });
      expect(refusal?.message).toContain('its primary moved to the target (mysql) at cutover and the SQL front speaks PostgreSQL and writes only to a PostgreSQL primary');
    }
    expect(refuseWriteAfterCutover(view({ pgTarget: true, stale: false }), plan('DELETE FROM moved'))?.message).toContain('(pg) at cutover and the SQL front does not route writes to the target yet');
    for (const sql of ['INSERT INTO home (id) VALUES (1)', 'SELECT * FROM moved', 'INSERT INTO home SELECT * FROM moved', 'SELECT 1']) {
      expect(refuseWriteAfterCutover(other, plan(sql)), sql).toBeUndefined();
    }
  });

  it('refuses reads that touch a moved table only while its source is stale, naming that table', () => {
    const stale = view({ pgTarget: false, stale: true });
    expect(refuseStaleRead(stale, plan('SELECT * FROM home JOIN moved USING (id)'))).toMatchObject({ table: 'moved', reason: 'source_stale' });
    expect(refuseStaleRead(stale, plan('INSERT INTO elsewhere SELECT * FROM moved'))).toMatchObject({ table: 'moved', reason: 'source_stale' });
    // A write to a table still primary on the source, from the stale one.
    expect(refuseStaleRead(stale, plan('INSERT INTO home SELECT * FROM moved'))).toMatchObject({ table: 'moved', reason: 'source_stale' });
    expect(refuseStaleRead(stale, plan('UPDATE home SET v = $1'))).toBeUndefined();
    expect(refuseStaleRead(stale, plan('SELECT * FROM home'))).toBeUndefined();
    expect(refuseStaleRead(view({ pgTarget: false, stale: false }), plan('SELECT * FROM moved'))).toBeUndefined();
  });
});
