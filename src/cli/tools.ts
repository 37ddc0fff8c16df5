import { makeDelivery } from '../compose/make-delivery.js';
import { printable } from './printable.js';
import { foreignKeyOrder } from '../db/foreign-key-order.js';
import { openCore as openToolkit, type Core } from '../compose/open-core.js';
import { loadConfig } from '../config/load-config.js';
import type { TandemConfig } from '../config/schema.js';
import { backfillTable } from '../consistency/backfill.js';
import { currentDirection, type Direction } from '../cutover/direction.js';
import { reversePolicy } from '../cutover/reverse-policy.js';
import { runVerify } from '../consistency/run-verify.js';
import { TandemError } from '../errors.js';
import { EventBus } from '../events.js';
import { makeFlagSource } from '../flags/flag-source.js';
import { flagNames, KILL_SWITCH_FLAG } from '../flags/resolve-stage.js';
import { setFlagInFile } from '../flags/set-flag-in-file.js';
import { listDeadRows } from '../outbox/list-dead-rows.js';
import { replayDeadRows } from '../outbox/replay-dead-rows.js';
import { featurePercent } from '../read/read-routing.js';
import { CliError, EXIT, type ExitCode } from './exit-codes.js';
import { formatTable, makeProgress, styleFor } from './term.js';

/** A CLI usage error: exit code 2 with the message. */
function usage(message: string): CliError {
  return new CliError(EXIT.usage, message);
}

export interface VerifyCommandOptions {
  repair?: boolean;
  chunk?: number;
  json?: boolean;
}

export async function verifyCommand(table: string, values: VerifyCommandOptions): Promise<ExitCode> {
  const config = loadConfig();
  const toolkit = await openToolkit(config);
  const json = values.json === true;
  const style = styleFor(process.stdout);
  try {
    const policy = toolkit.policies.get(table);
    if (!policy) throw usage(`verify: no table named "${table}" (tables: ${[...toolkit.policies.keys()].join(', ')})`);
    const line = makeProgress({ json });
    const events = new EventBus();
    const onProgress = (p: { phase: string; done: number; total: number }) => line.update({ label: `verify ${table} ${p.phase}`, done: p.done, total: p.total });
    const chunkSize = values.chunk;
    // map(primary) against the secondary, whichever store is primary now.
    const direction = await currentDirection(toolkit.source, toolkit.target, policy);
    let report = await runVerify(direction.from, direction.to, direction.policy, events, { onProgress, ...(chunkSize ? { chunkSize } : {}), repair: values.repair === true });
    let repaired = 0;
    if (values.repair && !report.clean) {
      repaired = report.repaired;
      // Apply the re-enqueued images here (safe beside a running server: claims skip locked
      // rows and applies are versioned), then verify again.
      await drainLocally(config, toolkit, table, line, direction);
      report = await runVerify(direction.from, direction.to, direction.policy, events, { onProgress, ...(chunkSize ? { chunkSize } : {}) });
    }
    line.done();
    const { differingKeys: _keys, ...out } = report;
    if (json) process.stdout.write(`${JSON.stringify({ ...out, repaired }, null, 2)}\n`);
    else {
      process.stdout.write(
        `verify ${table}: ${report.clean ? style.green('clean') : style.red('DRIFT')} — ${report.matching} matching, ${report.mismatched} mismatched, ` +
          `${report.missingInTarget} missing in target, ${report.extraInTarget} extra in target ` +
          `(${report.sourceRows} source rows, ${report.targetRows} target rows, ${report.durationMs} ms, ${report.rowsPerSecond} rows/s)\n`,
      );
      for (const m of report.samples.mismatched) process.stdout.write(`  mismatched ${m.key}: ${m.columns.join(', ')}\n`);
      for (const k of report.samples.missingInTarget) process.stdout.write(`  missing in target ${k}\n`);
      for (const k of report.samples.extraInTarget) process.stdout.write(`  extra in target ${k}\n`);
      if (values.repair) process.stdout.write(`  repaired ${repaired} key(s)\n`);
      if (report.staleCleared) process.stdout.write('  stale mark cleared\n');
    }
    return report.clean ? EXIT.ok : EXIT.drift;
  } finally {
    await toolkit.close();
  }
}

/**
 * Applies the re-enqueued images here, with the delivery the server builds (safe beside a
 * running server: claims skip locked rows and applies are versioned).
 */
