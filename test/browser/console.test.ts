import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { axeViolations, chromiumAvailable, launchBrowser, screenshot, type Browser } from '../helpers/browser.js';
import { createTestDatabase, PAIRS, runnablePairs, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, PEOPLE_POLICY, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, outboxCounts, startTandem, waitFor, type TandemHarness } from '../helpers/tandem.js';

/**
 * The console in a real browser (Debian's Chromium driven by playwright-core) against a real
 * Tandem listening on a port: sign in, the board, a read percentage changed from the page
 * and followed by the routing, a verify with its progress and result, a dead row replayed,
 * a tripped brake released, an accessibility scan, screenshots (test-results/console/).
 */

const ADMIN = 'console-admin-token';
const DATA = 'console-data-token';
// Few samples, so a handful of drifted shadow reads trips the brake.
const BRAKE_POLICY = `${PEOPLE_POLICY}safety: { maxTargetErrorRate: 0.5, minConsistency: 0.99, maxLagSeconds: 120, window: 60s, minSamples: 10 }
`;
const ROWS = 2_000;
/** The board polls every 2 s: give the page a few rounds. */
const POLL = { timeout: 10_000 };

const pairs = chromiumAvailable() ? runnablePairs(PAIRS.filter((p) => p.name === 'sqlite→sqlite' || p.name === 'postgres→mariadb')) : [];
if (pairs.length === 0) describe.skip('console in a browser (no Chromium)', () => it('skipped', () => undefined));

