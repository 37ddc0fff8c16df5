import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { createTestTables, writeTestPolicies } from '../helpers/schema.js';
import { DUAL_WRITE_ALL, startTandem, writeFlags, type TandemHarness } from '../helpers/tandem.js';
import { parseJson, runCli, toolEnv, type CliResult } from '../helpers/tools.js';

/**
 * The CLI speaks like the tools operators know (commander): every subcommand answers --help
 * with its options and an example, unknown options are refused with a suggestion, --json
 * output parses, and there is no colour when stdout is not a terminal.
 */

/** Subcommand names listed under "Commands:" in a help text ("help" itself excluded). */
function subcommands(help: string): string[] {
  const section = help.split(/^Commands:\s*$/m)[1]?.split(/^\S/m)[0] ?? '';
  return section
    .split('\n')
    .map((line) => /^ {2}([a-z][a-z-]*)\b/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined && name !== 'help');
}

function ok(result: CliResult): CliResult {
  expect(result.signal, result.stderr).toBeNull();
  expect(result.code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0);
  return result;
}

describe('tandem CLI: help, options, --json', () => {
  let source: TestDatabase;
  let target: TestDatabase;
  let tandem: TandemHarness;
  let env: Record<string, string>;

  beforeAll(async () => {
    source = await createTestDatabase('sqlite', 'clhsrc');
    target = await createTestDatabase('sqlite', 'clhtgt');
    await createTestTables(source.knex, target.knex);
    const policiesDir = writeTestPolicies();
    // A Tandem of its own only to create the internal tables and a flag file; the CLI runs beside it.
    tandem = await startTandem({ source: source.url, target: target.url, policiesDir, listen: true });
    writeFlags(tandem.flagsFile, DUAL_WRITE_ALL);
    const ops = Array.from({ length: 50 }, (_, i) => ({ op: 'insert', table: 'people', values: { id: i + 1, email: `h${i + 1}@x.test`, full_name: `H ${i + 1}` } }));
    await tandem.request.post('/v1/batch').send({ ops }).expect(200);
    env = { ...toolEnv({ source: source.url, target: target.url, policiesDir, flagsFile: tandem.flagsFile }), TANDEM_PORT: String(tandem.app.address().port) };
  });

  afterAll(async () => {
    await tandem?.stop();
    await source?.drop();
    await target?.drop();
  });

  it('every subcommand answers --help with its usage, options and an example', async () => {
    const top = ok(await runCli(['--help'], {}));
    const queue = subcommands(top.stdout).map((name) => [name]);
    expect(queue.map((q) => q[0])).toEqual(['serve', 'status', 'verify', 'backfill', 'flags', 'outbox', 'brake', 'cutover', 'rollback']);
    const walked: string[] = [];
    while (queue.length > 0) {
      const path = queue.shift() as string[];
      const help = ok(await runCli([...path, '--help'], {}));
      walked.push(path.join(' '));
      expect(help.stdout, path.join(' ')).toContain(`Usage: tandem ${path.join(' ')}`);
      expect(help.stdout, path.join(' ')).toContain('Options:');
      expect(help.stdout, path.join(' ')).toMatch(/Examples?:\n {2}\$ tandem /);
      expect(help.stdout, 'no colour when stdout is not a terminal').not.toContain('\x1b[');
      for (const name of subcommands(help.stdout)) queue.push([...path, name]);
    }
    expect(walked).toEqual(
      expect.arrayContaining(['verify', 'backfill', 'flags list', 'flags set', 'outbox list', 'outbox replay', 'brake status', 'brake release']),
    );
    // The long options each command documents are the ones it accepts.
    expect(ok(await runCli(['verify', '--help'], {})).stdout).toMatch(/--repair[\s\S]*--chunk <n>[\s\S]*--json/);
    expect(ok(await runCli(['backfill', '--help'], {})).stdout).toMatch(/--rate <n>[\s\S]*--restart/);
  });

  it('refuses an unknown option with exit 2 and suggests the near one', async () => {
    const typo = await runCli(['verify', 'people', '--repiar'], env);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("unknown option '--repiar'");
    expect(typo.stderr).toContain('Did you mean --repair?');
    const command = await runCli(['stauts'], env);
    expect(command.code).toBe(2);
    expect(command.stderr).toContain('Did you mean status?');
  });

  it('--json output parses, for the offline and the online commands', async () => {
    const flags = parseJson<{ origin: string; tables: Array<{ table: string; dualWrite: boolean }> }>(ok(await runCli(['flags', '--json'], env)));
    expect(flags.origin).toBe('file');
    expect(flags.tables.find((t) => t.table === 'people')?.dualWrite).toBe(true);
    expect(parseJson<{ rows: unknown[] }>(ok(await runCli(['outbox', 'list', '--json'], env))).rows).toEqual([]);
    const verify = parseJson<{ table: string; clean: boolean }>(ok(await runCli(['verify', 'kv', '--json'], env)));
    expect(verify).toMatchObject({ table: 'kv', clean: true });
    const status = parseJson<{ tables: Array<{ table: string }> }>(ok(await runCli(['status', '--json'], env)));
    expect(status.tables.map((t) => t.table).sort()).toEqual(['kv', 'people']);
    const brake = parseJson<Array<{ table: string }>>(ok(await runCli(['brake', 'status', '--json'], env)));
    expect(brake.map((b) => b.table).sort()).toEqual(['kv', 'people']);
  });

  it('prints human tables by default, without colour off a terminal, and progress as plain lines', async () => {
    const status = ok(await runCli(['status'], env));
    expect(status.stdout).toMatch(/^TABLE +STAGE +PRIMARY +EPOCH +SECONDARY +READS\/SHADOW/m);
    expect(status.stdout).toMatch(/^people +dual-write +source +1 +current/m);
    expect(status.stdout).not.toContain('\x1b[');
    const verify = ok(await runCli(['verify', 'people'], env));
    expect(verify.stdout).toMatch(/^verify people: clean/m);
    // Not a terminal: progress is plain lines on stderr (no carriage-return redraws).
    expect(verify.stderr).toMatch(/^verify people source \[[#.]+\]\s+\d+% \d+\/50 \d+ rows\/s/m);
    expect(verify.stderr).not.toContain('\r');
  });
});
