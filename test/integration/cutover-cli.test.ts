/**
 * `tandem cutover <table>` and `tandem rollback <table>` as subprocesses against a running
 * Tandem (also a subprocess) with a local flag file: the pre-flip checks, the flip, the
 * progress lines, exit 0 once the new primary takes writes; a failed check exits 1 without
 * flipping. The CLI logic does not depend on the engines: SQLite on both sides.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { childTandemEnv, spawnTandem, type TandemChild } from '../helpers/child.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { call } from '../helpers/http-client.js';
import { createTestTables } from '../helpers/schema.js';
import { runCli } from '../helpers/tools.js';

describe('tandem cutover / rollback (CLI)', () => {
  let source: TestDatabase | undefined;
  let target: TestDatabase | undefined;
  let child: TandemChild | undefined;

  afterAll(async () => {
    if (child && child.process.exitCode === null) {
      child.process.kill('SIGKILL');
      await child.exited;
    }
    await source?.drop();
    await target?.drop();
  });

  it('checks, flips the flag file, follows the switch and exits 0; a failed pre-flip check exits 1 without flipping', async () => {
    source = await createTestDatabase('sqlite', 'clicutsrc');
    target = await createTestDatabase('sqlite', 'clicuttgt');
    await createTestTables(source.knex, target.knex);
    const on = (name: string) => ({ name, enabled: true, strategies: [{ name: 'default' }] });
    const { env, flagsFile } = childTandemEnv({
      prefix: 'tandem-clicut-',
      source,
      target,
      flags: { version: 2, features: [on('tandem.kv.dual-write')] },
      flagsName: 'flags.yaml',
      config: 'stages:\n  reconcileIntervalMs: 200\nflags:\n  refreshIntervalMs: 200\n',
    });
    child = await spawnTandem(['serve'], env);
    const url = ['--url', child.url];
    expect((await call(child.url, 'PUT', '/v1/tables/kv/rows/a,1', { values: { val: 1 } })).status).toBe(201);

    const help = await runCli(['cutover', '--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: tandem cutover \[options\] <table>/);

    // people is not dual-writing: the check fails, nothing is flipped.
    const refused = await runCli(['cutover', 'people', ...url], env);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/check failed: dual-write is off/);
    expect(readFileSync(flagsFile, 'utf8')).not.toMatch(/people\.target-primary/);

    const cut = await runCli(['cutover', 'kv', ...url], env);
    expect(cut.code, cut.stdout + cut.stderr).toBe(0);
    expect(cut.stdout).toMatch(/tandem\.kv\.target-primary: on/);
    expect(cut.stdout).toMatch(/the target is the primary \(epoch 2\)/);
    const written = await call(child.url, 'PUT', '/v1/tables/kv/rows/a,2', { values: { val: 2 } });
    expect(written.primary).toBe('target');

    const status = await runCli(['status', ...url], env);
    expect(status.stdout).toMatch(/kv\s+target-primary\s+target\s+2\s/);

    const back = await runCli(['rollback', 'kv', ...url], env);
    expect(back.code, back.stdout + back.stderr).toBe(0);
    expect(back.stdout).toMatch(/the source is the primary \(epoch 3\)/);
    expect((await call(child.url, 'PUT', '/v1/tables/kv/rows/a,3', { values: { val: 3 } })).primary).toBe('source');
  }, 90_000);
});