async function drainLocally(config: Readonly<TandemConfig>, toolkit: Core, table: string, line: ReturnType<typeof makeProgress>, direction: Direction): Promise<void> {
  const quiet = { emit: () => undefined };
  // After a cutover: from the target (named source, with the reversed policies) into the source.
  const policies = direction.primary === 'target' ? new Map([...toolkit.policies].map(([name, p]) => [name, reversePolicy(p)])) : toolkit.policies;
  const { worker, breaker, route } = makeDelivery(config, direction.from, direction.to, policies, quiet, { pollIntervalMs: 100 });
  const deadline = Date.now() + 30_000;
  try {
    while (Date.now() < deadline) {
      const handled = await worker.drainOnce();
      const [row] = (await route.primary.knex('tandem_outbox').count({ n: '*' }).where({ tbl: table, status: 'pending' })) as Array<{ n: number | string }>;
      const pending = Number(row?.n ?? 0);
      if (pending === 0) return;
      line.note(`verify ${table}: applying the repairs, ${pending} outbox row(s) pending`);
      if (handled === 0) await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    breaker.shutdown();
  }
}

export interface BackfillCommandOptions {
  rate?: number;
  chunk?: number;
  restart?: boolean;
  json?: boolean;
  /** target → source: the resync after retire-source. */
  reverse?: boolean;
}

/** `tandem backfill` with no table: every policy table in the source's foreign-key order, parents first. */
export async function backfillAllCommand(values: BackfillCommandOptions): Promise<ExitCode> {
  const toolkit = await openToolkit(loadConfig());
  let tables: string[];
  try {
    const bySource = new Map([...toolkit.policies.values()].map((p) => [p.sourceTable, p.name]));
    tables = (await foreignKeyOrder(toolkit.source, [...bySource.keys()])).map((t) => bySource.get(t) as string);
  } finally {
    await toolkit.close();
  }
  if (values.json !== true) process.stdout.write(`backfill: every table in foreign-key order: ${tables.join(', ')}\n`);
  for (const table of tables) {
    const code = await backfillCommand(table, values);
    if (code !== EXIT.ok) return code;
  }
  return EXIT.ok;
}

export async function backfillCommand(table: string, values: BackfillCommandOptions): Promise<ExitCode> {
  const rate = values.rate;
  const chunkSize = values.chunk;
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
    const line = makeProgress({ json });
    // --reverse: target → source (the resync after retire-source), with the same rule: only
    // keys the source's ledger has never seen, so a live write is never overwritten.
    const direction = await currentDirection(toolkit.source, toolkit.target, policy);
    if (values.reverse && direction.primary !== 'target') throw new CliError(EXIT.usage, `backfill --reverse: the target is not ${table}'s primary; a reverse backfill copies from the primary`);
    if (!values.reverse && direction.primary !== 'source') throw new CliError(EXIT.usage, `backfill: the target is ${table}'s primary now; to resync the source use: tandem backfill --reverse ${table}`);
    const report = await backfillTable(direction.from, direction.to, direction.policy, {
      ...(rate ? { rate } : {}),
      ...(chunkSize ? { chunkSize } : {}),
      restart: values.restart === true,
      shouldStop: () => stop,
      onProgress: (p) =>
        line.update({
          label: `backfill ${table}`,
          done: p.copied + p.skipped,
          total: p.total,
          rowsPerSecond: p.rowsPerSecond,
          etaSeconds: p.etaSeconds,
          extra: `(${p.copied} copied, ${p.skipped} skipped)`,
        }),
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
    return report.finished ? EXIT.ok : EXIT.stopped;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await toolkit.close();
  }
}

export async function flagsListCommand(values: { json?: boolean }): Promise<ExitCode> {
  const config = loadConfig();
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
      const style = styleFor(process.stdout);
      const onOff = (on: boolean) => (on ? style.green('on') : 'off');
      process.stdout.write(
        `flags from ${out.origin}${out.synchronized ? '' : style.red(' (NOT loaded)')}${out.error ? `: ${out.error}` : ''}; kill switch ${out.killSwitch ? style.red('ON') : 'off'}\n\n`,
      );
      process.stdout.write(
        formatTable(
          ['TABLE', 'DUAL-WRITE', 'READ-TARGET', 'SHADOW-READ', 'TARGET-PRIMARY', 'RETIRE-SOURCE'],
          perTable.map((t) => [t.table, onOff(t.dualWrite), `${t.readTargetPercent}%`, `${t.shadowReadPercent}%`, onOff(t.targetPrimary), onOff(t.retireSource)]),
          style,
        ),
      );
    }
    return out.synchronized ? EXIT.ok : EXIT.notLoaded;
  } finally {
    source.stop();
  }
}

