#!/usr/bin/env node
import { isOutboxId } from '../outbox/outbox-id.js';
import { printable } from './printable.js';
import cluster from 'node:cluster';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { DestinationStream } from 'pino';
import { TandemApp, VERSION } from '../app.js';
import {
  backfillAllCommand,
  backfillCommand,
  brakeReleaseCommand,
  brakeStatusCommand,
  flagsListCommand,
  flagsSetCommand,
  outboxListCommand,
  outboxReplayCommand,
  verifyCommand,
  adminClient,
} from './tools.js';
import { loadConfig } from '../config/load-config.js';
import { TandemError } from '../errors.js';
import { CliError, EXIT, exitCodeOf } from './exit-codes.js';
import { cutoverCommand } from './cutover-command.js';
import { createDemoSchema } from './demo-schema.js';
import { runClusterPrimary } from './cluster-primary.js';
import { formatTable, styleFor } from './term.js';

function positiveInt(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return Number(value);
}

function outboxId(value: string, previous: string[] | undefined): string[] {
  if (!isOutboxId(value)) throw new InvalidArgumentError(`expected an outbox row id (1 to 9223372036854775807), got "${printable(value.slice(0, 40))}"`);
  return [...(previous ?? []), value];
}

function example(...lines: string[]): string {
  return `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}

/** The `tandem` command: every subcommand has --help with its options and an example. */
export function makeProgram(run: (code: Promise<number> | number) => void): Command {
  const helpStyle = styleFor(process.stdout);
  const program = new Command('tandem')
    .description('Tandem: dual-write database proxy for zero-downtime migrations')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .showSuggestionAfterError(true)
    .showHelpAfterError('(add --help for the options and an example)')
    .configureHelp({ sortSubcommands: false, styleTitle: (title) => helpStyle.bold(title) })
    .exitOverride()
    .addHelpText(
      'after',
      '\nConfiguration: config/default.yaml → config/local.yaml → TANDEM_* environment → flags.\n' +
        'Exit codes: 0 done, 1 drift or unreachable, 2 usage or configuration, 3 stopped, 4 failed.\n' +
        example('tandem serve --demo', 'tandem status', 'tandem verify users --repair'),
    );

  program
    .command('serve')
    .description('run Tandem: the data API, the admin API, the console at /console')
    .option('--demo', 'create the demo tables when they are missing (embedded SQLite quickstart)')
    .option('--host <host>', 'listen address (TANDEM_HOST)')
    .option('--port <port>', 'listen port (TANDEM_PORT)')
    .option('--source <url>', 'source database URL (TANDEM_SOURCE_URL)')
    .option('--target <url>', 'target database URL (TANDEM_TARGET_URL)')
    .option('--policies <dir>', 'folder of policy files (TANDEM_POLICIES_DIR)')
    .option('--flags-file <file>', 'local flag file (TANDEM_FLAGS_FILE)')
    .addOption(new Option('--log-level <level>', 'log level (TANDEM_LOG_LEVEL)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addHelpText('after', `${example('tandem serve --demo', 'tandem serve --source postgres://app@db-old/app --target mysql://app@db-new/app --port 8080')}\nLogs: readable (pino-pretty) when stdout is a terminal, JSON lines otherwise.\n`)
    .action((options: ServeOptions) => run(serve(options)));

  program
    .command('status')
    .description('the status of a running Tandem, one line per table')
    .option('--url <url>', 'the running Tandem (default from TANDEM_HOST/TANDEM_PORT)')
    .option('--json', 'print /admin/status as JSON')
    .addHelpText('after', example('tandem status', 'tandem status --json --url http://127.0.0.1:8080'))
    .action((options: { url?: string; json?: boolean }) => run(status(options)));

  program
    .command('verify')
    .description('compare map(source) with the target; exit 1 on drift')
    .argument('<table>', 'policy name of the table')
    .option('--repair', "re-enqueue each differing key's source image, apply it, then verify again")
    .option('--chunk <n>', 'rows per chunk (default 2000)', positiveInt)
    .option('--json', 'print the report as JSON')
    .addHelpText('after', example('tandem verify users', 'tandem verify users --repair --json'))
    .action((table: string, options: { repair?: boolean; chunk?: number; json?: boolean }) => run(verifyCommand(table, options)));

  program
    .command('backfill')
    .description("copy the source's existing rows to the target; resumes from its checkpoint")
    .argument('[table]', 'policy name of the table (default: every policy table, parents before children)')
    .option('--rate <n>', 'rows per second at most', positiveInt)
    .option('--chunk <n>', 'rows per chunk (default 1000)', positiveInt)
    .option('--restart', 'forget the checkpoint and start from the first key')
    .option('--reverse', 'copy target → source (the resync after retire-source; the target must be primary)')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', `${example('tandem backfill users --rate 5000', 'tandem backfill users --restart --json')}\nExit 0 finished, 3 stopped by a signal (run it again to resume).\n`)
    .action((table: string | undefined, options: { rate?: number; chunk?: number; restart?: boolean; reverse?: boolean; json?: boolean }) =>
      run(table === undefined ? backfillAllCommand(options) : backfillCommand(table, options)),
    );

  const flags = program
    .command('flags')
    .description('the effective flags per table; `flags set` edits the local flag file')
    .addHelpText('after', example('tandem flags --json', 'tandem flags set tandem.users.read-target 25'));
  flags
    .command('list', { isDefault: true })
    .description('the effective flags per table, from Unleash or the flag file (exit 1 if they could not be loaded)')
    .option('--json', 'print as JSON')
    .addHelpText('after', example('tandem flags', 'tandem flags list --json'))
    .action((options: { json?: boolean }) => run(flagsListCommand(options)));
  flags
    .command('set')
    .description('set a flag in the local flag file (refused when Unleash is configured)')
    .argument('<flag>', 'flag name, e.g. tandem.users.read-target')
    .argument('<setting>', 'on, off or a percentage 0-100')
    .option('--json', 'print the flag as written, as JSON')
    .addHelpText('after', example('tandem flags set tandem.users.dual-write on', 'tandem flags set tandem.users.read-target 25'))
    .action((flag: string, setting: string, options: { json?: boolean }) => run(flagsSetCommand(flag, setting, options)));

  const outbox = program
    .command('outbox')
    .description('dead outbox rows: list and replay')
    .addHelpText('after', example('tandem outbox list --json', 'tandem outbox replay --table users'));
  outbox
    .command('list', { isDefault: true })
    .description('dead outbox rows with their last error and attempts')
    .option('--table <table>', 'only this table')
    .option('--limit <n>', 'at most this many rows (default 100)', positiveInt)
    .option('--json', 'print as JSON')
    .addHelpText('after', example('tandem outbox list --table users', 'tandem outbox list --json'))
    .action((options: { table?: string; limit?: number; json?: boolean }) => run(outboxListCommand(options)));
  outbox
    .command('replay')
    .description('make dead rows pending again (all, a table, or by id); a running Tandem applies them')
    .option('--table <table>', 'only this table')
    .option('--id <id>', 'an outbox row id (repeatable)', outboxId)
    .option('--json', 'print the count as JSON')
    .addHelpText('after', example('tandem outbox replay --table users', 'tandem outbox replay --id 12 --id 13'))
    .action((options: { table?: string; id?: string[]; json?: boolean }) => run(outboxReplayCommand(options)));

  const brake = program
    .command('brake')
    .description('the safety brake of a running Tandem')
    .addHelpText('after', example('tandem brake status', 'tandem brake release users'));
  brake
    .command('status', { isDefault: true })
    .description('brake state per table: signal, value, threshold')
    .argument('[table]', 'only this table')
    .option('--url <url>', 'the running Tandem (default from TANDEM_HOST/TANDEM_PORT)')
    .option('--json', 'print as JSON')
    .addHelpText('after', example('tandem brake status', 'tandem brake status users --json'))
    .action((table: string | undefined, options: { url?: string; json?: boolean }) => run(brakeStatusCommand(table, options)));
  brake
    .command('release')
    .description('release the brake of a table: target reads resume')
    .argument('<table>', 'policy name of the table')
    .option('--url <url>', 'the running Tandem (default from TANDEM_HOST/TANDEM_PORT)')
    .option('--json', 'print the answer as JSON')
    .addHelpText('after', example('tandem brake release users'))
    .action((table: string, options: { url?: string; json?: boolean }) => run(brakeReleaseCommand(table, options)));

  for (const [name, to, what] of [
    ['cutover', 'target', 'pre-flip checks, tandem.<table>.target-primary on, then follow the fenced switch until the target takes writes'],
    ['rollback', 'source', 'tandem.<table>.target-primary off, then follow the fenced switch until the source takes writes again'],
  ] as const) {
    program
      .command(name)
      .description(what)
      .argument('<table>', 'policy name of the table')
      .option('--url <url>', 'the running Tandem (default from TANDEM_HOST/TANDEM_PORT)')
      .option('--timeout <seconds>', 'give up waiting after this long (default 120)', positiveInt)
      .option('--force', 'flip even when a pre-flip check fails (the switch itself still refuses what is unsafe)')
      .addHelpText('after', example(`tandem ${name} users`))
      .action((table: string, options: { url?: string; timeout?: number; force?: boolean }) => run(cutoverCommand(table, options, to)));
  }

  return program;
}

interface ServeOptions {
  demo?: boolean;
  host?: string;
  port?: string;
  source?: string;
  target?: string;
  policies?: string;
  flagsFile?: string;
  logLevel?: string;
}

async function serve(values: ServeOptions): Promise<number> {
  const overrides: Record<string, unknown> = {};
  const set = (section: string, key: string, value: unknown) => {
    overrides[section] = { ...((overrides[section] as object | undefined) ?? {}), [key]: value };
  };
  if (values.host !== undefined) set('http', 'host', values.host);
  if (values.port !== undefined) set('http', 'port', /^\d+$/.test(values.port) ? Number(values.port) : values.port);
  if (values.source !== undefined) set('source', 'url', values.source);
  if (values.target !== undefined) set('target', 'url', values.target);
  if (values.flagsFile !== undefined) set('flags', 'file', values.flagsFile);
  if (values.logLevel !== undefined) set('log', 'level', values.logLevel);
  if (values.policies !== undefined) overrides['policiesDir'] = values.policies;

  const config = loadConfig({ overrides });
  if (config.workers > 1 && cluster.isPrimary) return runClusterPrimary(config);
  const app = new TandemApp(config, {
    ...(values.demo ? { prepareStores: createDemoSchema } : {}),
    ...(process.stdout.isTTY ? { logStream: await prettyStream() } : {}),
  });
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      app.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    app.logger.info({ signal }, 'draining; send the signal again to force');
    app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        app.logger.error({ err: (error as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await app.start();
  if (process.stdout.isTTY) {
    const { host, port } = app.address();
    app.logger.info(`console: http://${host.includes(':') ? `[${host}]` : host}:${port}/console`);
  }
  return -1; // keep running
}

