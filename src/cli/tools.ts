import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { EventBus } from '../events.js';
import { openToolkit, runVerify } from '../app.js';
import { loadConfig } from '../config/load-config.js';
import type { TandemConfig } from '../config/schema.js';
import { backfillTable } from '../consistency/backfill.js';
import { currentDirection, type Direction } from '../cutover/direction.js';
import { reversePolicy } from '../cutover/reverse-policy.js';
import { TandemError } from '../errors.js';
import { makeFlagSource } from '../flags/flag-source.js';
import { flagNames, KILL_SWITCH_FLAG } from '../flags/resolve-stage.js';
import { featurePercent } from '../read/read-routing.js';
import { Applier } from '../write/applier.js';
import { makeStoreBreaker } from '../write/breaker.js';
import { listDeadRows, replayDeadRows } from '../write/outbox/dead-rows.js';
import { OutboxWorker } from '../write/outbox-worker.js';

/** A CLI usage error: exit code 2 with the message. */
function usage(message: string): TandemError {
  return new TandemError('bad_request', 2, message);
}

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw usage((error as Error).message);
  }
}

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw usage(`--${name}: expected a positive integer, got "${value}"`);
  return Number(value);
}

/** A progress line on a terminal (stderr), nothing otherwise. */
function progressLine(json: boolean) {
  const tty = !json && process.stderr.isTTY;
  return {
    update(text: string) {
      if (tty) process.stderr.write(`\r\x1b[2K${text}`);
    },
    done() {
      if (tty) process.stderr.write('\r\x1b[2K');
    },
  };
}

