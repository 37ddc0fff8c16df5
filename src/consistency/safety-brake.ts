import type { BrakeSignal, EventSink, TandemEvent } from '../events.js';
import type { Policy } from '../policy/policy.js';

interface Bucket {
  second: number;
  targetOk: number;
  targetErr: number;
  match: number;
  mismatch: number;
  /** Durations (ms) of the writes the target acknowledged as primary (after a cutover). */
  writeMs: number[];
  /** How many of them took longer than the policy's `warnWriteLatencyMs` (counted as they come: no scan per event). */
  slowWrites: number;
}

interface TableBrake {
  policy: Policy;
  windowMs: number;
  buckets: Bucket[];
  lagSeconds: number;
  /** Age of the oldest row in the target's outbox (reverse replication after a cutover). */
  reverseLagSeconds: number;
  /** rollback: the brake tripped while the target was primary and the policy asks for an automatic rollback. */
  active: { signal: BrakeSignal; value: number; threshold: number; at: number; rollback: boolean } | undefined;
  warned: Map<BrakeSignal, number>;
}

export interface BrakeStatus {
  active: boolean;
  /** The brake switched (or is switching) the primary back to the source and holds it there. */
  rollback: boolean;
  signal: BrakeSignal | null;
  value: number | null;
  threshold: number | null;
  trippedAt: string | null;
  window: { seconds: number; targetOps: number; targetErrorRate: number; shadowSamples: number; consistency: number; lagSeconds: number; targetWrites: number; writeP99Ms: number | null };
}

