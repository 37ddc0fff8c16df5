import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { BREAKER_STATES, STAGES, type TandemEvent } from '../events.js';

/**
 * Every Tandem metric (DESIGN §9), in one registry owned by the app (no global registry).
 * With several workers (TANDEM_WORKERS) the primary sums the workers' counters and
 * histograms; a gauge states how it combines (`aggregator`): figures every worker reads
 * from the database (outbox, lag, stage) take the max, not a sum of copies.
 */
export function makeMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tandem_process_' });
  const m = {
    registry,
    requests: new Counter({
      name: 'tandem_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'tandem_request_duration_seconds',
      help: 'HTTP request duration by route',
      labelNames: ['route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    writes: new Counter({
      name: 'tandem_writes_total',
      help: 'Write operations on the primary by table, store and result',
      labelNames: ['table', 'store', 'result'] as const,
      registers: [registry],
    }),
    reads: new Counter({
      name: 'tandem_reads_total',
      help: 'Reads by table, store and result',
      labelNames: ['table', 'store', 'result'] as const,
      registers: [registry],
    }),
    shadowReads: new Counter({
      name: 'tandem_shadow_reads_total',
      help: 'Shadow reads by table and result (match, mismatch, error)',
      labelNames: ['table', 'result'] as const,
      registers: [registry],
    }),
    consistency: new Gauge({
      name: 'tandem_consistency_ratio',
      help: 'Rolling share of shadow comparisons that matched (1 with no samples)',
      labelNames: ['table'] as const,
      aggregator: 'min',
      registers: [registry],
    }),
    consistencySamples: new Gauge({
      name: 'tandem_consistency_samples',
      help: 'Shadow comparisons behind tandem_consistency_ratio',
      labelNames: ['table'] as const,
      registers: [registry],
    }),
    readTargetPercent: new Gauge({
      name: 'tandem_read_target_percent',
      help: 'Share of reads the read-target flag sends to the target',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    apply: new Counter({
      name: 'tandem_apply_total',
      help: 'Keys applied to the secondary by table and result (applied, skipped_stale, failed)',
      labelNames: ['table', 'result'] as const,
      registers: [registry],
    }),
    outboxPending: new Gauge({
      name: 'tandem_outbox_pending',
      help: 'Outbox rows not yet applied to the secondary',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    outboxDead: new Gauge({
      name: 'tandem_outbox_dead',
      help: 'Outbox rows that stopped retrying and wait for an operator (replayable)',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    lag: new Gauge({
      name: 'tandem_replication_lag_seconds',
      help: 'Age of the oldest pending outbox row',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    schemaErrors: new Counter({
      name: 'tandem_apply_schema_errors_total',
      help: 'Applies the target refused because its schema does not match the policy yet (missing table or column, privilege), by table',
      labelNames: ['table'] as const,
      registers: [registry],
    }),
    orphaned: new Counter({
      name: 'tandem_outbox_orphaned_total',
      help: 'Outbox rows set aside because their table has no policy any more, by table',
      labelNames: ['table'] as const,
      registers: [registry],
    }),
    workerStalled: new Gauge({
      name: 'tandem_outbox_worker_stalled',
      help: '1 while the outbox worker makes no progress with nothing to explain it (see /admin/status worker.reason)',
      aggregator: 'max',
      registers: [registry],
    }),
    workerSinceRound: new Gauge({
      name: 'tandem_outbox_worker_seconds_since_round',
      help: 'Seconds since the outbox worker last finished a claim round (an idle poll counts)',
      aggregator: 'max',
      registers: [registry],
    }),
    circuit: new Gauge({
      name: 'tandem_circuit_state',
      help: 'Circuit breaker state per store: 0 closed, 1 half-open, 2 open',
      labelNames: ['store'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    stage: new Gauge({
      name: 'tandem_stage',
      help: '1 for the stage each table is in, 0 for the others',
      labelNames: ['table', 'stage'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    primaryEpoch: new Gauge({
      name: 'tandem_primary_epoch',
      help: 'Epoch of each table\'s primary (grows by one per switch)',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    targetPrimary: new Gauge({
      name: 'tandem_target_primary',
      help: '1 while the table\'s primary is the target (after a cutover), 0 while it is the source',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    switchInProgress: new Gauge({
      name: 'tandem_switch_in_progress',
      help: '1 while a primary switch holds the table frozen',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    switchDuration: new Histogram({
      name: 'tandem_switch_duration_seconds',
      help: 'Duration of primary switches (freeze to release), by table and new primary',
      labelNames: ['table', 'to'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    switchSteps: new Counter({
      name: 'tandem_switch_steps_total',
      help: 'Primary switch steps recorded, by table and step',
      labelNames: ['table', 'step'] as const,
      registers: [registry],
    }),
    switchRefused: new Counter({
      name: 'tandem_switch_refused_total',
      help: 'Primary switches refused or abandoned before their commit point',
      labelNames: ['table'] as const,
      registers: [registry],
    }),
    reversePending: new Gauge({
      name: 'tandem_reverse_outbox_pending',
      help: 'Rows in the target\'s outbox waiting for the source (reverse replication after a cutover)',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    reverseLag: new Gauge({
      name: 'tandem_reverse_lag_seconds',
      help: 'Age of the oldest row in the target\'s outbox not yet applied to the source',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    stale: new Gauge({
      name: 'tandem_target_stale',
      help: '1 while a table\'s target may lack rows (reads stay off it until a clean verify)',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    flagConflicts: new Counter({
      name: 'tandem_flag_conflicts_total',
      help: 'Flag combinations refused (the last good stage was kept)',
      registers: [registry],
    }),
    brakeActive: new Gauge({
      name: 'tandem_safety_brake_active',
      help: '1 while the safety brake holds the table\'s reads on the primary',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    brakeTrips: new Counter({
      name: 'tandem_safety_brake_trips_total',
      help: 'Safety brake trips by table and signal (error_rate, consistency, lag)',
      labelNames: ['table', 'signal'] as const,
      registers: [registry],
    }),
    verifyRows: new Counter({
      name: 'tandem_verify_rows_total',
      help: 'Rows compared by verify, by table and result (matching, mismatched, missing, extra)',
      labelNames: ['table', 'result'] as const,
      registers: [registry],
    }),
    verifyDrift: new Gauge({
      name: 'tandem_verify_drift_rows',
      help: 'Rows that differed in the last completed verify of the table',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    verifyLastRun: new Gauge({
      name: 'tandem_verify_last_run_timestamp_seconds',
      help: 'When the last verify of the table finished (Unix seconds)',
      labelNames: ['table'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    backfillRows: new Counter({
      name: 'tandem_backfill_rows_total',
      help: 'Rows copied to the target by backfill, by table',
      labelNames: ['table'] as const,
      registers: [registry],
    }),
    flagErrors: new Counter({
      name: 'tandem_flags_errors_total',
      help: 'Failed refreshes of the flag source (Unleash unreachable, broken flag file)',
      registers: [registry],
    }),
    flagsSynchronized: new Gauge({
      name: 'tandem_flags_synchronized',
      help: '1 once flags have been loaded from Unleash or the flag file',
      aggregator: 'min',
      registers: [registry],
    }),
    backgroundErrors: new Counter({
      name: 'tandem_background_errors_total',
      help: 'Errors caught in background loops by component',
      labelNames: ['component'] as const,
      registers: [registry],
    }),
  };
  return m;
}

export type TandemMetrics = ReturnType<typeof makeMetrics>;

/** Applies one domain event to the metrics. */
/**
 * The labelled child of a per-request metric, kept by a plain string key: prom-client
 * otherwise sorts and joins the label object on every call, once or twice per request.
 * Label values here come from routes, tables and statuses, so the number of children
 * stays small.
 */
const children = new WeakMap<object, Map<string, { inc(): void; observe(value: number): void }>>();
function child<T extends { labels(...values: string[]): unknown }>(metric: T, key: string, values: () => string[]): { inc(): void; observe(value: number): void } {
  let map = children.get(metric);
  if (!map) {
    map = new Map();
    children.set(metric, map);
  }
  let labelled = map.get(key);
  if (!labelled) {
    labelled = metric.labels(...values()) as { inc(): void; observe(value: number): void };
    map.set(key, labelled);
  }
  return labelled;
}

export function recordEvent(m: TandemMetrics, event: TandemEvent): void {
  switch (event.type) {
    case 'http.request':
      child(m.requests, `${event.route}\u0000${event.method}\u0000${event.status}`, () => [event.route, event.method, String(event.status)]).inc();
      child(m.requestDuration, event.route, () => [event.route]).observe(event.durationMs / 1000);
      return;
    case 'write':
      child(m.writes, `${event.table}\u0000${event.store}\u0000${event.result}`, () => [event.table, event.store, event.result]).inc();
      return;
    case 'read':
      m.reads.inc({ table: event.table, store: event.store, result: event.result });
      return;
    case 'shadow':
      m.shadowReads.inc({ table: event.table, result: event.result });
      return;
    case 'consistency':
      m.consistency.set({ table: event.table }, event.ratio);
      m.consistencySamples.set({ table: event.table }, event.samples);
      return;
    case 'apply':
      m.apply.inc({ table: event.table, result: event.result }, event.count);
      return;
    case 'apply.schema':
      m.schemaErrors.inc({ table: event.table });
      return;
    case 'outbox.orphaned':
      m.orphaned.inc({ table: event.table }, event.rows);
      return;
    case 'outbox.stats':
      for (const t of event.tables) {
        m.outboxPending.set({ table: t.table }, t.pending);
        m.outboxDead.set({ table: t.table }, t.dead);
        m.lag.set({ table: t.table }, t.lagSeconds);
      }
      return;
    case 'reverse.stats':
      for (const t of event.tables) {
        m.reversePending.set({ table: t.table }, t.pending);
        m.reverseLag.set({ table: t.table }, t.lagSeconds);
      }
      return;
    case 'cutover.step':
      m.switchSteps.inc({ table: event.table, step: event.step });
      m.switchInProgress.set({ table: event.table }, event.phase === 'done' ? 0 : 1);
      return;
    case 'cutover.switched':
      m.switchDuration.observe({ table: event.table, to: event.to }, event.ms / 1000);
      m.primaryEpoch.set({ table: event.table }, event.epoch);
      m.targetPrimary.set({ table: event.table }, event.to === 'target' ? 1 : 0);
      return;
    case 'cutover.refused':
    case 'cutover.abandoned':
      m.switchRefused.inc({ table: event.table });
      m.switchInProgress.set({ table: event.table }, 0);
      return;
    case 'breaker':
      m.circuit.set({ store: event.store }, BREAKER_STATES.indexOf(event.state));
      return;
    case 'stage':
      for (const stage of STAGES) m.stage.set({ table: event.table, stage }, stage === event.stage ? 1 : 0);
      m.stale.set({ table: event.table }, event.stale ? 1 : 0);
      return;
    case 'brake':
      m.brakeActive.set({ table: event.table }, event.active ? 1 : 0);
      if (event.active && event.signal) m.brakeTrips.inc({ table: event.table, signal: event.signal });
      return;
    case 'verify': {
      const r = event.report;
      m.verifyRows.inc({ table: r.table, result: 'matching' }, r.matching);
      m.verifyRows.inc({ table: r.table, result: 'mismatched' }, r.mismatched);
      m.verifyRows.inc({ table: r.table, result: 'missing' }, r.missingInTarget);
      m.verifyRows.inc({ table: r.table, result: 'extra' }, r.extraInTarget);
      m.verifyDrift.set({ table: r.table }, r.mismatched + r.missingInTarget + r.extraInTarget);
      m.verifyLastRun.set({ table: r.table }, Date.now() / 1000);
      return;
    }
    case 'flag.conflict':
      m.flagConflicts.inc();
      return;
    case 'flags.loaded':
      m.flagsSynchronized.set(1);
      return;
    case 'flags.error':
      m.flagErrors.inc();
      return;
    case 'background.error':
      m.backgroundErrors.inc({ component: event.component });
      return;
    default:
      return;
  }
}
