/**
 * DESIGN §3: "a kill -9 of Tandem at any point ends, once the outbox is drained, with
 * map(source) == target for every key, and every write acknowledged with 2xx is in the
 * primary". Tandem runs as a child process (the built CLI), is SIGKILLed in the middle of
 * concurrent writes, twice, and restarted each time.
 */
import { performance } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { childTandemEnv, spawnTandem, type TandemChild } from '../helpers/child.js';
import { createTestDatabase, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { call, seededRandom, sleep, type CallResult } from '../helpers/http-client.js';
import { convergence, createTestTables } from '../helpers/schema.js';
import { outboxCounts, waitFor } from '../helpers/tandem.js';

/** One write sent to Tandem, with what came back. `end` bounds when it can have committed. */
interface SentWrite {
  seq: number;
  phase: number;
  kind: 'put' | 'patch' | 'delete' | 'insert';
  /** kv key k (tenant 't'), or -1 for people inserts. */
  key: number;
  /** people inserts: the unique email sent. */
  email?: string;
  res: CallResult;
  /**
   * Latest moment the write can have committed on the primary: its answer for an answered
   * write; for one in flight at the kill, the moment the next Tandem was ready (a COMMIT
   * already on the wire may land after the kill, but before any later phase's writes start).
   */
  end: number;
}

const LOOPS = 8;
const KV_KEYS = 50;
const PHASES = 2;

const FLAGS = {
  version: 2,
  features: [
    { name: 'tandem.people.dual-write', enabled: true, strategies: [{ name: 'default' }] },
    { name: 'tandem.kv.dual-write', enabled: true, strategies: [{ name: 'default' }] },
  ],
};

/** A write changed the primary's state for sure when it answered one of these. */
function committed(w: SentWrite): boolean {
  const s = w.res.status;
  return (w.kind === 'put' && (s === 200 || s === 201)) || (w.kind === 'patch' && s === 200) || (w.kind === 'delete' && s === 204) || (w.kind === 'insert' && s === 201);
}

/** In flight when Tandem died: it may or may not have committed. */
function unresolved(w: SentWrite): boolean {
  return w.res.status === 0;
}

for (const pair of runnablePairs()) {
  describe(`kill -9 of Tandem under concurrent writes (${pair.name})`, () => {
    let source: TestDatabase | undefined;
    let target: TestDatabase | undefined;
    let child: TandemChild | undefined;

    afterAll(async () => {
      if (child && child.process.exitCode === null && child.process.signalCode === null) {
        child.process.kill('SIGKILL');
        await child.exited;
      }
      await source?.drop();
      await target?.drop();
    });

    it('loses no acknowledged write and converges after two SIGKILLs and restarts', async () => {
      source = await createTestDatabase(pair.source, 'crashsrc');
      target = await createTestDatabase(pair.target, 'crashtgt');
      await createTestTables(source.knex, target.knex);
      // Production settings except the claim lease (default 30 s), so rows a killed worker had
      // claimed come back within the test's time.
      const { env } = childTandemEnv({ prefix: 'tandem-crash-', source, target, flags: FLAGS, config: 'outbox:\n  leaseMs: 3000\n' });
      const seed = Number(process.env['TANDEM_TEST_SEED'] ?? Date.now() % 1_000_000);
      const random = seededRandom(seed);
      const writes: SentWrite[] = [];
      let seq = 0;
      const logs: string[] = [];

      child = await spawnTandem(['serve'], env);
      for (let phase = 1; phase <= PHASES; phase++) {
        const running = child;
        let sending = true;
        const inPhase: SentWrite[] = [];
        const loop = async (n: number) => {
          const r = seededRandom(seed * 31 + phase * 1000 + n);
          while (sending) {
            const s = ++seq;
            const roll = r();
            let w: Omit<SentWrite, 'res' | 'end'>;
            let req: Promise<CallResult>;
            if (roll < 0.25) {
              const email = `c${n}-${s}@crash`;
              w = { seq: s, phase, kind: 'insert', key: -1, email };
              req = call(running.url, 'POST', '/v1/tables/people/rows', { values: { email, full_name: `crash ${s}`, age: s % 100, legacy: 'x' } });
            } else {
              const key = 1 + Math.floor(r() * KV_KEYS);
              const path = `/v1/tables/kv/rows/t,${key}`;
              const values = { val: s, note: `w${s}` };
              if (roll < 0.55) {
                w = { seq: s, phase, kind: 'put', key };
                req = call(running.url, 'PUT', path, { values });
              } else if (roll < 0.8) {
                w = { seq: s, phase, kind: 'patch', key };
                req = call(running.url, 'PATCH', path, { values });
              } else {
                w = { seq: s, phase, kind: 'delete', key };
                req = call(running.url, 'DELETE', path);
              }
            }
            const res = await req;
            const record: SentWrite = { ...w, res, end: res.doneAt };
            inPhase.push(record);
            writes.push(record);
          }
        };
        const started = performance.now();
        const loops = Array.from({ length: LOOPS }, (_, n) => loop(n));
        await sleep(1_000 + Math.floor(random() * 1_000));
        // No request is sent after this point; those already sent are in flight at the kill.
        sending = false;
        running.process.kill('SIGKILL');
        const killedAt = performance.now();
        const exit = await running.exited;
        await Promise.all(loops);
        child = await spawnTandem(['serve'], env);
        const readyAt = performance.now();
        for (const w of inPhase) if (unresolved(w)) w.end = readyAt;
        const byStatus: Record<string, number> = {};
        for (const w of inPhase) byStatus[w.res.status] = (byStatus[w.res.status] ?? 0) + 1;
        const ms = inPhase.filter((w) => w.res.status !== 0).map((w) => w.res.ms).sort((a, b) => a - b);
        const at = (q: number) => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0);
        logs.push(
          `phase ${phase}: ${inPhase.length} writes in ${Math.round(killedAt - started)} ms (latency p50 ${at(0.5)} ms, p95 ${at(0.95)} ms), statuses ${JSON.stringify(byStatus)} ` +
            `(0 = in flight at the kill); exit ${exit.signal ?? exit.code}; restart ready in ${Math.round(readyAt - killedAt)} ms`,
        );
        expect(exit.signal).toBe('SIGKILL');
      }

      const drainStart = performance.now();
      let counts = { pending: -1, dead: -1, done: -1 };
      await waitFor(
        async () => {
          counts = await outboxCounts((source as TestDatabase).knex);
          return counts.pending === 0;
        },
        { timeoutMs: 25_000, intervalMs: 100, what: 'the source outbox to have no pending rows after the restart' },
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}\n--- tandem output ---\n${child?.output().slice(-4000)}`);
      });
      const drainMs = performance.now() - drainStart;
      console.log(`[crash ${pair.name}] seed=${seed}\n  ${logs.join('\n  ')}\n  outbox drained ${Math.round(drainMs)} ms after the last restart: ${JSON.stringify(counts)}`);

      // Answers: only the kill may cut a request short; the primary never failed.
      const allowed: Record<SentWrite['kind'], number[]> = { put: [200, 201, 0], patch: [200, 404, 0], delete: [204, 404, 0], insert: [201, 0] };
      const odd = writes.filter((w) => !allowed[w.kind].includes(w.res.status));
      expect(odd.map((w) => `${w.kind} #${w.seq} → ${w.res.status} ${JSON.stringify(w.res.body)}`)).toEqual([]);
      expect(writes.filter(committed).length).toBeGreaterThan(20);

      expect(counts.dead).toBe(0);
      const state = await convergence(source.knex, target.knex);
      expect(state.kv.actual).toEqual(state.kv.expected);
      expect(state.people.actual).toEqual(state.people.expected);

      // people: every acknowledged insert is in the source, as answered; nothing we did not send is.
      const people = (await source.knex('people').select('id', 'email')) as Array<{ id: number | string; email: string }>;
      const byId = new Map(people.map((p) => [Number(p.id), p.email]));
      const inserts = writes.filter((w) => w.kind === 'insert');
      const lostInserts = inserts
        .filter(committed)
        .filter((w) => byId.get(Number((w.res.body as { row: { id: number } }).row.id)) !== w.email)
        .map((w) => `${w.email} (id ${(w.res.body as { row: { id: number } }).row.id})`);
      expect(lostInserts, 'acknowledged inserts missing from the source').toEqual([]);
      const sentEmails = new Set(inserts.filter((w) => committed(w) || unresolved(w)).map((w) => w.email));
      expect(people.filter((p) => !sentEmails.has(p.email)).map((p) => p.email)).toEqual([]);

      // kv: the source's row for each key is the effect of a write that may have been the last to
      // commit. Write W is ruled out as the final state when an acknowledged state-changing write
      // A to the same key was sent after W can last have committed (A.sent > W.end): A then
      // certainly committed after W.
      const kv = (await source.knex('kv').select('tenant', 'k', 'val', 'note')) as Array<{ tenant: string; k: number | string; val: number | string; note: string }>;
      const rows = new Map(kv.map((r) => [Number(r.k), r]));
      expect(kv.every((r) => r.tenant === 't')).toBe(true);
      const problems: string[] = [];
      for (let key = 1; key <= KV_KEYS; key++) {
        const history = writes.filter((w) => w.key === key);
        const acked = history.filter(committed);
        const supersededAt = (end: number) => acked.find((a) => a.res.sentAt > end);
        const row = rows.get(key);
        const describe = (w: SentWrite) => `${w.kind} #${w.seq} (phase ${w.phase}, ${w.res.status || 'in flight'})`;
        if (row) {
          const val = Number(row.val);
          const author = history.find((w) => w.seq === val && (w.kind === 'put' || w.kind === 'patch'));
          if (!author) {
            problems.push(`kv t,${key}: source holds val ${val}, which no write set`);
            continue;
          }
          if (row.note !== `w${val}`) problems.push(`kv t,${key}: val ${val} with note ${row.note}: a torn row`);
          if (!committed(author) && !unresolved(author)) {
            problems.push(`kv t,${key}: source holds the value of ${describe(author)}, which was refused`);
            continue;
          }
          const later = supersededAt(author.end);
          if (later) problems.push(`kv t,${key}: source holds ${describe(author)} but the acknowledged ${describe(later)} came after it: LOST`);
        } else {
          // Absent: explained by a delete that may be last, or by no acknowledged write at all.
          const deletes = history.filter((w) => w.kind === 'delete' && (committed(w) || unresolved(w)));
          const explained = acked.length === 0 || deletes.some((d) => !supersededAt(d.end));
          if (!explained) {
            const last = acked[acked.length - 1] as SentWrite;
            problems.push(`kv t,${key}: absent from the source, but the acknowledged ${describe(last)} is not followed by any delete: LOST`);
          }
        }
      }
      expect(problems).toEqual([]);
    });
  });
}
