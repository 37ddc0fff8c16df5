import type { Knex } from 'knex';
import { TandemError } from '../../errors.js';
import type { KeyValues, Row } from '../../shared/row.js';
import { OUTBOX_TABLE, STATE_TABLE } from '../internal-tables.js';
import type { FoldedWriter, FoldOp, FoldOutcome, TableSide } from './dialect.js';

const MAX_CACHED_SHAPES = 64;

/**
 * Trip 2 of a dual-writing table: the outbox row, then COMMIT (not run when the insert
 * fails: the server stops at a failed statement). Placeholders: tbl, row_key, op, image,
 * epoch, next_attempt_at, created_at.
 */
export const MARIA_OUTBOX_SQL = `INSERT INTO ${OUTBOX_TABLE} (tbl, row_key, op, image, epoch, status, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?);\nCOMMIT`;

/** Backtick quoting (MariaDB), embedded backticks doubled. */
const quoteIdent = (name: string) => `\`${name.replace(/`/g, '``')}\``;

/**
 * The MariaDB (10.5+) write path in the fewest round trips the engine allows (DESIGN §3,
 * §12), where the classic transaction takes five (BEGIN, state row, change, outbox row,
 * COMMIT).
 *
 * Trip 1 is one anonymous compound statement (`BEGIN NOT ATOMIC … END`, see mariaFoldSql):
 * it starts the transaction, reads the state row LOCK IN SHARE MODE, returns it, and runs
 * the change with its after-image (INSERT/DELETE … RETURNING; an UPDATE between a locking
 * read and a re-read, as updateReturning does) only when this store is the table's
 * primary, rolling back otherwise. A source-only table commits inside the same statement:
 * one round trip. A dual-writing table needs a second, `INSERT INTO tandem_outbox …;
 * COMMIT`: the image is encodeImage's of the row the driver returned and the key
 * formatKey's (byte-identical to the classic path by construction, not re-implemented in
 * SQL), and it is inserted after the change, in its transaction, while the change holds
 * the key's row lock — so outbox ids per key stay in commit order.
 *
 * Values are bound parameters (mysql2 escapes them, as for every knex query); the statement
 * text is built from the table's and columns' names only.
 *
 * @see https://mariadb.com/kb/en/begin-end/
 * @see https://mariadb.com/kb/en/insertreturning/
 */
export class MariaFold implements FoldedWriter {
  private readonly statements = new Map<string, string>();

  constructor(
    private readonly knex: Knex,
    private readonly side: TableSide,
    private readonly formatKey: (key: KeyValues) => string,
    private readonly encodeImage: (row: Row) => string,
    /** Destroys a connection whose state is unknown (a failed ROLLBACK). */
    private readonly destroyConnection: (connection: unknown) => void,
  ) {}

  handles(op: FoldOp): boolean {
    // An insert without columns (`INSERT … () VALUES ()`) and an op whose key was not bound go the classic way.
    if (op.op === 'insert') return Object.keys(op.values).length > 0;
    return op.where !== undefined;
  }

  /** The compound statement reads the state row itself: nothing to remember. */
  noteStage(): void {}

  async run(op: FoldOp, now: number, notBefore: number): Promise<FoldOutcome> {
    const columns = op.op === 'delete' ? [] : Object.keys(op.values);
    const params: unknown[] = [this.side.name];
    const where = op.op === 'insert' ? [] : Object.values(op.where ?? {});
    if (op.op === 'insert') params.push(...columns.map((c) => op.values[c]));
    else if (op.op === 'update') params.push(...where, ...columns.map((c) => op.values[c]), ...where, ...where);
    else params.push(...where);

    const pool = this.knex.client as PoolClient;
    const connection = (await pool.acquireConnection()) as MysqlConnection;
    let open = true;
    try {
      const results = await query(connection, this.statement(op.op, columns), params);
      const sets = results.filter((r): r is Row[] => Array.isArray(r));
      const meta = sets[0]?.[0];
      if (!meta || meta['$tandem_role'] === null || meta['$tandem_role'] === undefined) {
        throw new TandemError('internal', 500, `no state row for table ${this.side.name}`);
      }
      const dual = Number(meta['$tandem_dual']) === 1;
      // The statement rolled back (not primary) or committed (source-only) itself.
      if (meta['$tandem_role'] !== 'primary' || !dual) open = false;
      if (meta['$tandem_role'] !== 'primary') return { kind: 'frozen' };
      const row = sets[sets.length - 1]?.[0];
      if (sets.length < 2 || !row) return { kind: 'missing' };
      const key = this.side.key.map((c) => row[c]);
      const epoch = Number(meta['$tandem_epoch']);
      const image = op.op === 'delete' ? undefined : row;
      if (!dual) return { kind: 'written', row: image, key, epoch, outbox: null };

      const rowKey = this.formatKey(key);
      const text = image === undefined ? null : this.encodeImage(image);
      const [inserted] = await query(connection, MARIA_OUTBOX_SQL, [this.side.name, rowKey, text === null ? 'delete' : 'upsert', text, epoch, notBefore, now]);
      open = false;
      const id = String((inserted as { insertId?: unknown } | undefined)?.insertId);
      return { kind: 'written', row: image, key, epoch, outbox: { id, rowKey, image: text } };
    } finally {
      if (open) await this.rollback(connection);
      await pool.releaseConnection(connection);
    }
  }

