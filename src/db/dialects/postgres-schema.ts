import type { Knex } from 'knex';

const KEY_COLUMNS = [
  ['tandem_outbox', 'row_key'],
  ['tandem_backfill', 'last_key'],
] as const;

/**
 * Brings the outbox's row key and the backfill checkpoint from varchar(512) to text, so keys
 * of any length replicate (the applied ledger keeps a digest of a long key: db/ledger-key.ts).
 * A b-tree entry holds at most 2,704 bytes and a row key is its parts URL-encoded (up to three
 * bytes per byte of the user's key), so the outbox's lookup index by key becomes a hash index
 * (it stores a 4-byte hash: any length). varchar → text is binary-compatible: no table
 * rewrite. One transaction under an exclusive lock, re-checked inside it, so concurrent
 * starts apply it once. Identifiers are our own constants, never request text.
 *
 * @see https://www.postgresql.org/docs/current/btree.html (index entry size limit)
 */
export async function pgUnboundKeyColumns(knex: Knex): Promise<string[]> {
  if ((await boundedColumns(knex)).length === 0) return [];
  return knex.transaction(async (trx) => {
    await trx.raw('LOCK TABLE tandem_outbox, tandem_backfill IN ACCESS EXCLUSIVE MODE');
    const bounded = await boundedColumns(trx);
    for (const [table, column] of bounded) await trx.raw(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE text`);
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
        AND (table_name, column_name) IN (('tandem_outbox', 'row_key'), ('tandem_backfill', 'last_key'))`,
  )) as { rows: Array<{ t: string; c: string }> };
  return KEY_COLUMNS.filter(([table, column]) => result.rows.some((r) => r.t === table && r.c === column));
}