function bar(done: number, total: number): string {
  const width = 24;
  const share = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(share * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}%`;
}

export async function verifyCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { repair: { type: 'boolean' }, json: { type: 'boolean' }, chunk: { type: 'string' } });
  const [table, ...extra] = positionals;
  if (!table || extra.length > 0) throw usage('usage: tandem verify <table> [--repair] [--chunk N] [--json]');
  const config = loadConfig();
  const toolkit = await openToolkit(config);
  const json = values.json === true;
  try {
    const policy = toolkit.policies.get(table);
    if (!policy) throw usage(`verify: no table named "${table}" (tables: ${[...toolkit.policies.keys()].join(', ')})`);
    const line = progressLine(json);
    const started = Date.now();
    const events = new EventBus();
    const onProgress = (p: { phase: string; done: number; total: number }) => {
      const elapsed = (Date.now() - started) / 1000;
      const rate = p.done / Math.max(elapsed, 0.001);
      const eta = rate > 0 && p.total > p.done ? ` ETA ${Math.ceil((p.total - p.done) / rate)}s` : '';
      line.update(`verify ${table} ${p.phase} ${bar(p.done, p.total)} ${p.done}/${p.total}${eta}`);
    };
    const chunkSize = positiveInt('chunk', values.chunk);
    // map(primary) against the secondary, whichever store is primary now.
    const direction = await currentDirection(toolkit.source, toolkit.target, policy);
    let report = await runVerify(direction.from, direction.to, direction.policy, events, { onProgress, ...(chunkSize ? { chunkSize } : {}), repair: values.repair === true });
    let repaired = 0;
    if (values.repair && !report.clean) {
      repaired = report.repaired;
      // Apply the re-enqueued images here (safe beside a running server: claims skip locked
      // rows and applies are versioned), then verify again.
      await drainLocally(config, toolkit, table, direction);
      report = await runVerify(direction.from, direction.to, direction.policy, events, { onProgress, ...(chunkSize ? { chunkSize } : {}) });
    }
    line.done();
    const { differingKeys: _keys, ...out } = report;
    if (json) process.stdout.write(`${JSON.stringify({ ...out, repaired }, null, 2)}\n`);
    else {
      process.stdout.write(
        `verify ${table}: ${report.clean ? 'clean' : 'DRIFT'} — ${report.matching} matching, ${report.mismatched} mismatched, ` +
          `${report.missingInTarget} missing in target, ${report.extraInTarget} extra in target ` +
          `(${report.sourceRows} source rows, ${report.targetRows} target rows, ${report.durationMs} ms, ${report.rowsPerSecond} rows/s)\n`,
      );
      for (const m of report.samples.mismatched) process.stdout.write(`  mismatched ${m.key}: ${m.columns.join(', ')}\n`);
      for (const k of report.samples.missingInTarget) process.stdout.write(`  missing in target ${k}\n`);
      for (const k of report.samples.extraInTarget) process.stdout.write(`  extra in target ${k}\n`);
      if (values.repair) process.stdout.write(`  repaired ${repaired} key(s)\n`);
      if (report.staleCleared) process.stdout.write('  stale mark cleared\n');
    }
    return report.clean ? 0 : 1;
  } finally {
    await toolkit.close();
  }
}

async function drainLocally(config: Readonly<TandemConfig>, toolkit: Awaited<ReturnType<typeof openToolkit>>, table: string, direction: Direction): Promise<void> {
  const quiet = { emit: () => undefined };
  const breaker = makeStoreBreaker(direction.to.name, { ...config.apply }, quiet);
  const policies = new Map([...toolkit.policies].map(([name, p]) => [name, direction.primary === 'target' ? reversePolicy(p) : p]));
  const route = { from: direction.from, to: direction.to, breaker, policies };
  const applier = new Applier(toolkit.policies, quiet, {
    timeoutMs: config.apply.timeoutMs,
    maxAttempts: config.outbox.maxAttempts,
    backoffBaseMs: config.outbox.backoffBaseMs,
    backoffMaxMs: config.outbox.backoffMaxMs,
  });
  const worker = new OutboxWorker(route, applier, quiet, { pollIntervalMs: 100, batchSize: config.outbox.batchSize, leaseMs: config.outbox.leaseMs });
  const deadline = Date.now() + 30_000;
  try {
    while (Date.now() < deadline) {
      const handled = await worker.drainOnce();
      const [row] = (await direction.from.knex('tandem_outbox').count({ n: '*' }).where({ tbl: table, status: 'pending' })) as Array<{ n: number | string }>;
      if (Number(row?.n ?? 0) === 0) return;
      if (handled === 0) await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    breaker.shutdown();
  }
}

export async function backfillCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    rate: { type: 'string' },
    chunk: { type: 'string' },
    restart: { type: 'boolean' },
    json: { type: 'boolean' },
    reverse: { type: 'boolean' },
  });
  const [table, ...extra] = positionals;
  if (!table || extra.length > 0) throw usage('usage: tandem backfill <table> [--reverse] [--rate N] [--chunk N] [--restart] [--json]');
  const reverse = values.reverse === true;
  const rate = positiveInt('rate', values.rate);
  const chunkSize = positiveInt('chunk', values.chunk);
  const config = loadConfig();
  const toolkit = await openToolkit(config);
  const json = values.json === true;
  let stop = false;
  const onSignal = () => {
    stop = true;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const policy = toolkit.policies.get(table);
    if (!policy) throw usage(`backfill: no table named "${table}" (tables: ${[...toolkit.policies.keys()].join(', ')})`);
    // --reverse: target → source (the resync after retire-source), with the same rule: only
    // keys the source's ledger has never seen, so a live write is never overwritten.
    const direction = await currentDirection(toolkit.source, toolkit.target, policy);
    if (reverse && direction.primary !== 'target') throw usage(`backfill --reverse: the target is not ${table}'s primary; a reverse backfill copies from the primary`);
    if (!reverse && direction.primary !== 'source') throw usage(`backfill: the target is ${table}'s primary now; to resync the source use: tandem backfill --reverse ${table}`);
    const line = progressLine(json);
    const report = await backfillTable(direction.from, direction.to, direction.policy, {
      ...(rate ? { rate } : {}),
      ...(chunkSize ? { chunkSize } : {}),
      restart: values.restart === true,
      shouldStop: () => stop,
      onProgress: (p) =>
        line.update(`backfill ${table} ${bar(p.copied + p.skipped, p.total)} ${p.copied} copied, ${p.skipped} skipped, ${p.rowsPerSecond} rows/s${p.etaSeconds !== null ? ` ETA ${p.etaSeconds}s` : ''}`),
    });
    line.done();
    if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      process.stdout.write(
        `backfill ${table}: ${report.finished ? 'finished' : 'stopped (resume with the same command)'} — ${report.copied} copied, ` +
          `${report.skipped} skipped (already in the target's ledger), ${report.rowsPerSecond} rows/s` +
          `${report.resumedFrom ? `, resumed after key ${report.resumedFrom}` : ''}\n` +
          (report.finished ? `  next: tandem verify ${table}  (a clean verify clears the stale mark)\n` : ''),
      );
    }
    return report.finished ? 0 : 3;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await toolkit.close();
  }
}

