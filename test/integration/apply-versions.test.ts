import { afterAll, beforeAll, expect, it } from 'vitest';
import { openToolkit } from '../../src/app.js';
import { loadConfig } from '../../src/config/load-config.js';
import { applyEntries } from '../../src/write/apply-entries.js';
import type { OutboxEntry } from '../../src/outbox/outbox-entry.js';
import type { TestDatabase } from '../helpers/databases.js';
import { describeEachPair } from '../helpers/each-pair.js';

/**
 * The versioned apply itself (DESIGN §3.4), on every target dialect and, on MySQL/MariaDB,
 * on both of its paths: a single key goes in one round trip with the version check in
 * SQL, more keys in two with the check in JS. Both must write only images newer than
 * the applied version, remember tombstones, and say how many they applied and skipped.
 */
type Toolkit = Awaited<ReturnType<typeof openToolkit>>;

function entry(table: string, rowKey: string, id: number, image: Record<string, unknown> | null): OutboxEntry {
  return { id: String(id), table, rowKey, op: image === null ? 'delete' : 'upsert', image, epoch: 0, attempts: 0, createdAt: Date.now() };
}

const kv = (k: number, seq: number, val: number | null) => entry('kv', `t,${k}`, seq, val === null ? null : { tenant: 't', k, val, note: `v${seq}` });
const person = (id: number, seq: number, name: string | null) =>
  entry('people', String(id), seq, name === null ? null : { id, email: `p${id}@x.test`, full_name: name, age: seq, active: true, note: null, legacy: 'x' });

describeEachPair('versioned apply', { label: 'vap', tandem: false }, (suite) => {
    let source: TestDatabase;
    let target: TestDatabase;
    let toolkit: Toolkit;

    beforeAll(async () => {
      ({ source, target } = suite);
      const config = loadConfig({ env: {}, overrides: { source: { url: source.url }, target: { url: target.url }, policiesDir: suite.policiesDir } });
      toolkit = await openToolkit(config);
    });

    afterAll(async () => {
      await toolkit?.close();
    });

    /** Applies the entries, each key on its own when `single` (the one-trip path on MySQL). */
    const apply = async (entries: OutboxEntry[], single = false) => {
      const out: Record<string, { applied: number; skipped: number }> = {};
      for (const group of single ? entries.map((e) => [e]) : [entries]) {
        const result = await applyEntries(toolkit.target, toolkit.policies, group, 5_000);
        for (const [table, c] of result.perTable) {
          const sum = (out[table] ??= { applied: 0, skipped: 0 });
          sum.applied += c.applied;
          sum.skipped += c.skipped;
        }
      }
      return out;
    };
    const kvRows = async (from: number, to: number) =>
      ((await target.knex('kv').whereBetween('k', [from, to]).orderBy('k')) as Array<{ k: number | string; val: number | string; note: string }>).map((r) => [
        Number(r.k),
        Number(r.val),
        r.note,
      ]);

    // One trip: every key applied on its own. Two trips: 2 tables × 20 keys in each apply.
    for (const [label, keys] of [
      ['single-key applies (one round trip on MySQL)', 3],
      ['40-key applies (two round trips on MySQL)', 20],
    ] as const) {
      const single = keys === 3;
      it(`${label}: newer images land, older ones are skipped, tombstones are remembered`, async () => {
        const base = single ? 100 : 200;
        const ks = Array.from({ length: keys }, (_, i) => base + i);

        // Version 20 of every key: written.
        expect(await apply([...ks.map((k) => kv(k, 20, k)), ...ks.map((k) => person(k, 20, `twenty ${k}`))], single)).toEqual({
          kv: { applied: keys, skipped: 0 },
          people: { applied: keys, skipped: 0 },
        });
        // Version 10 arrives late: skipped, the target keeps version 20.
        expect(await apply([...ks.map((k) => kv(k, 10, -1)), ...ks.map((k) => person(k, 10, 'ten'))], single)).toEqual({
          kv: { applied: 0, skipped: keys },
          people: { applied: 0, skipped: keys },
        });
        expect(await kvRows(base, base + keys - 1)).toEqual(ks.map((k) => [k, k, 'v20']));
        // Version 30: the kv rows are deleted, the people rows updated (existing rows).
        expect(await apply([...ks.map((k) => kv(k, 30, null)), ...ks.map((k) => person(k, 30, `thirty ${k}`))], single)).toEqual({
          kv: { applied: keys, skipped: 0 },
          people: { applied: keys, skipped: 0 },
        });
        // Version 20 replayed (a retry after a lost done-mark): the tombstone wins, nothing comes back.
        expect(await apply(ks.map((k) => kv(k, 20, k)), single)).toEqual({ kv: { applied: 0, skipped: keys } });
        expect(await kvRows(base, base + keys - 1)).toEqual([]);
        const people = (await target.knex('app_people').whereIn('id', ks).orderBy('id')) as Array<{ id: number | string; name: string; age: number | string }>;
        expect(people.map((p) => [Number(p.id), p.name, Number(p.age)])).toEqual(ks.map((k) => [k, `thirty ${k}`, 30]));
        // A newer insert after the delete brings the key back.
        expect(await apply(ks.map((k) => kv(k, 40, k * 2)), single)).toEqual({ kv: { applied: keys, skipped: 0 } });
        expect(await kvRows(base, base + keys - 1)).toEqual(ks.map((k) => [k, k * 2, 'v40']));
        // The ledger holds the last version of each key.
        const ledger = (await target.knex('tandem_applied').where('tbl', 'kv').whereIn('row_key', ks.map((k) => `t,${k}`))) as Array<{ seq: number | string }>;
        expect(ledger.map((l) => Number(l.seq))).toEqual(ks.map(() => 40));
      });
    }
});
