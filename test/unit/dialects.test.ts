import knexFactory, { type Knex } from 'knex';
import { afterAll, describe, expect, it } from 'vitest';
import { DIALECTS, type TableSide } from '../../src/db/dialects/dialect.js';
import { dialectOf, makeAdapter } from '../../src/db/dialects/index.js';
import { ledgerCreate, ledgerUpsert, oneTripStatements } from '../../src/db/dialects/mysql-apply.js';
import { mysqlAutoIncrementSql } from '../../src/db/dialects/mysql-schema.js';
import { supportsReturning } from '../../src/db/dialects/mysql.js';
import { MARIA_OUTBOX_SQL, mariaFoldSql } from '../../src/db/dialects/mariadb-fold.js';
import { keyPartSql, PgFold, urlEncodeSql } from '../../src/db/dialects/postgres-fold.js';
import { formatKey } from '../../src/policy/row-key.js';

/**
 * The statements each adapter builds for a given table, as text: no database is needed to
 * build them (knex compiles without connecting), so these run everywhere.
 */
const CLIENTS = { pg: 'pg', mysql: 'mysql2', sqlite: 'better-sqlite3' } as const;
const builders = new Map<string, Knex>();
function builder(dialect: (typeof DIALECTS)[number]): Knex {
  let k = builders.get(dialect);
  if (!k) {
    k = knexFactory({ client: CLIENTS[dialect], useNullAsDefault: true });
    builders.set(dialect, k);
  }
  return k;
}
afterAll(async () => {
  for (const k of builders.values()) await k.destroy();
});

/** A renamed table with a text key, as the secondary holds it. */
const ITEMS: TableSide = { name: 'items', table: 'app_items', key: ['code'] };

describe('dialectOf and the adapters', () => {
  it('maps URL schemes to engines and refuses others', () => {
    expect(dialectOf('postgres://x/db')).toBe('pg');
    expect(dialectOf('postgresql://x/db')).toBe('pg');
    expect(dialectOf('mysql://x/db')).toBe('mysql');
    expect(dialectOf('mariadb://x/db')).toBe('mysql');
    expect(dialectOf('sqlite:data/x.db')).toBe('sqlite');
    expect(() => dialectOf('oracle://x')).toThrow(/unsupported database URL scheme "oracle"/);
  });

  it('each engine quotes identifiers its own way, doubling the quote character', () => {
    expect(makeAdapter('pg').quoteIdent('we"ird')).toBe('"we""ird"');
    expect(makeAdapter('sqlite').quoteIdent('we"ird')).toBe('"we""ird"');
    expect(makeAdapter('mysql').quoteIdent('we`ird')).toBe('`we``ird`');
  });

  it.each(DIALECTS)('%s: locking clauses (SQLite has one writer and adds none)', (dialect) => {
    const adapter = makeAdapter(dialect);
    const k = builder(dialect);
    const share = adapter.forShare(k('tandem_state').where({ tbl: 'items' })).toSQL().sql;
    const update = adapter.forUpdate(k('tandem_state').where({ tbl: 'items' })).toSQL().sql;
    if (dialect === 'sqlite') {
      expect(share).not.toMatch(/for (share|update)/i);
      expect(update).not.toMatch(/for update/i);
    } else {
      expect(share).toMatch(dialect === 'pg' ? /for share$/i : /lock in share mode$|for share$/i);
      expect(update).toMatch(/for update$/i);
    }
  });

  it('integer ranges: SQLite integers are 64-bit whatever the name; elsewhere by the declared width', () => {
    expect(makeAdapter('sqlite').integerRange('int')).toEqual([-(2n ** 63n), 2n ** 63n - 1n]);
    expect(makeAdapter('pg').integerRange('integer')).toEqual([-(2n ** 31n), 2n ** 31n - 1n]);
    expect(makeAdapter('mysql').integerRange('int unsigned')).toEqual([0n, 2n ** 32n - 1n]);
    expect(makeAdapter('mysql').integerRange('tinyint')).toEqual([-128n, 127n]);
    expect(makeAdapter('pg').integerRange('text')).toBeUndefined();
  });

  it('the outbox image column holds MariaDB rows over 64 KiB (MEDIUMTEXT)', () => {
    expect(makeAdapter('mysql').imageColumnType).toBe('mediumtext');
    expect(makeAdapter('pg').imageColumnType).toBe('text');
  });

  it('INSERT/DELETE … RETURNING only on MariaDB 10.5 and later', () => {
    expect(supportsReturning('10.11.6-MariaDB-0+deb12u1')).toBe(true);
    expect(supportsReturning('10.5.0-MariaDB')).toBe(true);
    expect(supportsReturning('10.4.32-MariaDB')).toBe(false);
    expect(supportsReturning('11.4.2-MariaDB')).toBe(true);
    expect(supportsReturning('8.0.36')).toBe(false);
  });
});

