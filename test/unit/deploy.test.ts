import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { makeMetrics } from '../../src/metrics/metrics.js';

/**
 * deploy/ (Grafana dashboard, Prometheus rules and example config) only uses metric names
 * Tandem registers, covers every topic operators rely on, and is well-formed.
 * `bash deploy/check.sh` adds promtool's checks on top.
 */

const root = path.resolve(import.meta.dirname, '../..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

const DASHBOARD = 'deploy/grafana/tandem-dashboard.json';
const RULES = 'deploy/prometheus/tandem-alerts.yaml';
const PROM_CONFIG = 'deploy/prometheus/prometheus.example.yaml';

/** Metric-name tokens in a PromQL expression (digits allowed: `tandem_process_nodejs_eventloop_lag_p99_seconds`). */
function metricTokens(expr: string): string[] {
  return [...new Set(expr.match(/\btandem_[a-z0-9_]+/g) ?? [])];
}

/** The series names Prometheus sees for a registry's metrics (histograms only as `_bucket`, `_sum`, `_count`). */
async function exportedSeriesNames(): Promise<Set<string>> {
  const { registry } = makeMetrics();
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    const type = String(metric.type);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(metric.name + suffix);
    else names.add(metric.name);
  }
  return names;
}

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
}
interface TemplateVariable {
  name: string;
  type: string;
  query?: unknown;
  definition?: string;
  datasource?: { type?: string; uid?: string };
}
interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  panels?: Panel[];
  templating?: { list?: TemplateVariable[] };
}
interface AlertRule {
  alert?: string;
  record?: string;
  expr?: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups?: { name: string; rules?: AlertRule[] }[];
}

/** Every panel, including those nested in collapsed rows. */
function allPanels(panels: Panel[] = []): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels)]);
}

function variableQuery(v: TemplateVariable): string {
  if (typeof v.query === 'string') return v.query;
  if (v.query && typeof v.query === 'object' && 'query' in v.query) return String((v.query as { query: unknown }).query);
  return v.definition ?? '';
}

