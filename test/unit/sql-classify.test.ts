import { beforeAll, describe, expect, it } from 'vitest';
import { SqlClassifier, SqlParseError, loadParser, type SqlTable, type StatementPlan } from '../../src/sql/classify.js';
import { translateRead } from '../../src/sql/knex-read.js';
import { renameForTarget } from '../../src/sql/rename.js';
import { loadConfig } from '../../src/config/load-config.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const PEOPLE: SqlTable = {
  name: 'people',
  sourceTable: 'people',
  targetTable: 'app_people',
  primaryKey: ['id'],
  columns: [
    { name: 'id', oid: 23 },
    { name: 'email', oid: 1043 },
    { name: 'full_name', oid: 1043 },
    { name: 'legacy', oid: 1043 },
  ],
  targetColumns: new Map<string, string | null>([
    ['id', 'id'],
    ['email', 'email'],
    ['full_name', 'name'],
    ['legacy', null],
  ]),
};
const STAMPED: SqlTable = { ...PEOPLE, name: 'stamped', sourceTable: 'stamped', primaryKey: ['at'], columns: [{ name: 'at', oid: 1184 }] };

let classifier: SqlClassifier;
beforeAll(async () => {
  await loadParser({ warmUp: true });
  classifier = new SqlClassifier([PEOPLE, STAMPED]);
});

const kinds = (sql: string) => classifier.classify(sql).statements.map((s) => [s.kind, s.stmtKind, s.kind === 'forward' ? '' : s.table]);