describe('engine decisions the adapters answer (nothing outside src/db/dialects/ compares engine names)', () => {
  it('replication sessions: each engine turns foreign-key checks off with its own statement', () => {
    expect(makeAdapter('pg').replicationSessionSql).toBe('SET session_replication_role = replica');
    expect(makeAdapter('mysql').replicationSessionSql).toBe('SET SESSION FOREIGN_KEY_CHECKS = 0');
    expect(makeAdapter('sqlite').replicationSessionSql).toBe('PRAGMA foreign_keys = OFF');
  });

  it.each(['pg', 'mysql'] as const)('%s: the replication statement goes to the driver connection, its error comes back', (dialect) => {
    const sent: string[] = [];
    const refused = new Error('no');
    const conn = { query: (sql: string, cb: (err: Error | null) => void) => (sent.push(sql), cb(refused)) };
    let answer: Error | null | undefined;
    makeAdapter(dialect).startReplicationSession(conn, (err) => (answer = err));
    expect(sent).toEqual([makeAdapter(dialect).replicationSessionSql]);
    expect(answer).toBe(refused);
  });

  it('sqlite: the replication session is a synchronous pragma', () => {
    const sent: string[] = [];
    let answer: Error | null | undefined;
    makeAdapter('sqlite').startReplicationSession({ pragma: (sql: string) => sent.push(sql) }, (err) => (answer = err));
    expect(sent).toEqual(['foreign_keys = OFF']);
    expect(answer).toBeNull();
    const refused = new Error('locked');
    makeAdapter('sqlite').startReplicationSession({ pragma: () => { throw refused; } }, (err) => (answer = err));
    expect(answer).toBe(refused);
  });

  it('the note when checks stay on names what PostgreSQL needs', () => {
    expect(makeAdapter('pg').foreignKeyChecksNote('42501')).toBe(
      'foreign-key checks stay on: this role may not set session_replication_role (42501); make it superuser or GRANT SET ON PARAMETER session_replication_role (PostgreSQL 15+), or expect child rows queued until their parents arrive',
    );
    expect(makeAdapter('mysql').foreignKeyChecksNote('ER_SPECIFIC_ACCESS_DENIED_ERROR')).toBe('foreign-key checks stay on: ER_SPECIFIC_ACCESS_DENIED_ERROR');
    expect(makeAdapter('sqlite').foreignKeyChecksNote('Error')).toBe('foreign-key checks stay on: Error');
  });

  it('the SQL front: PostgreSQL speaks its wire; reads are translated for MySQL/MariaDB targets only', () => {
    expect(DIALECTS.filter((d) => makeAdapter(d).speaksPostgresWire)).toEqual(['pg']);
    expect(DIALECTS.filter((d) => makeAdapter(d).translatesReads)).toEqual(['mysql']);
  });

  it('only SQLite answers SQLITE_FULL when the generated ids run out', () => {
    const full = Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    expect(makeAdapter('sqlite').isIdExhausted(full)).toBe(true);
    expect(makeAdapter('sqlite').isIdExhausted(new Error('other'))).toBe(false);
    expect(makeAdapter('sqlite').isIdExhausted(null)).toBe(false);
    expect(makeAdapter('pg').isIdExhausted(full)).toBe(false);
    expect(makeAdapter('mysql').isIdExhausted(full)).toBe(false);
  });

  it('MySQL/MariaDB: AUTO_INCREMENT moves to floor + 1, the table name quoted', () => {
    expect(mysqlAutoIncrementSql('we`ird', 41n)).toBe('ALTER TABLE `we``ird` AUTO_INCREMENT = 42');
    expect(mysqlAutoIncrementSql('items', 9223372036854775806n)).toBe('ALTER TABLE `items` AUTO_INCREMENT = 9223372036854775807');
  });

  it.each(['pg', 'sqlite'] as const)('%s: key columns already compare bytes exactly (no query, nothing changed)', async (dialect) => {
    expect(await makeAdapter(dialect).fixKeyCollations(builder(dialect), { tandem_state: ['tbl'] })).toEqual([]);
  });
});