/** Readable logs on a terminal (synchronous, so nothing is lost on exit). */
async function prettyStream(): Promise<DestinationStream> {
  const { default: pretty } = await import('pino-pretty');
  return pretty({ colorize: true, sync: true, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' });
}

async function status(values: { url?: string; json?: boolean }): Promise<number> {
  const { base, call } = adminClient(values.url);
  let body: Record<string, unknown>;
  try {
    body = await call('GET', '/admin/status');
  } catch (error) {
    process.stderr.write(`tandem status: ${(error as Error).message}\n`);
    return EXIT.unreachable;
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return EXIT.ok;
  }
  const style = styleFor(process.stdout);
  const tables = (body['tables'] as Array<Record<string, unknown>>) ?? [];
  const stores = body['stores'] as Record<string, { breaker: string | null; dialect?: string }>;
  process.stdout.write(
    `tandem ${String(body['version'])} at ${base}, up ${String(body['uptimeSeconds'])} s; ` +
      `source ${stores['source']?.dialect ?? '?'} → target ${stores['target']?.dialect ?? '?'}, target breaker ${stores['target']?.breaker ?? '?'}\n\n`,
  );
  const rows = tables.map((t) => {
    const outbox = t['outbox'] as { pending: number; dead: number; lagSeconds: number };
    const consistency = t['consistency'] as { ratio: number; samples: number };
    const brake = t['brake'] as { active: boolean; signal: string | null } | null;
    const verify = t['lastVerify'] as { clean: boolean; finishedAt: string } | null;
    return [
      String(t['table']),
      String(t['stage']),
      String(t['primary'] ?? (t['switch'] ? `switching@${String((t['switch'] as { step: string }).step)}` : '-')),
      String(t['epoch'] ?? 1),
      t['stale'] ? style.red('stale') : 'current',
      `${String(t['readTargetPercent'])}%/${String(t['shadowReadPercent'])}%`,
      String(outbox.pending),
      outbox.dead > 0 ? style.red(String(outbox.dead)) : '0',
      `${outbox.lagSeconds.toFixed(1)}s`,
      consistency.samples > 0 ? `${(consistency.ratio * 100).toFixed(2)}% (${consistency.samples})` : '-',
      brake?.active ? style.red(`TRIPPED ${brake.signal ?? ''}`) : 'off',
      verify ? (verify.clean ? style.green('clean') : style.red('DRIFT')) : 'never',
    ];
  });
  process.stdout.write(formatTable(['TABLE', 'STAGE', 'PRIMARY', 'EPOCH', 'SECONDARY', 'READS/SHADOW', 'PENDING', 'DEAD', 'LAG', 'CONSISTENCY', 'BRAKE', 'LAST VERIFY'], rows, style));
  return EXIT.ok;
}

function finish(code: number): void {
  if (code >= 0) process.exitCode = code;
}

function fail(error: unknown): void {
  // Usage and configuration errors carry their own code (2); anything that failed while
  // running exits 4, so scripts can tell it from drift (verify's 1). Driver messages from
  // knex repeat the whole statement with its values: print only the driver's part.
  let message = error instanceof Error ? error.message : String(error);
  if (!(error instanceof TandemError) && !(error instanceof CliError)) message = message.split(' - ').pop() ?? message;
  process.stderr.write(`tandem: ${message}\n`);
  process.exitCode = exitCodeOf(error);
}

const argv = process.argv.slice(2);
const program = makeProgram((result) => Promise.resolve(result).then(finish, fail));
if (argv.length === 0) {
  program.outputHelp({ error: true });
  process.exitCode = EXIT.usage;
} else {
  program.parseAsync(argv, { from: 'user' }).catch((error: unknown) => {
    if (error instanceof CommanderError) {
      // Help and version are answers (0); everything else commander refuses is a usage error.
      process.exitCode = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help' ? EXIT.ok : EXIT.usage;
      return;
    }
    fail(error);
  });
}
