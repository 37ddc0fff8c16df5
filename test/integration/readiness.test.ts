/**
 * Issue 14 item 14 (DESIGN §7): /readyz says whether this instance can take writes — the
 * primary answers and flags are loaded. During a target outage writes are still accepted
 * (queued in the outbox), so Tandem stays ready and reports the secondary's state instead.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, runnablePairs, viaProxy } from '../helpers/databases.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { call } from '../helpers/http-client.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { startTandem, waitFor } from '../helpers/tandem.js';

const pairs = runnablePairs().filter((p) => p.target !== 'sqlite' && p.source !== 'sqlite');
if (pairs.length === 0) {
  describe.skip('readiness follows the primary (needs PostgreSQL or MariaDB: faults need a network)', () => {
    it('runs when TANDEM_TEST_PG_URL / TANDEM_TEST_MYSQL_URL are set', () => undefined);
  });
}
for (const pair of pairs) {
  describe(`readiness follows the primary, not the secondary (${pair.name})`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterAll(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => console.warn(`cleanup failed: ${String(e)}`));
    });

    it('target down: writes are queued and /readyz stays 200 naming the secondary; primary down: 503', async () => {
      const source = await createTestDatabase(pair.source, 'readysrc');
      cleanups.push(() => source.drop());
      const target = await createTestDatabase(pair.target, 'readytgt');
      cleanups.push(() => target.drop());
      await createTestTables(source.knex, target.knex);
      const toTarget = await startFaultProxy({ targetHost: target.host, targetPort: target.port });
      cleanups.push(() => toTarget.close());
      const toSource = await startFaultProxy({ targetHost: source.host, targetPort: source.port });
      cleanups.push(() => toSource.close());
      const tandem = await startTandem({ source: viaProxy(source, toSource.port), target: viaProxy(target, toTarget.port), policiesDir: writeTestPolicies(), listen: true });
      cleanups.push(async () => {
        await toTarget.set('pass');
        await toSource.set('pass');
        await tandem.stop();
      });
      const base = `http://127.0.0.1:${tandem.app.address().port}`;
      expect((await call(base, 'GET', '/readyz')).status).toBe(200);

      await toTarget.set('refuse');
      const write = await waitFor(async () => {
        const res = await call(base, 'PUT', '/v1/tables/kv/rows/t,7', { values: { val: 7 } });
        return res.status === 201 && res.write === 'queued' ? res : false;
      }, { what: 'a write queued while the target is down' });
      expect((write as { status: number }).status).toBe(201);
      const ready = await call(base, 'GET', '/readyz');
      expect(ready.status).toBe(200);
      const body = ready.body as { ready: boolean; source: string; secondary: { target: string; breaker: string } };
      expect(body.ready).toBe(true);
      expect(body.source).toBe('ok');
      expect(body.secondary.target).toMatch(/^unreachable/);

      await toSource.set('refuse');
      const down = await call(base, 'GET', '/readyz');
      expect(down.status).toBe(503);
      expect((down.body as { source: string }).source).toMatch(/^unreachable/);
    });
  });
}