describe('SQL classifier (libpg-query parse trees)', () => {
  it('forwards statements that touch no policy table, reads and writes of policy tables are recognised', () => {
    expect(kinds('SELECT 1; SET search_path = public; SHOW TimeZone; BEGIN; SELECT * FROM pg_catalog.pg_class')).toEqual([
      ['forward', 'select', ''],
      ['forward', 'set', ''],
      ['forward', 'show', ''],
      ['forward', 'tx', ''],
      ['forward', 'select', ''],
    ]);
    expect(kinds('SELECT * FROM public.people p JOIN other o ON o.id = p.id')).toEqual([['read', 'select', 'people']]);
    expect(kinds('SELECT * FROM otherschema.people')).toEqual([['forward', 'select', '']]);
    expect(kinds('INSERT INTO people (email) VALUES ($1) ON CONFLICT (email) DO NOTHING RETURNING id')).toEqual([['write', 'insert', 'people']]);
    expect(kinds('WITH x AS (SELECT 1) UPDATE people SET full_name = $1 FROM x')).toEqual([['write', 'update', 'people']]);
    expect(kinds('DELETE FROM people USING other WHERE other.id = people.id')).toEqual([['write', 'delete', 'people']]);
    // A write to another table that reads a policy table: the primary runs it unchanged.
    expect(kinds('INSERT INTO other SELECT * FROM people')).toEqual([['read', 'insert', 'people']]);
    expect(kinds('LOCK TABLE people IN SHARE MODE; VACUUM people')).toEqual([['read', 'other', 'people'], ['read', 'other', 'people']]);
  });

  it('marks what would escape replication as guarded, with its reason', () => {
    const reasons = (sql: string) => classifier.classify(sql).statements.map((s) => (s.kind === 'guarded' ? s.reason : s.kind));
    expect(reasons('TRUNCATE people')).toEqual(['truncate']);
    expect(reasons("COPY people FROM STDIN")).toEqual(['copy_from']);
    expect(reasons('COPY people TO STDOUT')).toEqual(['read']);
    expect(reasons('ALTER TABLE people ADD COLUMN x int')).toEqual(['ddl']);
    expect(reasons('DROP TABLE IF EXISTS other, public.people')).toEqual(['ddl']);
    expect(reasons('CREATE TRIGGER t AFTER INSERT ON people FOR EACH ROW EXECUTE FUNCTION f()')).toEqual(['ddl']);
    expect(reasons('WITH d AS (DELETE FROM people RETURNING *) SELECT * FROM d')).toEqual(['uncapturable_write']);
    expect(reasons('EXPLAIN ANALYZE UPDATE people SET email = email')).toEqual(['uncapturable_write']);
    expect(reasons('MERGE INTO people USING other o ON people.id = o.id WHEN MATCHED THEN DELETE')).toEqual(['merge']);
    expect(reasons('INSERT INTO stamped VALUES (now())')).toEqual(['unsupported_key']);
  });

  it('rewrites a write so its outbox rows are inserted after the change in the same statement', () => {
    const [plan] = classifier.classify('UPDATE people SET full_name = $1 WHERE id = $2 -- trailing comment').statements;
    expect(plan?.kind).toBe('write');
    if (plan?.kind !== 'write') return;
    expect(plan.returning).toBe(false);
    expect(plan.tag).toBe('UPDATE');
    // The client's own text, then its RETURNING on a new line (after the comment).
    expect(plan.sql).toContain('tandem_ch AS (UPDATE people SET full_name = $1 WHERE id = $2 -- trailing comment\nRETURNING "people".*)');
    // The outbox CTE reads the change's output (so it runs after it) and only while dual-writing.
    expect(plan.sql).toMatch(/tandem_ob AS \(INSERT INTO tandem_outbox .* FROM tandem_ch, tandem_st WHERE tandem_st\.dual_write = 1 RETURNING id\)/);
    expect(plan.sql.indexOf('tandem_ch AS')).toBeLessThan(plan.sql.indexOf('tandem_ob AS'));
    expect(plan.sql).toContain('FOR SHARE');
    expect(plan.sql).toMatch(/SELECT count\(\*\) FROM tandem_ch WHERE/);
    const [ret] = classifier.classify('INSERT INTO people AS p (email) VALUES ($1) RETURNING p.id, upper(email)').statements;
    if (ret?.kind !== 'write') throw new Error('not a write');
    expect(ret.returning).toBe(true);
    const flat = ret.sql.replace(/\s+/g, ' ');
    expect(flat).toContain('INSERT INTO people AS p ( email ) VALUES ($1) RETURNING p.*)');
    expect(flat).toContain('SELECT p.id, upper(email) FROM tandem_ch AS p WHERE');
  });

  it('a syntax error carries PostgreSQL\'s 1-based character position', () => {
    let error: unknown;
    try {
      classifier.classify('SELECT é, * FROM people WHER id = 1');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SqlParseError);
    expect((error as SqlParseError).position).toBe(30);
  });

  it('renames tables and columns for a PostgreSQL target, keeping the source names of the output', () => {
    const tree = (sql: string) => {
      const [plan] = classifier.classify(sql).statements;
      if (plan?.kind !== 'read') throw new Error('not a read');
      return plan.select;
    };
    const renamed = renameForTarget(tree('SELECT id, full_name, upper(full_name) AS u FROM people WHERE full_name LIKE $1 ORDER BY full_name'), PEOPLE);
    expect('sql' in renamed && renamed.sql.replace(/\s+/g, ' ')).toBe('SELECT id AS id, name AS full_name, upper(name) AS u FROM app_people AS people WHERE name LIKE $1 ORDER BY name');
    expect(renameForTarget(tree('SELECT legacy FROM people'), PEOPLE)).toEqual({ reason: 'column legacy is not copied to the target' });
    expect(renameForTarget(tree('SELECT * FROM people'), PEOPLE)).toMatchObject({ reason: expect.stringContaining('legacy') });
  });

  it('parse + classify cost per statement (reported; the budget is 50 µs)', () => {
    const n = 2_000;
    const started = performance.now();
    for (let i = 0; i < n; i++) classifier.classify(`UPDATE people SET full_name = 'x${i}' WHERE id = ${i}`);
    const writeUs = ((performance.now() - started) * 1000) / n;
    const s2 = performance.now();
    for (let i = 0; i < n; i++) classifier.classify(`SELECT full_name FROM people WHERE id = ${i}`);
    const readUs = ((performance.now() - s2) * 1000) / n;
    const s3 = performance.now();
    for (let i = 0; i < n; i++) classifier.classify('UPDATE people SET full_name = $1 WHERE id = $2');
    const cachedUs = ((performance.now() - s3) * 1000) / n;
    console.log(`[sql classify] distinct write ${writeUs.toFixed(1)} µs, distinct read ${readUs.toFixed(1)} µs, repeated (cached) ${cachedUs.toFixed(2)} µs per statement`);
    expect(cachedUs).toBeLessThan(writeUs);
  });

  it("the translated subset reads parameters as their column's type would (LIMIT: bigint), or names why the primary answers", () => {
    const select = (sql: string) => (classifier.classify(sql).statements[0] as Extract<StatementPlan, { kind: 'read' }>).select;
    const read = (sql: string, values?: Array<string | null>, types: number[] = []) =>
      translateRead(select(sql), PEOPLE, { dialect: 'mysql', translatesReads: true }, { types, ...(values ? { values } : {}) });
    const q = 'SELECT id, full_name FROM people WHERE id = $1 OR email IN ($2, $3) LIMIT $4';
    // Described without values: the types PostgreSQL infers (a varchar column's parameter is text).
    expect(read(q)).toMatchObject({ paramTypes: [23, 25, 25, 20], fields: [{ name: 'id', oid: 23 }, { name: 'full_name', oid: 1043 }] });
    expect(read(q, [' +2 ', "x' OR '1'='1", null, null])).not.toHaveProperty('reason');
    expect(read(q, ['3000000000', 'a', 'b', '1'])).toEqual({ reason: 'a value that is not of its column type' });
    expect(read(q, ['1.5', 'a', 'b', '1'])).toEqual({ reason: 'a value that is not of its column type' });
    expect(read(q, ['1', 'a', 'b', '-1'])).toEqual({ reason: 'LIMIT or OFFSET other than a number' });
    expect(read(q, ['1', 'a', 'b'])).toEqual({ reason: 'a parameter without a value' });
    expect(read('SELECT id FROM people WHERE id = $1', ['1'], [25])).toEqual({ reason: 'a parameter of another type than its column' });
    expect(read('SELECT id FROM people WHERE id = $1 OR email = $1', ['1'])).toEqual({ reason: 'a parameter of another type than its column' });
    expect(read("SELECT id FROM people WHERE email = 5")).toEqual({ reason: 'a constant of another type than its column' });
    expect(read('SELECT id FROM people WHERE id = $1')).toMatchObject({ paramTypes: [23] });
  });
});

