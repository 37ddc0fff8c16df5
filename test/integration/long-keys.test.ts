import { beforeAll, expect, it } from 'vitest';
import { openToolkit } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import { ledgerKey } from '../../src/db/ledger-key.js';
import { formatKey } from '../../src/policy/row-key.js';
import { applyEntries } from '../../src/write/apply-entries.js';
import type { TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';
import { createPreviousInternalTables } from '../helpers/schema.js';
import { outboxCounts, waitFor, type TandemHarness } from '../helpers/tandem.js';

/**
 * Issue 14 item 10: the outbox and ledger kept row keys in varchar(512), so a valid longer
 * key answered 400 and never replicated. Keys as long as the user's own tables take must
 * replicate with the exact key, including on installs whose tables predate the fix.
 */
const NOTES_POLICY = `table: notes
primaryKey: [slug]
`;

/** 700 characters: past the old 512, within what a MariaDB utf8mb4 primary key takes (768). */
const LONG = 'k'.repeat(690);
const KEYS = [`${LONG}-alpha-000`, `${LONG}-alpha-001`, `${LONG}-ALPHA-000`, `${'é'.repeat(600)}-ü`];

async function createNotes(db: TestDatabase): Promise<void> {
  await db.knex.schema.createTable('notes', (t) => {
    // A key as long as each engine's primary key takes; case-sensitive like PostgreSQL's.
    const slug = db.dialect === 'mysql' ? t.string('slug', 760).notNullable().primary() : t.text('slug').notNullable().primary();
    if (db.dialect === 'mysql') slug.collate('utf8mb4_bin');
    t.integer('val');
  });
}

describeEachPair(
  'row keys longer than 512 characters',
  {
    label: 'longkey',
    policies: { 'notes.yaml': NOTES_POLICY },
    testPolicies: false,
    tandem: () => ({ flags: [{ name: 'tandem.notes.dual-write', enabled: true, strategies: [{ name: 'default' }] }] }),
    schema: async (source, target) => {
      for (const db of [source, target]) {
        await createNotes(db);
        await createPreviousInternalTables(db.knex);
        await db.knex('tandem_applied').insert({ tbl: 'notes', row_key: 'kept-from-before', epoch: 0, seq: 7, applied_at: 1 });
      }
    },
  },
  (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    beforeAll(() => ({ source, target, tandem } = suite));

    const rowsOf = async (db: TestDatabase) =>
      ((await db.knex('notes').select('slug', 'val')) as Array<{ slug: string; val: number | string }>)
        .map((r) => `${r.slug}=${Number(r.val)}`)
        .sort();

    it('writes, updates and deletes long keys through the API and the target ends equal, exact keys kept', async () => {
      for (const [i, slug] of KEYS.entries()) {
        const res = await tandem.request.put(`/v1/tables/notes/rows/${encodeURIComponent(slug)}`).send({ values: { val: i } });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      }
      await tandem.request.patch(`/v1/tables/notes/rows/${encodeURIComponent(KEYS[0]!)}`).send({ values: { val: 100 } }).expect(200);
      await tandem.request.delete(`/v1/tables/notes/rows/${encodeURIComponent(KEYS[1]!)}`).expect(204);
      const read = await tandem.request.get(`/v1/tables/notes/rows/${encodeURIComponent(KEYS[2]!)}`).expect(200);
      expect(read.body.row).toMatchObject({ slug: KEYS[2], val: 2 });

      const expected = [`${KEYS[0]}=100`, `${KEYS[2]}=2`, `${KEYS[3]}=3`].sort();
      expect(await rowsOf(source)).toEqual(expected);
      await waitFor(async () => JSON.stringify(await rowsOf(target)) === JSON.stringify(expected) && (await outboxCounts(source.knex)).pending === 0, {
        what: 'the target to hold the long keys',
      });
      expect((await outboxCounts(source.knex)).dead).toBe(0);

      // The ledger holds one row per key — a long key as its digest, twins apart — and the row
      // recorded before the migration; the exact keys are in the tables (above).
      const ledger = ((await target.knex('tandem_applied').where('tbl', 'notes').select('row_key')) as Array<{ row_key: string }>).map((r) => r.row_key).sort();
      expect(ledger).toEqual([...KEYS.map((k) => ledgerKey(formatKey([k]))), 'kept-from-before'].sort());
      expect(new Set(ledger).size).toBe(KEYS.length + 1);
      expect(formatKey([KEYS[3]!]).length).toBeGreaterThan(2_704);
    });

    it('a late older write of a long key is skipped against the ledger, not applied over the newer one', async () => {
      const slug = KEYS[0]!;
      await tandem.request.patch(`/v1/tables/notes/rows/${encodeURIComponent(slug)}`).send({ values: { val: 101 } }).expect(200);
      await waitFor(async () => (await rowsOf(target)).includes(`${slug}=101`), { what: 'the newer write on the target' });
      const ledger = (await target.knex('tandem_applied').where({ tbl: 'notes', row_key: ledgerKey(formatKey([slug])) })) as Array<{ seq: number | string }>;
      // One row for the exact key (not its twins that share the first 690 characters).
      expect(ledger.length).toBe(1);
      const applied = String(ledger[0]?.seq);
      // An older version of the same key arriving late is skipped, the newer row stays.
      const config = loadConfig({ env: {}, overrides: { source: { url: source.url }, target: { url: target.url }, policiesDir: suite.policiesDir } });
      const toolkit = await openToolkit(config);
      try {
        const stale = { id: '1', table: 'notes', rowKey: formatKey([slug]), op: 'upsert' as const, image: { slug, val: -1 }, epoch: 0, attempts: 0, createdAt: Date.now() };
        const late = await applyEntries(toolkit.target, toolkit.policies, [stale], 5_000);
        expect(late.perTable.get('notes')).toEqual({ applied: 0, skipped: 1 });
      } finally {
        await toolkit.close();
      }
      expect(await rowsOf(target)).toContain(`${slug}=101`);
      expect(BigInt(applied)).toBeGreaterThan(1n);
    });

    it('backfill copies long keys and records the last one', async () => {
      const slug = `${'b'.repeat(700)}-backfilled`;
      await source.knex('notes').insert({ slug, val: 9 });
      // Chunks of two: the checkpoint (tandem_backfill.last_key) holds long keys on the way.
      const started = await tandem.request.post('/admin/tables/notes/jobs').send({ kind: 'backfill', chunk: 2 });
      expect(started.status, JSON.stringify(started.body)).toBe(202);
      const job = await waitFor(
        async () => {
          const res = await tandem.request.get(`/admin/jobs/${started.body.id}`).expect(200);
          return res.body.state === 'running' ? undefined : res.body;
        },
        { what: 'the backfill job to finish', timeoutMs: 30_000 },
      );
      expect(job.state, JSON.stringify(job)).toBe('succeeded');
      await waitFor(async () => (await rowsOf(target)).includes(`${slug}=9`), { what: 'the backfilled long key on the target', timeoutMs: 30_000 });
      const sourceRows = await rowsOf(source);
      await waitFor(async () => JSON.stringify(await rowsOf(target)) === JSON.stringify(sourceRows), { what: 'target equal to source after backfill' });
    });
  },
);