export async function flagsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } });
  const config = loadConfig();
  if (positionals[0] === 'set') {
    const [, name, setting, ...extra] = positionals;
    if (!name || !setting || extra.length > 0) throw usage('usage: tandem flags set <flag> on|off|<percent>');
    if (config.flags.unleashUrl) throw usage('flags set edits the local flag file; with TANDEM_UNLEASH_URL set, change flags in Unleash');
    setFlagInFile(config.flags.file, name, setting);
    process.stdout.write(`${name}: ${setting} (written to ${config.flags.file}; Tandem reloads it within ${config.flags.refreshIntervalMs} ms)\n`);
    return 0;
  }
  if (positionals.length > 0) throw usage('usage: tandem flags [--json] | tandem flags set <flag> on|off|<percent>');
  const events = new EventBus();
  let lastError: string | undefined;
  events.on((e) => {
    if (e.type === 'flags.error') lastError = e.error.message;
  });
  const source = makeFlagSource({ ...config.flags, file: config.flags.file, startTimeoutMs: 5_000 }, events);
  await source.start();
  try {
    const features = source.features();
    const toolkitTables = features
      .map((f) => /^tandem\.(.+)\.(dual-write|read-target|shadow-read|target-primary|retire-source)$/.exec(f.name)?.[1])
      .filter((t): t is string => t !== undefined);
    const tables = [...new Set(toolkitTables)].sort();
    const perTable = tables.map((table) => {
      const n = flagNames(table);
      const pct = (name: string) => featurePercent(features.find((f) => f.name === name));
      return {
        table,
        dualWrite: source.isEnabled(n.dualWrite),
        readTargetPercent: pct(n.readTarget),
        shadowReadPercent: pct(n.shadowRead),
        targetPrimary: source.isEnabled(n.targetPrimary),
        retireSource: source.isEnabled(n.retireSource),
      };
    });
    const out = {
      origin: source.origin,
      synchronized: source.synchronized(),
      error: lastError ?? source.lastError() ?? null,
      killSwitch: source.isEnabled(KILL_SWITCH_FLAG),
      tables: perTable,
    };
    if (values.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    else {
      process.stdout.write(`flags from ${out.origin}${out.synchronized ? '' : ' (NOT loaded)'}${out.error ? `: ${out.error}` : ''}; kill switch ${out.killSwitch ? 'ON' : 'off'}\n`);
      for (const t of perTable) {
        process.stdout.write(
          `  ${t.table.padEnd(24)} dual-write=${t.dualWrite ? 'on' : 'off'} read-target=${t.readTargetPercent}% shadow-read=${t.shadowReadPercent}%` +
            `${t.targetPrimary ? ' target-primary=on' : ''}${t.retireSource ? ' retire-source=on' : ''}\n`,
        );
      }
    }
    return out.synchronized ? 0 : 1;
  } finally {
    source.stop();
  }
}

/** Sets one feature in the local flag file (YAML or JSON, Unleash's client-features format). */
export function setFlagInFile(file: string, name: string, setting: string): void {
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(name)) throw usage(`flags set: "${name}" is not a flag name`);
  let strategy: Record<string, unknown>;
  let enabled = true;
  if (setting === 'on') strategy = { name: 'default' };
  else if (setting === 'off') {
    enabled = false;
    strategy = { name: 'default' };
  } else if (/^\d{1,3}%?$/.test(setting) && Number(setting.replace('%', '')) <= 100) {
    strategy = { name: 'flexibleRollout', parameters: { rollout: setting.replace('%', ''), stickiness: 'default', groupId: name } };
  } else throw usage(`flags set: "${setting}" is not on, off or a percentage 0-100`);
  const isJson = file.endsWith('.json');
  const doc = (existsSync(file) ? (parseYaml(readFileSync(file, 'utf8')) as { version?: number; features?: Array<Record<string, unknown>> }) : null) ?? {};
  const features = Array.isArray(doc.features) ? doc.features : [];
  const existing = features.find((f) => f['name'] === name);
  const feature = { name, enabled, strategies: [strategy] };
  if (existing) Object.assign(existing, feature);
  else features.push(feature);
  const out = { version: doc.version ?? 2, features };
  writeFileSync(file, isJson ? `${JSON.stringify(out, null, 2)}\n` : stringifyYaml(out));
}

