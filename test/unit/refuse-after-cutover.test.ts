import { beforeAll, describe, expect, it } from 'vitest';
import { SqlClassifier, loadParser, type SqlTable, type StatementPlan } from '../../src/sql/classify.js';
import { placeAfterCutover, refuseStaleRead, refuseWriteAfterCutover } from '../../src/sql/refuse-after-cutover.js';

const table = (name: string): SqlTable => ({
  name,
  sourceTable: name,
  targetTable: name,
  primaryKey: ['id'],
  columns: [{ name: 'id', oid: 23 }, { name: 'v', oid: 25 }],
  targetColumns: new Map(),
});

/** `people` on the source; `app_people` on the target, full_name renamed to name, legacy not copied. */
const people: SqlTable = {
  name: 'people',
  sourceTable: 'people',
  targetTable: 'app_people',
  primaryKey: ['id'],
  columns: [{ name: 'id', oid: 23 }, { name: 'full_name', oid: 25 }, { name: 'legacy', oid: 25 }, { name: 'age', oid: 23 }],
  targetColumns: new Map([['id', 'id'], ['full_name', 'name'], ['legacy', null], ['age', 'age']]),
};
const peopleOnTarget: SqlTable = {
  name: 'people',
  sourceTable: 'app_people',
  targetTable: 'people',
  primaryKey: ['id'],
  columns: [{ name: 'id', oid: 23 }, { name: 'age', oid: 23 }, { name: 'name', oid: 25 }],
  targetColumns: new Map([['id', 'id'], ['name', 'full_name'], ['age', 'age']]),
};

let classifier: SqlClassifier;
beforeAll(async () => {
  await loadParser({ warmUp: true });
  classifier = new SqlClassifier([table('moved'), table('home'), people]);
  classifier.setTargetTables([peopleOnTarget]);
});

const plan = (sql: string) => classifier.classify(sql).statements[0] as StatementPlan;
/** A backend where `moved` has the target as primary; `stale` says whether its source is stale. */
const view = (options: { pgTarget: boolean; stale: boolean }) => ({
  primaryOf: (t: string) => (t === 'home' ? ('source' as const) : ('target' as const)),
  classifier,
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
    // `moved` has no table on the PostgreSQL target: its writes cannot run there either.
    expect(refuseWriteAfterCutover(view({ pgTarget: true, stale: false }), plan('DELETE FROM moved'))?.message).toContain(
      '(pg) at cutover and the SQL front cannot write this statement there: the target has no table moved',
    );
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

describe('SQL front writes after a cutover to a PostgreSQL target', () => {
  const pg = () => view({ pgTarget: true, stale: false });
  const placed = (sql: string, alone = true) => placeAfterCutover(pg(), plan(sql), alone);
  const written = (sql: string): string => {
    const p = placed(sql);
    if (!p || !('write' in p)) throw new Error(`not placed on the target: ${JSON.stringify(p)}`);
    expect(p.write).toMatchObject({ kind: 'write', table: 'people' });
    // The deparser lays lists out on lines of their own.
    return p.write.sql.replace(/\s+/g, ' ').replace(/\( /g, '(').replace(/ \)/g, ')').replace(/ ?, ?/g, ', ');
  };
  const refused = (sql: string, alone = true): string => {
    const p = placed(sql, alone);
    if (!p || !('refuse' in p)) throw new Error(`not refused: ${sql}`);
    expect(p.refuse).toMatchObject({ kind: 'refuse', table: 'people', reason: 'target_primary' });
    return p.refuse.message;
  };

  it('runs the statement on the target table with the columns renamed, the RETURNING list seeing the client names', () => {
    const insert = written('INSERT INTO people (id, full_name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET full_name = excluded.full_name RETURNING id, full_name AS who');
    expect(insert).toContain('INSERT INTO app_people AS people (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING people.*');
    expect(insert).toContain('tandem_cs AS (SELECT "id" AS "id", "age" AS "age", "name" AS "full_name" FROM tandem_ch)');
    expect(insert).toContain('SELECT id, full_name AS who FROM tandem_cs AS people');
    // Its outbox row carries the target's names and types (the reverse apply maps them back).
    expect(insert).toContain(`json_object('{"id", "age", "name"}'::text[]`);
    expect(insert).toContain(`{"$pgtypes":{"id":23, "age":23, "name":25}`);
    expect(written('UPDATE people p SET full_name = upper(p.full_name), age = age + 1 WHERE p.id = $1')).toContain(
      'UPDATE app_people AS p SET name = upper(p.name), age = age + 1 WHERE p.id = $1 RETURNING p.*',
    );
    expect(written('DELETE FROM people WHERE full_name IS NULL AND id IN (SELECT 1)')).toContain('DELETE FROM app_people AS people WHERE name IS NULL');
    // Without a column list the values are the source's columns in order, named for the target.
    expect(written("INSERT INTO people VALUES (1, 'Ann')")).toContain("INSERT INTO app_people AS people (id, name) VALUES (1, 'Ann')");
  });

  it('refuses what cannot be renamed safely, saying why', () => {
    expect(refused("UPDATE people SET legacy = 'x'")).toContain('cannot write this statement there: column legacy is not copied to the target');
    expect(refused('UPDATE people SET age = 1 FROM home WHERE home.id = people.id')).toContain('it reads other tables (UPDATE … FROM)');
    expect(refused('DELETE FROM people WHERE id IN (SELECT id FROM home)')).toContain('it reads another table (home)');
    expect(refused('INSERT INTO people SELECT * FROM people')).toContain('it reads another table (people)');
    expect(refused('INSERT INTO people (id) VALUES (1) ON CONFLICT ON CONSTRAINT people_pkey DO NOTHING')).toContain('ON CONFLICT ON CONSTRAINT');
    expect(refused('TRUNCATE people')).toContain('the SQL front writes there only INSERT, UPDATE and DELETE (not TRUNCATE)');
    // A write the target takes, but not inside a transaction or beside other statements.
    expect(refused('DELETE FROM people WHERE id = 1', false)).toContain('here the source: send this write on its own, or as the first statement of its transaction');
    expect(placed('DELETE FROM home WHERE id = 1')).toBeUndefined();
  });
});