export function parseWindow(text: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(text);
  if (!m) return 60_000;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/**
 * Per table, holds the target error rate, the shadow consistency and the replication lag
 * against the policy's `safety` thresholds over a sliding window (DESIGN §6). Past one,
 * reads stop being served by the target (flags untouched) until an operator releases it.
 * Rate signals never trip on fewer than `minSamples` in the window.
 */
export class SafetyBrake {
  private readonly tables = new Map<string, TableBrake>();

  constructor(
    policies: readonly Policy[],
    private readonly events: EventSink,
    private readonly now: () => number = Date.now,
    /** Whether the table's primary is the target now (after a cutover). */
    private readonly targetPrimary: (table: string) => boolean = () => false,
  ) {
    for (const policy of policies) {
      this.tables.set(policy.name, {
        policy,
        windowMs: parseWindow(policy.file.safety.window),
        buckets: [],
        lagSeconds: 0,
        reverseLagSeconds: 0,
        active: undefined,
        warned: new Map(),
      });
    }
  }

  braked(table: string): boolean {
    return this.tables.get(table)?.active !== undefined;
  }

  /** True while an automatic rollback holds the table's primary on the source. */
  holdsSource(table: string): boolean {
    return this.tables.get(table)?.active?.rollback === true;
  }

  /** Feeds one domain event; trips or warns when a threshold is crossed. */
  observe(event: TandemEvent): void {
    switch (event.type) {
      case 'read':
        if (event.store !== 'target') return;
        this.count(event.table, (b) => (event.result === 'ok' ? b.targetOk++ : b.targetErr++));
        return;
      case 'write':
        // Writes count only where the target is their primary (after a cutover).
        if (event.store !== 'target') return;
        this.count(event.table, (b) => {
          if (event.result === 'ok') b.targetOk++;
          else b.targetErr++;
          if (event.result !== 'ok' || event.durationMs === undefined) return;
          b.writeMs.push(event.durationMs);
          if (event.durationMs > (this.tables.get(event.table)?.policy.file.safety.warnWriteLatencyMs ?? Infinity)) b.slowWrites++;
        });
        return;
      case 'apply':
        if (event.store !== 'target' || event.ordering) return;
        this.count(event.table, (b) => (event.result === 'failed' ? (b.targetErr += event.count) : (b.targetOk += event.count)));
        return;
      case 'shadow':
        if (event.result === 'error') return;
        this.count(event.table, (b) => (event.result === 'match' ? b.match++ : b.mismatch++));
        return;
      case 'outbox.stats':
        for (const t of event.tables) {
          const brake = this.tables.get(t.table);
          if (!brake) continue;
          brake.lagSeconds = t.lagSeconds;
          this.evaluate(brake);
        }
        return;
      case 'reverse.stats':
        for (const t of event.tables) {
          const brake = this.tables.get(t.table);
          if (!brake) continue;
          brake.reverseLagSeconds = t.lagSeconds;
          this.evaluate(brake);
        }
        return;
      default:
        return;
    }
  }

  status(table: string): BrakeStatus | undefined {
    const brake = this.tables.get(table);
    if (!brake) return undefined;
    const w = this.window(brake);
    return {
      active: brake.active !== undefined,
      rollback: brake.active?.rollback ?? false,
      signal: brake.active?.signal ?? null,
      value: brake.active?.value ?? null,
      threshold: brake.active?.threshold ?? null,
      trippedAt: brake.active ? new Date(brake.active.at).toISOString() : null,
      window: {
        seconds: brake.windowMs / 1000,
        targetOps: w.targetOps,
        targetErrorRate: w.errorRate,
        shadowSamples: w.shadowSamples,
        consistency: w.consistency,
        lagSeconds: Math.max(brake.lagSeconds, brake.reverseLagSeconds),
        targetWrites: w.targetWrites,
        writeP99Ms: w.targetWrites === 0 ? null : Math.round(w.writeP99() * 10) / 10,
      },
    };
  }

  /** An operator releases the brake; the window starts afresh. Returns false when it was not on. */
  release(table: string): boolean {
    const brake = this.tables.get(table);
    if (!brake?.active) return false;
    brake.active = undefined;
    brake.buckets = [];
    this.events.emit({ type: 'brake', table, active: false, reason: 'released by an operator' });
    return true;
  }

  private count(table: string, add: (b: Bucket) => void): void {
    const brake = this.tables.get(table);
    if (!brake) return;
    const second = Math.floor(this.now() / 1000);
    let bucket = brake.buckets[brake.buckets.length - 1];
    if (!bucket || bucket.second !== second) {
      bucket = { second, targetOk: 0, targetErr: 0, match: 0, mismatch: 0, writeMs: [], slowWrites: 0 };
      brake.buckets.push(bucket);
    }
    add(bucket);
    this.evaluate(brake);
  }

  private window(brake: TableBrake) {
    const cutoff = Math.floor((this.now() - brake.windowMs) / 1000);
    while (brake.buckets.length > 0 && (brake.buckets[0]?.second ?? 0) <= cutoff) brake.buckets.shift();
    let ok = 0;
    let err = 0;
    let match = 0;
    let mismatch = 0;
    let writes = 0;
    let slowWrites = 0;
    for (const b of brake.buckets) {
      ok += b.targetOk;
      err += b.targetErr;
      match += b.match;
      mismatch += b.mismatch;
      writes += b.writeMs.length;
      slowWrites += b.slowWrites;
    }
    const targetOps = ok + err;
    const shadowSamples = match + mismatch;
    return {
      targetOps,
      errorRate: targetOps === 0 ? 0 : err / targetOps,
      shadowSamples,
      consistency: shadowSamples === 0 ? 1 : match / shadowSamples,
      targetWrites: writes,
      slowWrites,
      writeP99: (): number => percentile99(brake.buckets.flatMap((b) => b.writeMs)),
    };
  }

  private evaluate(brake: TableBrake): void {
    if (brake.active) return;
    const s = brake.policy.file.safety;
    const w = this.window(brake);
    const checks: Array<{ signal: BrakeSignal; value: number; trip: boolean; warn: boolean; threshold: number; warnAt: number }> = [];
    if (w.targetOps >= s.minSamples) {
      checks.push({ signal: 'error_rate', value: w.errorRate, trip: w.errorRate > s.maxTargetErrorRate, warn: w.errorRate > s.warnTargetErrorRate, threshold: s.maxTargetErrorRate, warnAt: s.warnTargetErrorRate });
    }
    if (w.shadowSamples >= s.minSamples) {
      checks.push({ signal: 'consistency', value: w.consistency, trip: w.consistency < s.minConsistency, warn: w.consistency < s.warnConsistency, threshold: s.minConsistency, warnAt: s.warnConsistency });
    }
    if (w.targetWrites >= s.minSamples) {
      // Only the (rare) window whose share of slow writes reaches 1 % is sorted for its p99.
      if (w.slowWrites / w.targetWrites > 0.01) {
        const p99 = w.writeP99();
        checks.push({ signal: 'latency', value: p99, trip: p99 > s.maxWriteLatencyMs, warn: p99 > s.warnWriteLatencyMs, threshold: s.maxWriteLatencyMs, warnAt: s.warnWriteLatencyMs });
      }
    }
    const lag = Math.max(brake.lagSeconds, brake.reverseLagSeconds);
    checks.push({ signal: 'lag', value: lag, trip: lag > s.maxLagSeconds, warn: lag > s.warnLagSeconds, threshold: s.maxLagSeconds, warnAt: s.warnLagSeconds });
    const table = brake.policy.name;
    for (const c of checks) {
      if (c.trip) {
        const rollback = s.autoRollback && this.targetPrimary(table);
        brake.active = { signal: c.signal, value: c.value, threshold: c.threshold, at: this.now(), rollback };
        this.events.emit({
          type: 'brake',
          table,
          active: true,
          signal: c.signal,
          value: c.value,
          threshold: c.threshold,
          reason: rollback
            ? `${c.signal} ${round(c.value)} crossed ${round(c.threshold)} on the target as primary: automatic rollback to the source; the primary stays there until released`
            : `${c.signal} ${round(c.value)} crossed ${round(c.threshold)}: reads held on the primary until released`,
        });
        return;
      }
      if (c.warn) {
        const last = brake.warned.get(c.signal) ?? 0;
        if (this.now() - last >= brake.windowMs) {
          brake.warned.set(c.signal, this.now());
          this.events.emit({ type: 'brake.warn', table, signal: c.signal, value: c.value, threshold: c.warnAt });
        }
      }
    }
  }
}

function round(n: number): number {
  return Math.round(n * 10_000) / 10_000;
}

/** The nearest-rank 99th percentile (0 for no samples). */
function percentile99(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] as number;
}
