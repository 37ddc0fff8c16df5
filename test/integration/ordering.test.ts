import type { Knex } from 'knex';
import { beforeAll, expect, it } from 'vitest';
import { decodeImage, encodeImage } from '../../src/outbox/image-codec.js';
import type { TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { convergence } from '../helpers/schema.js';
import { outboxCounts, waitFor, type TandemHarness } from '../helpers/tandem.js';

/**
 * DESIGN §3.2: the outbox row is inserted AFTER the change, in the same transaction, so the
 * row lock orders the outbox ids of one key in commit order and `seq` is a valid version.
 *
 * Two tests pin it. (1) Concurrent writers on one key, on every pair: triggers record the
 * order in which the changes ran (under the row lock, so in commit order for that key) and
 * every outbox row as it was inserted; the outbox ids must follow the recorded order, the
 * images must be the committed rows, and the target must end with the last commit. (2) On
 * server sources, a deterministic interleaving: another writer (emulating a second Tandem
 * replica) holds the row lock while a request through Tandem waits on it, and commits first.
 * Tandem's outbox id must then be the larger one. Were the outbox row written before the
 * change, Tandem's id would be allocated while it waited — smaller — and the target would
 * keep the older value. SQLite serialises whole transactions, so (2) cannot interleave there.
 */
describeEachPair(
  'outbox versions follow commit order',
  // No statistics round in the middle of the test.
  { label: 'ord', tandem: () => ({ overrides: { outbox: { housekeepingIntervalMs: 600_000 } } }) },
  (suite) => {
    const { pair } = suite;
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;

    beforeAll(async () => {
      ({ source, target, tandem } = suite);
      // Tandem created tandem_outbox at start: the triggers go on it now.
      await installCommitLog(source);
    });

    it('concurrent writers on one key: outbox id order equals commit order, and the target keeps the last commit', async () => {
      await tandem.request.put('/v1/tables/people/rows/7').send({ values: { email: 'c@example.com', full_name: 'w0' } }).expect(201);
      const writers = 16;
      const answers = await Promise.all(
        Array.from({ length: writers }, (_, i) =>
          tandem.request.patch('/v1/tables/people/rows/7').send({ values: { full_name: `w${i + 1}`, age: i + 1 } }),
        ),
      );
      expect(answers.map((a) => a.status)).toEqual(Array.from({ length: writers }, () => 200));

      // The order the changes committed in (the trigger runs under the row lock) …
      const committed = ((await source.knex('commit_log').where({ row_id: 7 }).orderBy('seq')) as Array<{ full_name: string }>).map((r) => r.full_name);
      expect(committed).toHaveLength(writers);
      expect([...committed].sort()).toEqual(Array.from({ length: writers }, (_, i) => `w${i + 1}`).sort());
      // … is the order of the outbox ids, and each image is the row that committed.
      const versions = (await source.knex('outbox_log').where({ tbl: 'people', row_key: '7' }).orderBy('outbox_id')) as Array<{ outbox_id: string | number; image: string }>;
      const imaged = versions.map((v) => String(decodeImage(v.image)['full_name']));
      expect(imaged).toEqual(['w0', ...committed]);
      // Each answer returned the row its own write produced.
      for (const [i, a] of answers.entries()) expect(a.body.row).toMatchObject({ id: 7, full_name: `w${i + 1}`, age: i + 1 });

      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox to drain' });
      const state = await convergence(source.knex, target.knex);
      expect(state.people.actual).toEqual(state.people.expected);
      expect(state.people.actual.find((r) => r['id'] === 7)).toMatchObject({ name: committed[committed.length - 1] });
    });

    it.skipIf(pair.source === 'sqlite')('a write that waited on the row lock gets the later version and wins on the target', async () => {
      await tandem.request.put('/v1/tables/people/rows/1').send({ values: { email: 'o@example.com', full_name: 'start' } }).expect(201);

      let otherId = '';
      let pending: Promise<{ status: number }> | undefined;
      await source.knex.transaction(async (trx) => {
        await trx('people').where({ id: 1 }).forUpdate().first();
        pending = tandem.request.patch('/v1/tables/people/rows/1').send({ values: { full_name: 'from-tandem' } }).then((r) => r);
        await waitFor(() => lockWaits(source), { what: 'the Tandem write to wait on the row lock', timeoutMs: 10_000 });
        await trx('people').where({ id: 1 }).update({ full_name: 'from-other' });
        const row = await trx('people').where({ id: 1 }).first();
        const record = {
          tbl: 'people',
          row_key: '1',
          op: 'upsert',
          image: encodeImage(row),
          epoch: 1,
          status: 'pending',
          attempts: 0,
          next_attempt_at: 0,
          created_at: Date.now(),
        };
        if (pair.source === 'mysql') {
          const [id] = (await trx('tandem_outbox').insert(record)) as number[];
          otherId = String(id);
        } else {
          const [r] = (await trx('tandem_outbox').insert(record).returning('id')) as Array<{ id: string | number }>;
          otherId = String(r?.id);
        }
      });
      const response = await pending;
      expect(response?.status).toBe(200);

      const versions = (await source.knex('outbox_log').where({ tbl: 'people', row_key: '1' }).orderBy('outbox_id')) as Array<{ outbox_id: string | number; image: string }>;
      const last = versions[versions.length - 1];
      expect(decodeImage(last?.image ?? '{}')['full_name']).toBe('from-tandem');
      expect(BigInt(String(last?.outbox_id))).toBeGreaterThan(BigInt(otherId));

      await waitFor(async () => (await outboxCounts(source.knex)).pending === 0, { what: 'outbox to drain' });
      const state = await convergence(source.knex, target.knex);
      expect(state.people.actual).toEqual(state.people.expected);
      expect(state.people.actual.find((r) => r['id'] === 1)).toMatchObject({ id: 1, name: 'from-tandem' });
    });
  },
);

/**
 * `commit_log`: one row per change of a `people` row, numbered as the changes ran (an AFTER
 * trigger runs under the row lock, so for one key this is commit order). `outbox_log`: a
 * copy of every outbox row as inserted (applied rows are deleted from tandem_outbox soon).
 */
async function installCommitLog(db: TestDatabase): Promise<void> {
  const knex: Knex = db.knex;
  await knex.schema.createTable('commit_log', (t) => {
    t.increments('seq').primary();
    t.integer('row_id');
    t.string('full_name', 120);
  });
  await knex.schema.createTable('outbox_log', (t) => {
    t.bigInteger('outbox_id');
    t.string('tbl', 128);
    t.string('row_key', 512);
    if (db.dialect === 'mysql') t.text('image', 'mediumtext');
    else t.text('image');
  });
  const logChange = 'INSERT INTO commit_log (row_id, full_name) VALUES (NEW.id, NEW.full_name)';
  const logOutbox = 'INSERT INTO outbox_log (outbox_id, tbl, row_key, image) VALUES (NEW.id, NEW.tbl, NEW.row_key, NEW.image)';
  if (db.dialect === 'pg') {
    await knex.raw(`CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${logChange}; RETURN NEW; END $$`);
    await knex.raw(`CREATE FUNCTION log_outbox() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${logOutbox}; RETURN NEW; END $$`);
    await knex.raw('CREATE TRIGGER log_change AFTER UPDATE ON people FOR EACH ROW EXECUTE FUNCTION log_change()');
    await knex.raw('CREATE TRIGGER log_outbox AFTER INSERT ON tandem_outbox FOR EACH ROW EXECUTE FUNCTION log_outbox()');
  } else if (db.dialect === 'mysql') {
    await knex.raw(`CREATE TRIGGER log_change AFTER UPDATE ON people FOR EACH ROW ${logChange}`);
    await knex.raw(`CREATE TRIGGER log_outbox AFTER INSERT ON tandem_outbox FOR EACH ROW ${logOutbox}`);
  } else {
    await knex.raw(`CREATE TRIGGER log_change AFTER UPDATE ON people FOR EACH ROW BEGIN ${logChange}; END`);
    await knex.raw(`CREATE TRIGGER log_outbox AFTER INSERT ON tandem_outbox FOR EACH ROW BEGIN ${logOutbox}; END`);
  }
}

async function lockWaits(db: TestDatabase): Promise<boolean> {
  if (db.dialect === 'pg') {
    const result = (await db.knex.raw('SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted')) as { rows: Array<{ n: number }> };
    return (result.rows[0]?.n ?? 0) > 0;
  }
  // MariaDB waits on a primary-key row lock inside the optimizer ("Statistics"), before the
  // transaction shows up as LOCK WAIT in INNODB_TRX: look for the statement itself.
  const [rows] = (await db.knex.raw(
    "SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND INFO LIKE '%`people`%for update%' AND DB = DATABASE()",
  )) as [Array<{ n: number | string }>];
  return Number(rows[0]?.n ?? 0) > 0;
}