for (const pair of pairs) {
  describe(`console in a browser (${pair.name})`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let tandem: TandemHarness;
    let browser: Browser;
    let page: Page;
    let base: string;
    const shot = (name: string) => screenshot(page, `${pair.source}-${pair.target}-${name}`);
    const data = () => ({ authorization: `Bearer ${DATA}` });
    const admin = () => ({ authorization: `Bearer ${ADMIN}` });
    const row = (table: string) => page.locator(`tr[data-table="${table}"]`);

    beforeAll(async () => {
      source = await createTestDatabase(pair.source, 'uisrc');
      target = await createTestDatabase(pair.target, 'uitgt');
      await createTestTables(source.knex, target.knex);
      // A unique index only the target has: one write below can never apply and goes dead.
      await target.knex.schema.alterTable('app_people', (t) => t.unique(['name'], { indexName: 'app_people_name_unique' }));
      tandem = await startTandem({
        source: source.url,
        target: target.url,
        policiesDir: writeTestPolicies({ 'people.yaml': BRAKE_POLICY }),
        flags: DUAL_WRITE_ALL,
        listen: true,
        env: { TANDEM_HOST: '127.0.0.1', TANDEM_ADMIN_TOKEN: ADMIN, TANDEM_API_TOKENS: DATA },
        overrides: { outbox: { maxAttempts: 2 } },
      });
      base = `http://127.0.0.1:${tandem.app.address().port}`;
      for (let start = 0; start < ROWS; start += 500) {
        const ops = Array.from({ length: 500 }, (_, i) => ({
          op: 'insert',
          table: 'people',
          values: { id: start + i + 1, email: `u${start + i + 1}@x.test`, full_name: `Person ${start + i + 1}`, age: i % 90 },
        }));
        await tandem.request.post('/v1/batch').set(data()).send({ ops }).expect(200);
      }
      await tandem.request.post('/v1/tables/kv/rows').set(data()).send({ values: { tenant: 'a', k: 1, val: 1 } }).expect(201);
      // Same name as person 5: the target's unique index rejects it, twice, and it goes dead.
      await tandem.request.post('/v1/tables/people/rows').set(data()).send({ values: { id: ROWS + 1, email: 'dup@x.test', full_name: 'Person 5' } }).expect(201);
      await waitFor(async () => (await outboxCounts(source.knex)).dead === 1 && (await outboxCounts(source.knex)).pending === 0, { what: 'one dead row', timeoutMs: 20_000 });
      browser = await launchBrowser();
      page = await browser.context.newPage();
    });

    afterAll(async () => {
      await browser?.close();
      await tandem?.stop();
      await source?.drop();
      await target?.drop();
    });

    it('shows the sign-in form without a token: the API answers 401, and 403 for a data token', async () => {
      await page.goto(`${base}/console`);
      await expect.poll(() => page.getByLabel('Admin token').isVisible(), POLL).toBe(true);
      const anonymous = await page.evaluate(async () => (await fetch('/admin/status')).status);
      expect(anonymous).toBe(401);
      const withData = await page.evaluate(async (token) => (await fetch('/admin/status', { headers: { authorization: `Bearer ${token}` } })).status, DATA);
      expect(withData).toBe(403);

      await page.getByLabel('Admin token').fill(DATA);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await expect.poll(() => page.getByRole('alert').first().textContent(), POLL).toContain('not the admin token');
      expect(await page.locator('table.board').count()).toBe(0);
      await shot('sign-in-refused');
    });

    it('signs in with the admin token (kept for the tab) and shows a row per table', async () => {
      await page.getByLabel('Admin token').fill(ADMIN);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await expect.poll(() => row('people').isVisible(), POLL).toBe(true);
      expect(await row('kv').isVisible()).toBe(true);
      expect(await page.evaluate("sessionStorage.getItem('tandem.adminToken')")).toBe(ADMIN);
      const people = (await row('people').innerText()).replace(/\s+/g, ' ');
      expect(people).toContain('dual-write');
      expect(people).toContain('0 % / 0 %');
      expect(people).toContain('1 dead');
      // A reload keeps the tab's token: no sign-in form.
      await page.reload();
      await expect.poll(() => row('people').isVisible(), POLL).toBe(true);
      await shot('board');
    });

    it('changes the read percentage with the slider: the board and the routing follow', async () => {
      expect((await tandem.request.get('/v1/tables/people/rows/10').set(data()).expect(200)).headers['tandem-read']).toBe('source');
      await row('people').getByRole('button', { name: /Details/ }).click();
      const slider = page.getByLabel(/Reads served by the target/);
      await slider.fill('100');
      await page.getByRole('button', { name: 'Apply tandem.people.read-target' }).click();
      const dialog = page.getByRole('dialog');
      await expect.poll(() => dialog.textContent(), POLL).toContain('from 0 % to 100 %');
      await dialog.getByRole('button', { name: 'Set to 100 %' }).click();
      await expect.poll(() => row('people').locator('td.reads').textContent(), { timeout: 15_000 }).toBe('100 % / 0 %');
      const reads = await Promise.all([10, 11, 12].map(async (id) => (await tandem.request.get(`/v1/tables/people/rows/${id}`).set(data()).expect(200)).headers['tandem-read']));
      expect(reads).toEqual(['target', 'target', 'target']);
      await shot('read-target-100');
    });

    it('runs a verify from the page and shows its progress and result', async () => {
      await page.getByRole('button', { name: 'Verify', exact: true }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Verify people' }).click();
      const job = page.locator('.job');
      await expect.poll(() => job.getAttribute('data-state'), { timeout: 30_000 }).toBe('succeeded');
      expect(await job.locator('progress').getAttribute('value')).toBe('100');
      const figures = await job.locator('.job-figures').innerText();
      expect(figures).toMatch(/rows\/s/);
      // The dead row's key is missing in the target: the verify says so, in words.
      const result = await job.locator('.job-result').innerText();
      expect(result).toContain('DRIFT');
      expect(result).toContain(`${ROWS} matching`);
      expect(result).toContain('1 missing in target');
      await expect.poll(() => row('people').locator('td.last-verify').innerText(), POLL).toContain('DRIFT');
      await shot('verify-done');
    });

    it('lists the dead row with its error and attempts, and replays it once the cause is fixed', async () => {
      const dead = page.locator('table.dead tbody tr');
      await expect.poll(() => dead.count(), POLL).toBe(1);
      const text = await dead.first().innerText();
      expect(text).toContain(String(ROWS + 1));
      expect(text).toMatch(/\b2\b/); // attempts
      expect(text.toLowerCase()).toMatch(/unique|duplicate/);
      await target.knex.schema.alterTable('app_people', (t) => t.dropUnique(['name'], 'app_people_name_unique'));
      await dead.first().getByRole('button', { name: /Replay/ }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Replay' }).click();
      await expect.poll(() => page.getByRole('status').first().textContent(), POLL).toContain('1 dead row(s) of people made pending again');
      await waitFor(async () => (await target.knex('app_people').where({ id: ROWS + 1 }).first()) !== undefined, { what: 'the replayed row in the target' });
      await expect.poll(() => row('people').locator('td.outbox').innerText(), { timeout: 15_000 }).toBe('0 / 0');
      expect(await dead.count()).toBe(0);
    });

    it('runs a throttled backfill and shows its progress bar, rate and ETA while it runs, then its result', async () => {
      await page.getByLabel('Backfill rate limit (rows/s, empty for none)').fill('500');
      await page.getByRole('button', { name: 'Backfill', exact: true }).click();
      const dialog = page.getByRole('dialog');
      await expect.poll(() => dialog.textContent(), POLL).toContain('at most 500 rows/s');
      await dialog.getByRole('button', { name: 'Backfill people' }).click();
      const job = page.locator('.job');
      // At 500 rows/s the 2,001 rows take about 4 s: the page shows the run while it lasts.
      await expect.poll(() => job.getAttribute('data-state'), POLL).toBe('running');
      await expect.poll(() => job.locator('.job-figures').innerText(), POLL).toMatch(/copy: [1-9]\d* \/ 2001 rows · \d+ rows\/s · ETA \d+ s/);
      const shownRate = Number(/· (\d+) rows\/s/.exec(await job.locator('.job-figures').innerText())?.[1]);
      expect(shownRate).toBeGreaterThan(0);
      expect(shownRate).toBeLessThanOrEqual(550); // the rate it keeps under the 500 rows/s limit, not its bursts
      const midway = Number(await job.locator('progress').getAttribute('value'));
      expect(midway).toBeGreaterThan(0);
      expect(midway).toBeLessThan(100);
      expect(await page.getByRole('button', { name: 'Verify', exact: true }).isDisabled()).toBe(true); // one job at a time
      await shot('backfill-running');
      await expect.poll(() => job.getAttribute('data-state'), { timeout: 30_000 }).toBe('succeeded');
      expect(await job.locator('progress').getAttribute('value')).toBe('100');
      // Every key is already in the target's ledger (dual-write from the start, the dead row replayed): all skipped, none overwritten.
      expect(await job.locator('.job-result').innerText()).toMatch(/^Finished: 0 copied, 2001 skipped/);
    });

    it('shows a tripped brake with its signal and threshold, and releases it', async () => {
      await tandem.request.put('/admin/flags/tandem.people.shadow-read').set(admin()).send({ value: 100 }).expect(200);
      await expect.poll(() => row('people').locator('td.reads').textContent(), { timeout: 15_000 }).toBe('100 % / 100 %');
      await target.knex('app_people').whereBetween('id', [100, 140]).update({ name: 'drifted' });
      for (let id = 100; id <= 140; id++) await tandem.request.get(`/v1/tables/people/rows/${id}`).set(data()).expect(200);
      await expect.poll(() => row('people').locator('td.brake').innerText(), { timeout: 15_000 }).toContain('TRIPPED');
      expect(await row('people').locator('td.brake').innerText()).toMatch(/consistency: .*% past 99\.00 %/);
      expect((await tandem.request.get('/v1/tables/people/rows/150').set(data()).expect(200)).headers['tandem-read']).toBe('source');
      await shot('brake-tripped');
      await page.getByRole('button', { name: 'Release brake' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Release the brake' }).click();
      await expect.poll(() => row('people').locator('td.brake').innerText(), POLL).toContain('off');
      const status = (await tandem.request.get('/admin/status').set(admin()).expect(200)).body as { tables: Array<{ table: string; brake: { active: boolean } }> };
      expect(status.tables.find((t) => t.table === 'people')?.brake.active).toBe(false);
      expect((await tandem.request.get('/v1/tables/people/rows/150').set(data()).expect(200)).headers['tandem-read']).toBe('target');
    });

    it('draws the charts from the in-process history', async () => {
      // The ring samples every 5 s: wait for two samples, then for the page's next poll.
      await waitFor(async () => ((await tandem.request.get('/admin/tables/people/history').set(admin()).expect(200)).body as { t: number[] }).t.length >= 2, {
        what: 'two history samples',
        timeoutMs: 15_000,
      });
      await expect.poll(() => page.locator('.chart canvas').count(), { timeout: 15_000 }).toBe(5);
      const history = (await tandem.request.get('/admin/tables/people/history').set(admin()).expect(200)).body as {
        intervalSeconds: number;
        series: Record<string, Array<number | null>>;
      };
      const total = (name: string) => (history.series[name] ?? []).reduce<number>((sum, v) => sum + (v ?? 0), 0);
      // Every write of this file happened after the ring started and before its last sample.
      expect(Math.round(total('sourceWritesPerSecond') * history.intervalSeconds)).toBeGreaterThanOrEqual(ROWS + 1); // 2000 rows and the duplicate
      expect(total('applied')).toBeGreaterThanOrEqual(ROWS);
      expect(total('applyFailed')).toBeGreaterThanOrEqual(2); // the dead row's two attempts
      expect(await page.locator('.chart [role="img"]').first().getAttribute('aria-label')).toMatch(/^Writes per second, per store chart, latest /);
      await shot('details');
    });

    it('has no serious or critical accessibility violations, on a laptop and a phone', async () => {
      for (const [label, viewport] of [
        ['laptop', { width: 1280, height: 900 }],
        ['phone', { width: 390, height: 844 }],
      ] as const) {
        await page.setViewportSize(viewport);
        await page.waitForTimeout(300);
        const violations = (await axeViolations(page)).filter((v) => v.impact === 'serious' || v.impact === 'critical');
        expect(violations, `${label}: ${JSON.stringify(violations, null, 2)}`).toEqual([]);
        await shot(`board-${label}`);
        // On a phone the board must not need sideways scrolling.
        if (label === 'phone') expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth + 1')).toBe(true);
      }
      await page.setViewportSize({ width: 1280, height: 900 });
    });

    it('is keyboard reachable: Tab reaches the details buttons and the confirmation closes with Escape', async () => {
      await page.goto(`${base}/console`);
      await expect.poll(() => row('kv').isVisible(), POLL).toBe(true);
      let reached = false;
      for (let i = 0; i < 40 && !reached; i++) {
        await page.keyboard.press('Tab');
        reached = await page.evaluate("document.activeElement?.textContent?.includes('Details and actions for kv') ?? false");
      }
      expect(reached).toBe(true);
      await page.keyboard.press('Enter');
      await expect.poll(() => page.locator('#detail-title').textContent(), POLL).toContain('kv');
      await page.getByRole('button', { name: 'Verify', exact: true }).focus();
      await page.keyboard.press('Enter');
      await expect.poll(() => page.getByRole('dialog').isVisible(), POLL).toBe(true);
      await page.keyboard.press('Escape');
      await expect.poll(() => page.getByRole('dialog').count(), POLL).toBe(0);
    });
  });
}
