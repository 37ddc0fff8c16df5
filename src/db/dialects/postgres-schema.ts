import type { Knex } from 'knex';

/**
 * The ledger's unique key: the table and a digest of the row key. A b-tree entry holds at
 * most 2,704 bytes, and a row key is its parts URL-encoded (up to three bytes per byte of the
 * user's key), so a key the user's own table accepts can be too long to index as it is.
 * `md5(text)` is immutable, so it can key a unique index and name it in `ON CONFLICT`.
 *
 * @see https://www.postgresql.org/docs/current/btree.html#BTREE-SUPPORT-FUNCS (entry size limit)
 * @see https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT (index inference)
 */
export const PG_LEDGER_KEY = '(tbl, md5(row_key))';

const KEY_COLUMNS = [
  ['tandem_outbox', 'row_key'],
  ['tandem_applied', 'row_key'],
  ['tandem_backfill', 'last_key'],
] as const;

/**
 * Brings Tandem's tables from varchar(512) keys to text: the ledger's primary key becomes a
 * unique index on the digest (PG_LEDGER_KEY) and lookups by exact key use hash indexes
 * (which store a 4-byte hash, so any length). varchar → text is binary-compatible: no table
 * rewrite. One transaction under an exclusive lock, re-checked inside it, so concurrent
 * starts apply it once. Identifiers are our own constants, never request text.
 */
export async function pgUnboundKeyColumns(knex: Knex): Promise<string[]> {
  if ((await boundedColumns(knex)).length === 0) return [];
  return knex.transaction(async (trx) => {
    await trx.raw('LOCK TABLE tandem_outbox, tandem_applied, tandem_backfill IN ACCESS EXCLUSIVE MODE');
    const bounded = await boundedColumns(trx);
    for (const [table, column] of bounded) await trx.raw(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE text`);
    if (bounded.some(([table]) => table === 'tandem_applied')) {
      const pk = (await trx.raw(`SELECT conname FROM pg_constraint WHERE conrelid = 'tandem_applied'::regclass AND contype = 'p'`)) as { rows: Array<{ conname: string }> };
      for (const { conname } of pk.rows) await trx.raw(`ALTER TABLE tandem_applied DROP CONSTRAINT "${conname.replace(/"/g, '""')}"`);
      await trx.raw(`CREATE UNIQUE INDEX IF NOT EXISTS tandem_applied_key_uq ON tandem_applied ${PG_LEDGER_KEY}`);
      await trx.raw('CREATE INDEX IF NOT EXISTS tandem_applied_key_hash ON tandem_applied USING hash (row_key)');
    }
    if (bounded.some(([table]) => table === 'tandem_outbox')) {
      await trx.raw('DROP INDEX IF EXISTS tandem_outbox_key_idx');
      await trx.raw('CREATE INDEX tandem_outbox_key_idx ON tandem_outbox USING hash (row_key)');
    }
    return bounded.map(([table, column]) => `${table}.${column}`);
  });
}

async function boundedColumns(knex: Knex): Promise<Array<readonly [string, string]>> {
  const result = (await knex.raw(
    `SELECT table_name AS t, column_name AS c FROM information_schema.columns
      WHERE table_schema = current_schema() AND data_type = 'character varying'
        AND (table_name, column_name) IN (('tandem_outbox', 'row_key'), ('tandem_applied', 'row_key'), ('tandem_backfill', 'last_key'))`,
  )) as { rows: Array<{ t: string; c: string }> };
  return KEY_COLUMNS.filter(([table, column]) => result.rows.some((r) => r.t === table && r.c === column));
}