export function flagsSetCommand(name: string, setting: string, values: { json?: boolean }): ExitCode {
  const config = loadConfig();
  if (config.flags.unleashUrl) throw usage('flags set edits the local flag file; with TANDEM_UNLEASH_URL set, change flags in Unleash');
  let written;
  try {
    written = setFlagInFile(config.flags.file, name, setting);
  } catch (error) {
    if (error instanceof TandemError) throw usage(`flags set: ${error.message}`);
    throw error;
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ ...written, file: config.flags.file })}\n`);
  else process.stdout.write(`${name}: ${setting} (written to ${config.flags.file}; Tandem reloads it within ${config.flags.refreshIntervalMs} ms)\n`);
  return EXIT.ok;
}

export async function outboxListCommand(values: { table?: string; limit?: number; json?: boolean }): Promise<ExitCode> {
  const config = loadConfig();
  const toolkit = await openToolkit(config);
  try {
    if (values.table !== undefined && !toolkit.policies.has(values.table)) throw usage(`outbox: no table named "${values.table}"`);
    const table = values.table;
    const rows = await listDeadRows(toolkit.source, toolkit.policies, { ...(table ? { table } : {}), limit: values.limit ?? 100 });
    if (values.json) process.stdout.write(`${JSON.stringify({ rows }, null, 2)}\n`);
    else {
      const style = styleFor(process.stdout);
      process.stdout.write(`${rows.length} dead outbox row(s)\n`);
      if (rows.length > 0) {
        process.stdout.write(
          formatTable(
            ['ID', 'TABLE', 'KEY', 'OP', 'ATTEMPTS', 'CREATED', 'LAST ERROR'],
            // Keys and errors come from the database: escaped, so no stored byte drives the terminal.
            rows.map((r) => [`#${r.id}`, printable(r.table), printable(r.rowKey), r.op, String(r.attempts), r.createdAt, style.red(printable(r.lastError ?? ''))]),
            style,
          ),
        );
      }
    }
    return EXIT.ok;
  } finally {
    await toolkit.close();
  }
}

export async function outboxReplayCommand(values: { table?: string; id?: string[]; json?: boolean }): Promise<ExitCode> {
  const config = loadConfig();
  const toolkit = await openToolkit(config);
  try {
    if (values.table !== undefined && !toolkit.policies.has(values.table)) throw usage(`outbox: no table named "${values.table}"`);
    const table = values.table;
    const ids = values.id;
    const replayed = await replayDeadRows(toolkit.source, { ...(table ? { table } : {}), ...(ids ? { ids } : {}) });
    if (values.json) process.stdout.write(`${JSON.stringify({ replayed })}\n`);
    else process.stdout.write(`${replayed} dead row(s) made pending again; a running Tandem applies them\n`);
    return EXIT.ok;
  } finally {
    await toolkit.close();
  }
}

/** The base URL of a running Tandem and the admin header, from --url or the configuration. */
export function adminClient(url: string | undefined) {
  const config = loadConfig();
  const base = url ?? `http://${config.http.host === '0.0.0.0' ? '127.0.0.1' : config.http.host}:${config.http.port}`;
  const headers: Record<string, string> = config.http.adminToken ? { authorization: `Bearer ${config.http.adminToken}` } : {};
  const call = async (method: string, path: string): Promise<Record<string, unknown>> => {
    const res = await fetch(`${base}${path}`, { method, headers, signal: AbortSignal.timeout(5_000) }).catch((error: unknown) => {
      throw new CliError(EXIT.unreachable, `cannot reach Tandem at ${base}: ${(error as Error).message}`);
    });
    const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (!res.ok) throw new CliError(EXIT.unreachable, `HTTP ${res.status}: ${String(body['detail'] ?? '')}`);
    return body;
  };
  return { base, call };
}

export async function brakeReleaseCommand(table: string, values: { url?: string; json?: boolean }): Promise<ExitCode> {
  const { call } = adminClient(values.url);
  const body = await call('POST', `/admin/tables/${encodeURIComponent(table)}/brake/release`);
  if (values.json) process.stdout.write(`${JSON.stringify(body)}\n`);
  else process.stdout.write(body['released'] ? `brake on ${table} released\n` : `brake on ${table} was not on\n`);
  return EXIT.ok;
}

interface BrakeView {
  active: boolean;
  signal: string | null;
  value: number | null;
  threshold: number | null;
  trippedAt: string | null;
}

export async function brakeStatusCommand(table: string | undefined, values: { url?: string; json?: boolean }): Promise<ExitCode> {
  const { call } = adminClient(values.url);
  const status = await call('GET', '/admin/status');
  const tables = (status['tables'] as Array<{ table: string; brake: BrakeView | null }>).filter((t) => !table || t.table === table);
  if (table && tables.length === 0) throw usage(`brake: no table named "${table}"`);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(tables.map((t) => ({ table: t.table, brake: t.brake })), null, 2)}\n`);
    return EXIT.ok;
  }
  const style = styleFor(process.stdout);
  process.stdout.write(
    formatTable(
      ['TABLE', 'BRAKE', 'SIGNAL', 'VALUE', 'THRESHOLD', 'TRIPPED AT'],
      tables.map((t) => [
        t.table,
        t.brake?.active ? style.red('TRIPPED') : style.green('off'),
        t.brake?.signal ?? '',
        t.brake?.value === null || t.brake?.value === undefined ? '' : String(t.brake.value),
        t.brake?.threshold === null || t.brake?.threshold === undefined ? '' : String(t.brake.threshold),
        t.brake?.trippedAt ?? '',
      ]),
      style,
    ),
  );
  return EXIT.ok;
}
