#!/usr/bin/env node
import cluster from 'node:cluster';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TandemApp, VERSION } from '../app.js';
import { backfillCommand, brakeCommand, flagsCommand, outboxCommand, verifyCommand } from './tools.js';
import { loadConfig } from '../config/load-config.js';
import { TandemError } from '../errors.js';
import { createDemoSchema } from './demo-schema.js';
import { cutoverCommand } from './cutover-command.js';
import { runClusterPrimary } from './cluster-primary.js';

const USAGE = `tandem ${VERSION} — dual-write database proxy

Usage:
  tandem serve [--demo] [--host H] [--port N] [--source URL] [--target URL]
               [--policies DIR] [--flags-file FILE] [--log-level LEVEL]
  tandem status [--json] [--url U]       ask a running Tandem (TANDEM_HOST/PORT, TANDEM_ADMIN_TOKEN)
  tandem verify <table> [--repair] [--chunk N] [--json]
                                          compare map(source) with the target; exit 1 on drift
  tandem backfill <table> [--reverse] [--rate N] [--chunk N] [--restart] [--json]
                                          copy existing rows (--reverse: target → source after
                                          retire-source); resumes from its checkpoint
  tandem cutover <table> [--url U] [--timeout S] [--force]
                                          pre-flip checks, target-primary on, follow the switch
  tandem rollback <table> [--url U] [--timeout S] [--force]
                                          target-primary off, follow the switch back
  tandem flags [--json]                   the effective flags per table
  tandem flags set <flag> on|off|<percent>   edit the local flag file
  tandem outbox list [--table T] [--limit N] [--json]   dead outbox rows
  tandem outbox replay [--table T] [--id N ...]         make dead rows pending again
  tandem brake status|release <table> [--url U]        the safety brake of a running Tandem
  tandem --version | --help

Configuration: config/default.yaml → config/local.yaml → TANDEM_* environment → flags.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  // Every subcommand answers --help (the usage lists them all).
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (command === 'serve') return serve(rest);
  if (command === 'status') return status(rest);
  if (command === 'verify') return verifyCommand(rest);
  if (command === 'backfill') return backfillCommand(rest);
  if (command === 'flags') return flagsCommand(rest);
  if (command === 'outbox') return outboxCommand(rest);
  if (command === 'brake') return brakeCommand(rest);
  if (command === 'cutover') return cutoverCommand(rest, 'target');
  if (command === 'rollback') return cutoverCommand(rest, 'source');
  process.stderr.write(`tandem: unknown command "${command}"\n\n${USAGE}\n`);
  return 2;
}

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: false, strict: true });
  } catch (error) {
    throw new TandemError('bad_request', 2, `${(error as Error).message}\n\n${USAGE}`);
  }
}

async function serve(args: string[]): Promise<number> {
  const { values } = parse(args, {
    demo: { type: 'boolean' },
    host: { type: 'string' },
    port: { type: 'string' },
    source: { type: 'string' },
    target: { type: 'string' },
    policies: { type: 'string' },
    'flags-file': { type: 'string' },
    'log-level': { type: 'string' },
  });
  const overrides: Record<string, unknown> = {};
  const set = (section: string, key: string, value: unknown) => {
    overrides[section] = { ...((overrides[section] as object | undefined) ?? {}), [key]: value };
  };
  if (values.host !== undefined) set('http', 'host', values.host);
  if (values.port !== undefined) set('http', 'port', /^\d+$/.test(String(values.port)) ? Number(values.port) : values.port);
  if (values.source !== undefined) set('source', 'url', values.source);
  if (values.target !== undefined) set('target', 'url', values.target);
  if (values['flags-file'] !== undefined) set('flags', 'file', values['flags-file']);
  if (values['log-level'] !== undefined) set('log', 'level', values['log-level']);
  if (values.policies !== undefined) overrides['policiesDir'] = values.policies;

  const config = loadConfig({ overrides });
  if (config.workers > 1 && cluster.isPrimary) return runClusterPrimary(config);
  const app = new TandemApp(config, values.demo ? { prepareStores: createDemoSchema } : {});
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
  return -1; // keep running
}

async function status(args: string[]): Promise<number> {
  const { values } = parse(args, { json: { type: 'boolean' }, url: { type: 'string' } });
  const config = loadConfig();
  const base = values.url ?? `http://${config.http.host === '0.0.0.0' ? '127.0.0.1' : config.http.host}:${config.http.port}`;
  const response = await fetch(`${String(base)}/admin/status`, {
    headers: config.http.adminToken ? { authorization: `Bearer ${config.http.adminToken}` } : {},
    signal: AbortSignal.timeout(5_000),
  }).catch((error: unknown) => {
    throw new TandemError('primary_unavailable', 1, `cannot reach Tandem at ${String(base)}: ${(error as Error).message}`);
  });
  const body = (await response.json()) as Record<string, unknown>;
  if (!response.ok) {
    process.stderr.write(`tandem status: HTTP ${response.status}: ${String(body['detail'] ?? '')}\n`);
    return 1;
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  const tables = (body['tables'] as Array<Record<string, unknown>>) ?? [];
  process.stdout.write(`tandem ${String(body['version'])}, up ${String(body['uptimeSeconds'])} s\n`);
  for (const t of tables) {
    const outbox = t['outbox'] as { pending: number; dead: number; lagSeconds: number };
    const reverse = (t['reverse'] as { pending: number; lagSeconds: number } | undefined) ?? { pending: 0, lagSeconds: 0 };
    const running = t['switch'] as { step: string; to: string } | null | undefined;
    process.stdout.write(
      `  ${String(t['table']).padEnd(24)} ${String(t['stage']).padEnd(14)} primary=${String(t['primary'] ?? '-')} epoch=${String(t['epoch'])} stale=${String(t['stale'])} ` +
        `pending=${outbox.pending} dead=${outbox.dead} lag=${outbox.lagSeconds.toFixed(1)}s reverse=${reverse.pending}/${reverse.lagSeconds.toFixed(1)}s` +
        `${running ? ` switching→${running.to}@${running.step}` : ''} lastSwitch=${String(t['lastSwitchMs'] ?? 0)}ms\n`,
    );
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    // Usage and configuration errors carry their own code (2); anything that failed while
    // running exits 4, so scripts can tell it from drift (verify's 1). Driver messages from
    // knex repeat the whole statement with its values: print only the driver's part.
    let message = error instanceof Error ? error.message : String(error);
    if (!(error instanceof TandemError)) message = message.split(' - ').pop() ?? message;
    process.stderr.write(`tandem: ${message}\n`);
    process.exitCode = error instanceof TandemError ? (error.status < 100 ? error.status : error.code === 'config_invalid' || error.code === 'policy_invalid' ? 2 : 4) : 4;
  },
);