  /**
   * Ends a transaction left open by an error (the change failed inside the compound
   * statement, or the outbox insert did): a connection goes back to the pool clean, or not
   * at all.
   */
  private async rollback(connection: MysqlConnection): Promise<void> {
    try {
      await query(connection, 'ROLLBACK', []);
    } catch {
      this.destroyConnection(connection);
    }
  }

  /** The statement of one op and column list, built once and kept (a bounded number of shapes). */
  private statement(op: FoldOp['op'], columns: readonly string[]): string {
    const cacheKey = `${op}:${columns.join(',')}`;
    const cached = this.statements.get(cacheKey);
    if (cached !== undefined) return cached;
    const sql = mariaFoldSql(this.side, op, columns);
    if (this.statements.size < MAX_CACHED_SHAPES) this.statements.set(cacheKey, sql);
    return sql;
  }
}

/**
 * Trip 1 of the MariaDB fold. Placeholders, in order: the table's name in tandem_state;
 * then for an insert the values; for an update the key (locking read), the values, the key
 * (UPDATE's WHERE), the key (re-read); for a delete the key. Result sets: the state row
 * (`$tandem_role`, `$tandem_epoch`, `$tandem_dual`), then — on the primary only — the
 * change's rows (an update: the locked row, then the row as updated). The transaction is
 * left open only when the table is dual-writing and this store is its primary.
 */
export function mariaFoldSql(side: TableSide, op: FoldOp['op'], columns: readonly string[]): string {
  const table = quoteIdent(side.table);
  const keyMatch = side.key.map((k) => `${quoteIdent(k)} = ?`).join(' AND ');
  let change: string;
  if (op === 'insert') {
    change = `INSERT INTO ${table} (${columns.map(quoteIdent).join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) RETURNING *;`;
  } else if (op === 'update') {
    const reread = `SELECT * FROM ${table} WHERE ${keyMatch} LIMIT 1 FOR UPDATE;`;
    change = `${reread}\n    UPDATE ${table} SET ${columns.map((c) => `${quoteIdent(c)} = ?`).join(', ')} WHERE ${keyMatch};\n    ${reread}`;
  } else {
    change = `DELETE FROM ${table} WHERE ${keyMatch} RETURNING ${side.key.map(quoteIdent).join(', ')};`;
  }
  return [
    'BEGIN NOT ATOMIC',
    '  DECLARE tandem_role VARCHAR(16) DEFAULT NULL;',
    '  DECLARE tandem_epoch BIGINT DEFAULT NULL;',
    '  DECLARE tandem_dual INT DEFAULT NULL;',
    '  START TRANSACTION;',
    `  SELECT role, epoch, dual_write INTO tandem_role, tandem_epoch, tandem_dual FROM ${STATE_TABLE} WHERE tbl = ? LOCK IN SHARE MODE;`,
    '  SELECT tandem_role AS `$tandem_role`, tandem_epoch AS `$tandem_epoch`, tandem_dual AS `$tandem_dual`;',
    `  IF tandem_role = 'primary' THEN`,
    `    ${change}`,
    '    IF tandem_dual = 0 THEN COMMIT; END IF;',
    '  ELSE',
    '    ROLLBACK;',
    '  END IF;',
    'END',
  ].join('\n');
}

interface PoolClient {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<void> | void;
}

interface MysqlConnection {
  query(sql: string, values: readonly unknown[], cb: (err: Error | null, results?: unknown) => void): void;
}

/** One text-protocol query (one round trip; several statements when the text has several) on a pooled mysql2 connection. */
function query(connection: MysqlConnection, sql: string, values: readonly unknown[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    connection.query(sql, values, (err, results) => {
      if (err) reject(err);
      else resolve(Array.isArray(results) ? (results as unknown[]) : [results]);
    });
  });
}
