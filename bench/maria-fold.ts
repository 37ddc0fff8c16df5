/**
 * The MariaDB primary write alone, classic transaction against the fold
 * (src/db/dialects/mariadb-fold.ts), measured in one process on one pool and interleaved
 * batch by batch (alternating order), so both see the same machine load: the figure the
 * full bench cannot isolate on a shared machine, where the inline apply to the target and
 * other processes dominate its noise.
 *
 *   node --import tsx bench/maria-fold.ts [source-only|dual-write] [concurrency 1] [rounds 6]
 *
 * Each batch is 200 inserts of a 4-column row; the classic path runs as WriteService.runOps
 * does (BEGIN, state row FOR SHARE, INSERT … RETURNING, outbox row, COMMIT). Uses a scratch
 * database `tandem_bench_mfold` on TANDEM_BENCH_MYSQL_URL (default mysql://root@127.0.0.1:3306/mysql).
 */
import { MariaFold } from '../src/db/dialects/mariadb-fold.js';
import { ensureInternalTables } from '../src/db/internal-tables.js';
import { destroyStore, makeStore } from '../src/db/store.js';
import { readStateForShare } from '../src/db/table-state.js';
import { encodeImage } from '../src/outbox/image-codec.js';
import { insertOutboxRow } from '../src/outbox/insert-outbox-row.js';
import { formatKey } from '../src/policy/row-key.js';

const DB = 'tandem_bench_mfold';
const dual = process.argv[2] === 'dual-write';
const concurrency = Number(process.argv[3] ?? 1);
const rounds = Number(process.argv[4] ?? 6);
const BATCH = 200;

const adminUrl = new URL(process.env['TANDEM_BENCH_MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/mysql');
const options = { statementTimeoutMs: 5000, poolMax: 10, acquireTimeoutMs: 5000, connectTimeoutMs: 5000 };
const admin = makeStore('source', adminUrl.toString(), options);
await admin.knex.raw(`DROP DATABASE IF EXISTS ${DB}`);
await admin.knex.raw(`CREATE DATABASE ${DB}`);
const url = new URL(adminUrl);
url.pathname = `/${DB}`;
const store = makeStore('source', url.toString(), options);
await ensureInternalTables(store);
await store.knex.schema.createTable('items', (t) => {
  t.bigIncrements('id').primary();
  t.string('name', 40);
  t.integer('qty');
  t.datetime('at', { precision: 3 });
});
const side = { name: 'items', table: 'items', key: ['id'] };
await store.knex('tandem_state').insert({ tbl: 'items', role: 'primary', epoch: 1, dual_write: dual ? 1 : 0, ever_dual_write: 1, stale: 0, stale_reason: null, updated_at: Date.now() });
const fold = new MariaFold(store.knex, side, formatKey, encodeImage, (connection) => store.adapter.destroyConnection(connection));
const values = () => ({ name: `n${Math.random()}`, qty: 3, at: new Date() });

async function classic(): Promise<void> {
  await store.knex.transaction(async (trx) => {
    const state = await readStateForShare(trx, store.adapter, 'items');
    if (state?.role !== 'primary') throw new Error('not primary');
    const row = await store.adapter.insertReturning(trx, side, values());
    if (state.dualWrite && row) {
      await insertOutboxRow(trx, store, { table: 'items', rowKey: formatKey([row['id']]), op: 'upsert', image: encodeImage(row), epoch: state.epoch, notBefore: Date.now() + 2000 });
    }
  });
}

async function folded(): Promise<void> {
  const now = Date.now();
  const outcome = await fold.run({ op: 'insert', values: values() }, now, now + 2000);
  if (outcome.kind !== 'written') throw new Error(`fold: ${outcome.kind}`);
}

type Path = 'classic' | 'fold';
const stats: Record<Path, { ms: number[]; wallMs: number; n: number }> = { classic: { ms: [], wallMs: 0, n: 0 }, fold: { ms: [], wallMs: 0, n: 0 } };

async function batch(name: Path): Promise<void> {
  const write = name === 'classic' ? classic : folded;
  let left = BATCH;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) {
        const t = performance.now();
        await write();
        stats[name].ms.push(performance.now() - t);
      }
    }),
  );
  stats[name].wallMs += performance.now() - started;
  stats[name].n += BATCH;
}

try {
  // Warm-up: connections, plans, JIT.
  await batch('classic');
  await batch('fold');
  for (const s of Object.values(stats)) Object.assign(s, { ms: [], wallMs: 0, n: 0 });
  for (let r = 0; r < rounds; r++) for (const name of (r % 2 ? ['fold', 'classic'] : ['classic', 'fold']) as Path[]) await batch(name);
  const at = (ms: number[], p: number) => [...ms].sort((a, b) => a - b)[Math.min(ms.length - 1, Math.floor(p * ms.length))]?.toFixed(2);
  for (const [name, s] of Object.entries(stats)) {
    console.log(`${dual ? 'dual-write' : 'source-only'} c=${concurrency} ${name}: ${(s.n / (s.wallMs / 1000)).toFixed(0)} writes/s, p50 ${at(s.ms, 0.5)} ms, p99 ${at(s.ms, 0.99)} ms (n=${s.n})`);
  }
} finally {
  await destroyStore(store);
  await admin.knex.raw(`DROP DATABASE IF EXISTS ${DB}`);
  await destroyStore(admin);
}