describe('SQL front configuration', () => {
  const dir = () => mkdtempSync(path.join(tmpdir(), 'tandem-sqlcfg-'));
  it('is off by default; TANDEM_SQL_PORT and TANDEM_SQL_USERS turn it on', () => {
    expect(loadConfig({ configDir: dir(), env: {} }).sql.port).toBeUndefined();
    const config = loadConfig({ configDir: dir(), env: { TANDEM_SQL_PORT: '6432', TANDEM_SQL_USERS: 'app:s3cret-pass,ro:other:pass' } });
    expect(config.sql.port).toBe(6432);
    expect(config.sql.users).toEqual([{ name: 'app', password: 's3cret-pass' }, { name: 'ro', password: 'other:pass' }]);
  });
  it('refuses to serve SQL off loopback without users, and names the variable', () => {
    expect(() => loadConfig({ configDir: dir(), env: { TANDEM_SQL_PORT: '6432', TANDEM_SQL_HOST: '0.0.0.0' } })).toThrow(/TANDEM_SQL_HOST: refusing to serve SQL on 0\.0\.0\.0 without users/);
    expect(() => loadConfig({ configDir: dir(), env: { TANDEM_SQL_PORT: 'many' } })).toThrow(/TANDEM_SQL_PORT/);
  });
});