describe('deploy/: dashboard and alert rules', () => {
  let known: Set<string>;
  let dashboard: Dashboard;
  let panels: Panel[];
  let queryPanels: Panel[];
  let rules: AlertRule[];
  let ruleFile: RuleFile;

  beforeAll(async () => {
    known = await exportedSeriesNames();
    dashboard = JSON.parse(read(DASHBOARD)) as Dashboard;
    panels = allPanels(dashboard.panels);
    queryPanels = panels.filter((p) => p.type !== 'row');
    ruleFile = parse(read(RULES)) as RuleFile;
    rules = (ruleFile.groups ?? []).flatMap((g) => g.rules ?? []);
  });

  const panelExprs = () => queryPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr ?? '' })));
  const templateExprs = () => (dashboard.templating?.list ?? []).filter((v) => v.type === 'query').map((v) => ({ where: `variable ${v.name}`, expr: variableQuery(v) }));
  const ruleExprs = () => rules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: r.expr ?? '' }));

  it('sees the registry it checks against (metrics.ts names, histogram suffixes, process metrics)', () => {
    expect(known.has('tandem_stage')).toBe(true);
    expect(known.has('tandem_request_duration_seconds_bucket')).toBe(true);
    expect(known.has('tandem_request_duration_seconds')).toBe(false);
    expect(known.has('tandem_process_process_resident_memory_bytes')).toBe(true);
    expect(metricTokens('histogram_quantile(0.99, sum by (le) (rate(tandem_request_duration_seconds_bucket{route="/x"}[5m])))')).toEqual([
      'tandem_request_duration_seconds_bucket',
    ]);
  });

  it('uses only metric names Tandem exports, in every dashboard and rule expression', () => {
    const all = [...panelExprs(), ...templateExprs(), ...ruleExprs()];
    expect(all.length).toBeGreaterThan(20);
    const unknown = all.flatMap(({ where, expr }) => metricTokens(expr).filter((name) => !known.has(name)).map((name) => `${where}: ${name}`));
    expect(unknown, 'metric names not registered by makeMetrics()').toEqual([]);
  });

  it('is an importable dashboard: schema, uid, datasource and table variables, ids and layout', () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.title).toBeTruthy();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const vars = dashboard.templating?.list ?? [];
    expect(vars.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const table = vars.find((v) => v.name === 'table');
    expect(table?.type).toBe('query');
    expect(variableQuery(table!)).toBe('label_values(tandem_stage, table)');
    expect(table?.datasource?.uid).toBe('${datasource}');

    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => typeof id === 'number')).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    // No two panels overlap on the 24-column grid.
    const boxes = panels.map((p) => ({ title: p.title, ...p.gridPos! }));
    for (const b of boxes) {
      expect(b.x + b.w, `panel "${b.title}" width`).toBeLessThanOrEqual(24);
      expect(b.w * b.h, `panel "${b.title}" size`).toBeGreaterThan(0);
    }
    const overlaps = boxes.flatMap((a, i) =>
      boxes.slice(i + 1).filter((b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h).map((b) => `${a.title} / ${b.title}`),
    );
    expect(overlaps).toEqual([]);
  });

  it('gives every panel and query the ${datasource} variable', () => {
    expect(queryPanels.length).toBeGreaterThan(10);
    for (const panel of queryPanels) {
      expect(panel.datasource, `panel "${panel.title}"`).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length, `panel "${panel.title}" has queries`).toBeGreaterThan(0);
      for (const t of panel.targets ?? []) {
        expect(t.datasource?.uid, `panel "${panel.title}" ${t.refId}`).toBe('${datasource}');
        expect(t.expr?.trim(), `panel "${panel.title}" ${t.refId}`).toBeTruthy();
      }
    }
  });

  it('has a panel for every required topic', () => {
    const topics: Record<string, string[]> = {
      'stage per table': ['tandem_stage'],
      'read-target %': ['tandem_read_target_percent'],
      'replication lag': ['tandem_replication_lag_seconds'],
      'outbox pending and dead': ['tandem_outbox_pending', 'tandem_outbox_dead'],
      'consistency ratio with samples': ['tandem_consistency_ratio', 'tandem_consistency_samples'],
      'shadow mismatches': ['tandem_shadow_reads_total'],
      'errors by store': ['tandem_writes_total', 'tandem_reads_total', 'tandem_apply_total'],
      'circuit state': ['tandem_circuit_state'],
      'safety brake': ['tandem_safety_brake_active', 'tandem_safety_brake_trips_total'],
      'request rate and p99': ['tandem_requests_total', 'tandem_request_duration_seconds_bucket'],
      'verify drift and last run': ['tandem_verify_drift_rows', 'tandem_verify_last_run_timestamp_seconds'],
      'flag errors and conflicts': ['tandem_flags_errors_total', 'tandem_flag_conflicts_total'],
    };
    const used = new Set(panelExprs().flatMap(({ expr }) => metricTokens(expr)));
    const missing = Object.entries(topics).flatMap(([topic, names]) => names.filter((n) => !used.has(n)).map((n) => `${topic}: ${n}`));
    expect(missing).toEqual([]);

    const exprs = panelExprs().map(({ expr }) => expr.replace(/\s+/g, ' '));
    expect(exprs).toContain('histogram_quantile(0.99, sum by (le, route) (rate(tandem_request_duration_seconds_bucket[5m])))');
    expect(exprs.some((e) => /tandem_stage\{[^}]*\} == 1/.test(e))).toBe(true);
    expect(exprs.some((e) => /tandem_writes_total\{[^}]*result="error"/.test(e) && /by \(store\)/.test(e))).toBe(true);
    expect(exprs.some((e) => /tandem_reads_total\{[^}]*result=~"fallback\|error"/.test(e) && /by \(store/.test(e))).toBe(true);
    expect(exprs.some((e) => /tandem_apply_total\{[^}]*result="failed"/.test(e))).toBe(true);
  });

  it('has one `tandem` rule group whose alerts all carry for, severity, summary, description and a README runbook', () => {
    expect(ruleFile.groups?.map((g) => g.name)).toEqual(['tandem']);
    const alerts = rules.filter((r) => r.alert);
    expect(alerts.length).toBe(rules.length);
    expect(new Set(alerts.map((a) => a.alert)).size).toBe(alerts.length);
    const headings = new Set(
      read('README.md')
        .split('\n')
        .filter((l) => /^#{1,6} /.test(l))
        .map((l) => l.replace(/^#+ /, '').trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')),
    );
    for (const a of alerts) {
      const name = a.alert ?? '';
      expect(a.for, `${name}: for`).toMatch(/^\d+[smh]$/);
      expect(['warning', 'critical'], `${name}: severity`).toContain(a.labels?.['severity']);
      expect(a.annotations?.['summary'], `${name}: summary`).toBeTruthy();
      expect(a.annotations?.['description'], `${name}: description`).toBeTruthy();
      const anchor = /README\.md#([a-z0-9-]+)/.exec(a.annotations?.['runbook'] ?? '')?.[1];
      expect(anchor, `${name}: runbook points at README.md#section`).toBeTruthy();
      expect(headings.has(anchor!), `${name}: README has a "${anchor}" section`).toBe(true);
    }
  });

  it('alerts on every required condition', () => {
    const find = (pattern: RegExp) => rules.filter((r) => pattern.test((r.expr ?? '').replace(/\s+/g, ' ')));
    const severities = (pattern: RegExp) => find(pattern).map((r) => r.labels?.['severity']).sort();
    expect(severities(/tandem_replication_lag_seconds\) > 30$/)).toEqual(['warning']);
    expect(severities(/tandem_replication_lag_seconds\) > 120$/)).toEqual(['critical']);
    expect(find(/tandem_outbox_dead\) > 0$/)).toHaveLength(1);
    expect(find(/tandem_consistency_ratio < 0\.99 and tandem_consistency_samples >= 100$/)).toHaveLength(1);
    expect(find(/tandem_safety_brake_active\) > 0$/)).toHaveLength(1);
    const circuit = find(/^tandem_circuit_state == 2$/);
    expect(circuit).toHaveLength(1);
    expect(circuit[0]?.for).toBe('1m');
    expect(find(/^increase\(tandem_flags_errors_total\[5m\]\) > 0$/)).toHaveLength(1);
    expect(find(/tandem_verify_drift_rows\) > 0$/)).toHaveLength(1);
    expect(find(/^up\{job="tandem"\} == 0$/)).toHaveLength(1);
    expect(find(/^max by \(table\) \(tandem_switch_in_progress\) > 0$/)).toHaveLength(1);
    expect(find(/tandem_switch_refused_total\[10m\]\)\) > 0$/)).toHaveLength(1);
    expect(find(/tandem_reverse_lag_seconds\) > 30$/)).toHaveLength(1);
    expect(find(/^tandem_outbox_worker_stalled == 1$/)).toHaveLength(1);
  });

  it('example Prometheus config scrapes /metrics as job tandem and loads the rules', () => {
    const config = parse(read(PROM_CONFIG)) as {
      rule_files?: string[];
      scrape_configs?: { job_name: string; metrics_path?: string; static_configs?: { targets: string[] }[] }[];
    };
    const job = config.scrape_configs?.find((s) => s.job_name === 'tandem');
    expect(job?.metrics_path ?? '/metrics').toBe('/metrics');
    expect(job?.static_configs?.[0]?.targets.length).toBeGreaterThan(0);
    const ruleFiles = (config.rule_files ?? []).map((f) => path.resolve(path.dirname(path.join(root, PROM_CONFIG)), f));
    expect(ruleFiles).toContain(path.join(root, RULES));
  });
});
