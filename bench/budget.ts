/**
 * The performance budget of DESIGN §12 as data: one line per check, judged per table shape.
 * A metric is `null` when its phase did not run (smoke runs, `--phases`): the line is then
 * reported as not measured, never as a pass.
 */
export const METRICS = [
  'sourceOnlyVsDirect',
  'dualWriteVsNaive',
  'p99AddedSourceOnlyMs',
  'p99AddedDualWriteMs',
  'drainRowsPerSec',
  'verifyRowsPerSec',
  'backfillRowsPerSec',
  'maxRssMb',
] as const;
export type Metric = (typeof METRICS)[number];

export interface BudgetLine {
  name: string;
  metric: Metric;
  comparison: '>=' | '<=';
  threshold: number;
  unit: string;
}

export const BUDGET: readonly BudgetLine[] = [
  { name: 'Tandem source-only / direct (req/s)', metric: 'sourceOnlyVsDirect', comparison: '>=', threshold: 0.9, unit: '×' },
  { name: 'Tandem dual-write / naive dual (req/s)', metric: 'dualWriteVsNaive', comparison: '>=', threshold: 1.0, unit: '×' },
  { name: 'p99 added at a fixed rate: source-only − direct', metric: 'p99AddedSourceOnlyMs', comparison: '<=', threshold: 3, unit: 'ms' },
  { name: 'p99 added at a fixed rate: dual-write − naive dual', metric: 'p99AddedDualWriteMs', comparison: '<=', threshold: 3, unit: 'ms' },
  { name: 'outbox drain after an outage (steady rate)', metric: 'drainRowsPerSec', comparison: '>=', threshold: 10_000, unit: 'rows/s' },
  { name: 'verify (`tandem verify`, table rows)', metric: 'verifyRowsPerSec', comparison: '>=', threshold: 100_000, unit: 'rows/s' },
  { name: 'backfill (`tandem backfill`)', metric: 'backfillRowsPerSec', comparison: '>=', threshold: 20_000, unit: 'rows/s' },
  { name: 'Tandem max RSS under load', metric: 'maxRssMb', comparison: '<=', threshold: 200, unit: 'MB' },
];

export type Measured = Partial<Record<Metric, number | null>>;

export interface Verdict {
  line: BudgetLine;
  value: number | null;
  /** null: not measured in this run. */
  pass: boolean | null;
}

/** Judges every budget line against what one shape measured. */
export function judge(measured: Measured): Verdict[] {
  return BUDGET.map((line) => {
    const value = measured[line.metric];
    if (value === null || value === undefined || !Number.isFinite(value)) return { line, value: null, pass: null };
    return { line, value, pass: line.comparison === '>=' ? value >= line.threshold : value <= line.threshold };
  });
}