describe('MySQL/MariaDB versioned apply statements', () => {
  const k = builder('mysql');

  it('one key, one round trip: ledger create-or-lock, version check in session variables, gated writes', () => {
    const statements = oneTripStatements(k, { side: ITEMS, items: [] }, { rowKey: 'a%2Cb', epoch: 1, seq: '42', key: { code: 'a,b' }, row: { code: 'a,b', qty: 3 } }, 1000);
    const sql = statements.map((s) => s.sql);
    expect(sql[0]).toBe('START TRANSACTION');
    expect(sql[1]).toBe('INSERT INTO tandem_applied (tbl, row_key, epoch, seq, applied_at) VALUES (?, ?, -1, -1, ?) ON DUPLICATE KEY UPDATE epoch = epoch');
    expect(sql[2]).toBe(
      'SET @tandem_newer := (SELECT epoch < ? OR (epoch = ? AND seq < CAST(? AS SIGNED)) FROM tandem_applied WHERE tbl = ? AND row_key = ? FOR UPDATE), ' +
        '@tandem_present := (select count(*) as `n` from `app_items` where `code` = ? for update)',
    );
    expect(sql[3]).toBe('update `app_items` set `qty` = ? where `code` = ? and @tandem_newer');
    expect(sql[4]).toBe('INSERT INTO `app_items` (`code`, `qty`) SELECT ?, ? FROM DUAL WHERE @tandem_newer AND @tandem_present = 0');
    expect(sql[5]).toBe('UPDATE tandem_applied SET epoch = ?, seq = ?, applied_at = ? WHERE tbl = ? AND row_key = ? AND @tandem_newer');
    expect(sql.slice(6)).toEqual(['SELECT @tandem_newer AS newer', 'COMMIT']);
    // Every value is bound: the key text with its comma never appears in the SQL.
    expect(sql.join(';')).not.toContain('a,b');
    expect(statements[1]?.bindings).toEqual(['items', 'a%2Cb', 1000]);
    expect(statements[2]?.bindings).toEqual([1, 1, '42', 'items', 'a%2Cb', 'a,b']);
  });

  it('a tombstone deletes, gated on the version check', () => {
    const statements = oneTripStatements(k, { side: ITEMS, items: [] }, { rowKey: 'x', epoch: 1, seq: '7', key: { code: 'x' }, row: null }, 1000);
    expect(statements[3]?.sql).toBe('delete from `app_items` where `code` = ? and @tandem_newer');
    expect(statements[2]?.sql).not.toContain('@tandem_present');
  });

  it('ledger statements for several keys', () => {
    expect(ledgerCreate('items', [{ rowKey: 'a' }, { rowKey: 'b' }], 5).sql).toContain('VALUES (?, ?, -1, -1, ?), (?, ?, -1, -1, ?) ON DUPLICATE KEY UPDATE epoch = epoch');
    const upsert = ledgerUpsert([{ tbl: 'items', row_key: 'a', epoch: 1, seq: '9', applied_at: 5 }]);
    expect(upsert.sql).toMatch(/ON DUPLICATE KEY UPDATE epoch = VALUES\(epoch\), seq = VALUES\(seq\), applied_at = VALUES\(applied_at\)$/);
    expect(upsert.bindings).toEqual(['items', 'a', 1, '9', 5]);
  });
});