export async function outboxCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    table: { type: 'string' },
    limit: { type: 'string' },
    id: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  });
  const [action, ...extra] = positionals;
  if ((action !== 'list' && action !== 'replay') || extra.length > 0) {
    throw usage('usage: tandem outbox list [--table T] [--limit N] [--json] | tandem outbox replay [--table T] [--id N ...]');
  }
  const config = loadConfig();
  const toolkit = await openToolkit(config);
  try {
    if (values.table !== undefined && !toolkit.policies.has(values.table)) throw usage(`outbox: no table named "${values.table}"`);
    const table = values.table;
    if (action === 'list') {
      const rows = await listDeadRows(toolkit.source, { ...(table ? { table } : {}), limit: positiveInt('limit', values.limit) ?? 100 });
      if (values.json) process.stdout.write(`${JSON.stringify({ rows }, null, 2)}\n`);
      else {
        process.stdout.write(`${rows.length} dead outbox row(s)\n`);
        for (const r of rows) process.stdout.write(`  #${r.id} ${r.table} ${r.rowKey} ${r.op} attempts=${r.attempts} ${r.createdAt}: ${r.lastError ?? ''}\n`);
      }
      return 0;
    }
    const ids = values.id?.map((id) => {
      if (!/^\d+$/.test(id)) throw usage(`--id: expected an outbox row id, got "${id}"`);
      return id;
    });
    const replayed = await replayDeadRows(toolkit.source, { ...(table ? { table } : {}), ...(ids ? { ids } : {}) });
    if (values.json) process.stdout.write(`${JSON.stringify({ replayed })}\n`);
    else process.stdout.write(`${replayed} dead row(s) made pending again; a running Tandem applies them\n`);
    return 0;
  } finally {
    await toolkit.close();
  }
}

export async function brakeCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { url: { type: 'string' }, json: { type: 'boolean' } });
  const [action, table, ...extra] = positionals;
  if (!(action === 'status' || action === 'release') || (action === 'release' && !table) || extra.length > 0) {
    throw usage('usage: tandem brake status [<table>] | tandem brake release <table>  [--url U]');
  }
  const config = loadConfig();
  const base = values.url ?? `http://${config.http.host === '0.0.0.0' ? '127.0.0.1' : config.http.host}:${config.http.port}`;
  const headers: Record<string, string> = config.http.adminToken ? { authorization: `Bearer ${config.http.adminToken}` } : {};
  const call = async (method: string, path: string) => {
    const res = await fetch(`${base}${path}`, { method, headers, signal: AbortSignal.timeout(5_000) }).catch((error: unknown) => {
      throw new TandemError('primary_unavailable', 1, `cannot reach Tandem at ${base}: ${(error as Error).message}`);
    });
    const body = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new TandemError('bad_request', 1, `HTTP ${res.status}: ${String(body['detail'] ?? '')}`);
    return body;
  };
  if (action === 'release') {
    const body = await call('POST', `/admin/tables/${encodeURIComponent(table as string)}/brake/release`);
    if (values.json) process.stdout.write(`${JSON.stringify(body)}\n`);
    else process.stdout.write(body['released'] ? `brake on ${table} released\n` : `brake on ${table} was not on\n`);
    return 0;
  }
  const status = await call('GET', '/admin/status');
  const tables = (status['tables'] as Array<{ table: string; brake: unknown }>).filter((t) => !table || t.table === table);
  if (values.json) process.stdout.write(`${JSON.stringify(tables.map((t) => ({ table: t.table, brake: t.brake })), null, 2)}\n`);
  else for (const t of tables) process.stdout.write(`  ${t.table.padEnd(24)} ${JSON.stringify(t.brake)}\n`);
  return 0;
}
