import { loadConfig } from '../config/load-config.js';
import { TandemError } from '../errors.js';
import { flagNames } from '../flags/resolve-stage.js';
import { setFlagInFile } from '../flags/set-flag-in-file.js';

interface TableStatus {
  table: string;
  stage: string;
  primary: string | null;
  epoch: number;
  stale: boolean;
  staleReason: string | null;
  flagConflict: string | null;
  flags: { dualWrite: boolean; targetPrimary: boolean };
  switch: { from: string; to: string; step: string; elapsedMs: number } | null;
  lastSwitchMs: number;
  outbox: { pending: number; dead: number; lagSeconds: number };
  reverse: { pending: number; dead: number; lagSeconds: number };
  brake: { active: boolean } | null;
}

function usage(message: string): TandemError {
  return new TandemError('bad_request', 2, message);
}

/**
 * `tandem cutover <table>` / `tandem rollback <table>`: checks what must hold before the
 * flip, flips `tandem.<table>.target-primary` in the local flag file (with Unleash: says
 * which flag to flip), then follows the switch step by step on a running Tandem until the
 * new primary takes writes. Exit 0 when done, 1 when a check fails, the switch is refused
 * or the wait times out.
 */
export async function cutoverCommand(table: string, values: { url?: string; timeout?: number; force?: boolean }, to: 'target' | 'source'): Promise<number> {
  const name = to === 'target' ? 'cutover' : 'rollback';
  const timeoutS = values.timeout ?? 120;
  const config = loadConfig();
  const base = values.url ?? `http://${config.http.host === '0.0.0.0' ? '127.0.0.1' : config.http.host}:${config.http.port}`;
  const headers: Record<string, string> = config.http.adminToken ? { authorization: `Bearer ${config.http.adminToken}` } : {};
  const fetchStatus = async (): Promise<TableStatus> => {
    const response = await fetch(`${base}/admin/status`, { headers, signal: AbortSignal.timeout(5_000) }).catch((error: unknown) => {
      throw new TandemError('primary_unavailable', 1, `cannot reach Tandem at ${base}: ${(error as Error).message}`);
    });
    if (!response.ok) throw new TandemError('internal', 1, `${base}/admin/status answered HTTP ${response.status}`);
    const body = (await response.json()) as { tables: TableStatus[] };
    const found = body.tables.find((t) => t.table === table);
    if (!found) throw usage(`${name}: no table named "${table}" (tables: ${body.tables.map((t) => t.table).join(', ')})`);
    return found;
  };
  const out = (line: string) => process.stdout.write(`${line}\n`);

  const before = await fetchStatus();
  if (before.primary === to && before.switch === null) {
    out(`${table}: the ${to} is the primary already (epoch ${before.epoch})`);
    return 0;
  }
  // Pre-flip checks (README runbook): what the switch itself would refuse, said up front.
  const problems: string[] = [];
  if (!before.flags.dualWrite) problems.push('dual-write is off: the new primary would not be a copy');
  if (to === 'target' && before.stale) problems.push(`the target is stale (${before.staleReason ?? 'unknown reason'}): backfill and verify first`);
  if (to === 'source' && before.stale) problems.push(`the source is stale (${before.staleReason ?? 'unknown reason'}): tandem backfill --reverse ${table}, then verify`);
  if (before.outbox.dead > 0 || before.reverse.dead > 0) problems.push('dead outbox rows: replay them first (tandem outbox replay)');
  if (to === 'target' && before.brake?.active) problems.push('the safety brake is active: release it first (tandem brake release)');
  out(`${table}: ${before.stage}, primary ${before.primary ?? '(switching)'}, epoch ${before.epoch}; outbox pending ${before.outbox.pending}, reverse pending ${before.reverse.pending}`);
  for (const p of problems) out(`  check failed: ${p}`);
  if (problems.length > 0 && !values.force) return 1;

  const flag = flagNames(table).targetPrimary;
  const setting = to === 'target' ? 'on' : 'off';
  if (config.flags.unleashUrl) {
    out(`flip ${flag} ${setting} in Unleash (${config.flags.unleashUrl}); waiting for the switch…`);
  } else {
    setFlagInFile(config.flags.file, flag, setting);
    out(`${flag}: ${setting} (written to ${config.flags.file}); waiting for the switch…`);
  }
  const started = Date.now();
  let last = '';
  for (;;) {
    const s = await fetchStatus().catch(() => undefined);
    if (s) {
      const line = s.switch ? `  step ${s.switch.step} (${s.switch.from} → ${s.switch.to}, ${s.switch.elapsedMs} ms)` : `  primary ${s.primary ?? '(none)'}`;
      if (line !== last) out(line);
      last = line;
      if (s.primary === to && s.switch === null) {
        out(`${table}: the ${to} is the primary (epoch ${s.epoch}); the switch took ${s.lastSwitchMs} ms, ${((Date.now() - started) / 1000).toFixed(1)} s since the flip`);
        return 0;
      }
      if (s.flagConflict && /switch to the|stale|safety brake/.test(s.flagConflict) && s.switch === null) {
        out(`${table}: not switched: ${s.flagConflict}`);
        return 1;
      }
    }
    if (Date.now() - started > timeoutS * 1000) {
      out(`${table}: the switch did not finish within ${timeoutS} s (see tandem status)`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