describe('PostgreSQL folded write statement', () => {
  const k = builder('pg');
  const fold = PgFold.fromColumns(
    k,
    { name: 'items', table: 'items', key: ['code', 'at'] },
    [
      { name: 'code', oid: 25, castType: 'text' },
      { name: 'at', oid: 1184, castType: 'timestamp with time zone' },
      { name: 'qty', oid: 23, castType: 'integer' },
    ],
    formatKey,
  ) as PgFold;

  it('insert with the outbox row: state FOR SHARE, change RETURNING, outbox key built like formatKey', () => {
    const sql = fold.sqlFor('insert', ['code', 'at', 'qty'], true);
    expect(sql).toMatch(/^WITH tandem_st AS \(SELECT role, epoch, dual_write FROM tandem_state WHERE tbl = \$1 FOR SHARE\)/);
    expect(sql).toContain(
      ', tandem_ch AS (INSERT INTO "items" ("code", "at", "qty") SELECT $6::text, $7::timestamp with time zone, $8::integer FROM tandem_st WHERE tandem_st.role = \'primary\' RETURNING *)',
    );
    expect(sql).toContain(`${keyPartSql('tandem_ch."code"', 25)} || ',' || ${keyPartSql('tandem_ch."at"', 1184)}`);
    expect(sql).toContain('WHERE tandem_st.dual_write = 1 RETURNING id, row_key)');
  });

  it('source-only statements carry no outbox row and are gated on dual_write = 0', () => {
    const sql = fold.sqlFor('update', ['qty'], false);
    expect(sql).not.toContain('INSERT INTO tandem_outbox');
    expect(sql).toContain('UPDATE "items" SET "qty" = $2 FROM tandem_st WHERE tandem_st.role = \'primary\' AND tandem_st.dual_write = 0 AND "items"."code" = $3 AND "items"."at" = $4 RETURNING "items".*');
  });

  it('a delete returns only the key columns and writes a tombstone', () => {
    const sql = fold.sqlFor('delete', [], true);
    expect(sql).toContain('DELETE FROM "items" USING tandem_st WHERE tandem_st.role = \'primary\' AND "items"."code" = $4 AND "items"."at" = $5 RETURNING "items"."code", "items"."at"');
    expect(sql).toContain("'delete', NULL,");
  });

  it('URL-encodes in SQL only what encodeURIComponent encodes', () => {
    expect(urlEncodeSql('x')).toContain(`x ~ '^[A-Za-z0-9_.!~*''()-]*$'`);
    expect(keyPartSql('c', 23)).toBe('c::text');
    expect(keyPartSql('c', 16)).toBe("(CASE WHEN c THEN 'true' ELSE 'false' END)");
  });
});

describe('MariaDB folded write statement', () => {
  const side: TableSide = { name: 'items', table: 'we`ird', key: ['code', 'at'] };
  const placeholders = (sql: string) => (sql.match(/\?/g) ?? []).length;
  const order = (sql: string, parts: readonly string[]) => parts.map((p) => sql.indexOf(p));

  it('insert: one compound statement opens the transaction, reads the state row under a shared lock, then inserts RETURNING * on the primary only', () => {
    const sql = mariaFoldSql(side, 'insert', ['code', 'at', 'qty']);
    expect(sql).toMatch(/^BEGIN NOT ATOMIC\n/);
    expect(sql).toMatch(/\nEND$/);
    expect(sql).toContain('SELECT role, epoch, dual_write INTO tandem_role, tandem_epoch, tandem_dual FROM tandem_state WHERE tbl = ? LOCK IN SHARE MODE;');
    expect(sql).toContain('SELECT tandem_role AS `$tandem_role`, tandem_epoch AS `$tandem_epoch`, tandem_dual AS `$tandem_dual`;');
    expect(sql).toContain('INSERT INTO `we``ird` (`code`, `at`, `qty`) VALUES (?, ?, ?) RETURNING *;');
    const at = order(sql, ['START TRANSACTION;', 'LOCK IN SHARE MODE', "IF tandem_role = 'primary' THEN", 'INSERT INTO', 'IF tandem_dual = 0 THEN COMMIT; END IF;', 'ELSE', 'ROLLBACK;']);
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    // tbl, then the values: nothing from a request is in the text.
    expect(placeholders(sql)).toBe(1 + 3);
  });

  it('update: the row locked, updated and read again (no UPDATE … RETURNING), keys bound three times', () => {
    const sql = mariaFoldSql(side, 'update', ['qty']);
    const lock = 'SELECT * FROM `we``ird` WHERE `code` = ? AND `at` = ? LIMIT 1 FOR UPDATE;';
    const update = 'UPDATE `we``ird` SET `qty` = ? WHERE `code` = ? AND `at` = ?;';
    expect(sql).toContain(update);
    expect(sql.indexOf(lock)).toBeLessThan(sql.indexOf(update));
    expect(sql.lastIndexOf(lock)).toBeGreaterThan(sql.indexOf(update));
    expect(placeholders(sql)).toBe(1 + 2 + 1 + 2 + 2);
  });

  it('delete: RETURNING the key columns (a tombstone)', () => {
    const sql = mariaFoldSql(side, 'delete', []);
    expect(sql).toContain('DELETE FROM `we``ird` WHERE `code` = ? AND `at` = ? RETURNING `code`, `at`;');
    expect(placeholders(sql)).toBe(3);
  });

  it('the outbox row goes with COMMIT in one trip', () => {
    expect(MARIA_OUTBOX_SQL).toMatch(/^INSERT INTO tandem_outbox \(tbl, row_key, op, image, epoch, status, attempts, next_attempt_at, created_at\) VALUES .*;\nCOMMIT$/);
    expect(placeholders(MARIA_OUTBOX_SQL)).toBe(7);
  });
});
