#!/usr/bin/env bash
# Checks deploy/: the Prometheus rules and example config with promtool (installed from
# Debian's `prometheus` package when missing and possible), every dashboard query parsed by
# promtool, the alert expressions evaluated on sample series, then the dashboard/rules unit
# test (test/unit/deploy.test.ts), which always runs.
#
#   bash deploy/check.sh
#   TANDEM_CHECK_NO_INSTALL=1 bash deploy/check.sh   # never call apt-get
#
# Exit 0 when everything that could run passed; a missing promtool is reported, not failed.
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=deploy/prometheus/tandem-alerts.yaml
CONFIG=deploy/prometheus/prometheus.example.yaml
DASHBOARD=deploy/grafana/tandem-dashboard.json

log() { printf '\n== %s ==\n' "$*"; }
failures=()
fail() { failures+=("$1"); echo "FAILED: $1" >&2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ------------------------------------------------------------------------------- promtool
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}

install_promtool() {
  [ "${TANDEM_CHECK_NO_INSTALL:-}" = 1 ] && { echo "TANDEM_CHECK_NO_INSTALL=1: not installing"; return 1; }
  command -v apt-get >/dev/null 2>&1 || { echo "no apt-get on this system"; return 1; }
  local start=$SECONDS
  echo "promtool not found: apt-get install -y --no-install-recommends prometheus (Debian ships promtool in it)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >"$work/apt.log" 2>&1; then
    echo "install failed ($(tail -n 1 "$work/apt.log")); running apt-get update and retrying"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$work/apt.log" 2>&1 || true
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >>"$work/apt.log" 2>&1; then
      echo "install failed again after $((SECONDS - start)) s:"; tail -n 5 "$work/apt.log"
      return 1
    fi
  fi
  echo "installed the prometheus package in $((SECONDS - start)) s"
  command -v promtool >/dev/null 2>&1
}

log "promtool"
have_promtool=0
if command -v promtool >/dev/null 2>&1 || install_promtool; then
  have_promtool=1
  promtool --version 2>&1 | head -n 1
else
  echo "promtool unavailable: rules not checked by promtool"
fi

if [ "$have_promtool" = 1 ]; then
  log "promtool check rules $RULES"
  promtool check rules "$RULES" || fail "promtool check rules"

  log "promtool check config $CONFIG"
  promtool check config "$CONFIG" || fail "promtool check config"

  log "dashboard queries parse as PromQL"
  # Each panel query becomes a recording rule ($table -> .*, $__rate_interval etc. -> 5m) so
  # promtool's parser checks it.
  node --input-type=module - "$DASHBOARD" >"$work/dashboard-rules.yaml" <<'EOF' || fail "extract dashboard queries"
import { readFileSync } from 'node:fs';
const dashboard = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const walk = (panels) => panels.flatMap((p) => [p, ...walk(p.panels ?? [])]);
const lines = ['groups:', '  - name: dashboard', '    rules:'];
let count = 0;
for (const panel of walk(dashboard.panels ?? [])) {
  for (const t of panel.targets ?? []) {
    if (!t.expr) continue;
    const expr = t.expr.replace(/\$__\w+/g, '5m').replace(/\$\{?\w+\}?/g, '.*');
    lines.push(`      - record: dashboard:panel_${panel.id}_${t.refId}`, `        expr: ${JSON.stringify(expr)}`);
    count++;
  }
}
process.stderr.write(`${count} dashboard queries\n`);
console.log(lines.join('\n'));
EOF
  promtool check rules "$work/dashboard-rules.yaml" || fail "dashboard queries (promtool)"

  log "promtool test rules (alert expressions on sample series)"
  sed "s|@RULES@|$PWD/$RULES|" >"$work/alerts-test.yaml" <<'EOF'
rule_files:
  - @RULES@
evaluation_interval: 1m
tests:
  # Lag: > 30 s warns after 2 m, > 120 s pages after 2 m; two replicas alert once per table.
  - interval: 1m
    input_series:
      - series: 'tandem_replication_lag_seconds{job="tandem",instance="a:8080",table="users"}'
        values: '0 10 40 40 40 40 150 150 150 150'
      - series: 'tandem_replication_lag_seconds{job="tandem",instance="b:8080",table="users"}'
        values: '0 10 40 40 40 40 150 150 150 150'
      - series: 'tandem_replication_lag_seconds{job="tandem",instance="a:8080",table="orders"}'
        values: '0x9'
    promql_expr_test:
      - expr: ALERTS{alertname=~"TandemReplicationLag.*",alertstate="firing"}
        eval_time: 5m
        exp_samples:
          - labels: 'ALERTS{alertname="TandemReplicationLagHigh",alertstate="firing",severity="warning",table="users"}'
            value: 1
      - expr: count(ALERTS{alertname=~"TandemReplicationLag.*",alertstate="firing",table="users"})
        eval_time: 9m
        exp_samples:
          - value: 2
  # Consistency: a low ratio pages only with >= 100 samples behind it.
  - interval: 1m
    input_series:
      - series: 'tandem_consistency_ratio{job="tandem",instance="a:8080",table="users"}'
        values: '0.5x10'
      - series: 'tandem_consistency_samples{job="tandem",instance="a:8080",table="users"}'
        values: '99x10'
      - series: 'tandem_consistency_ratio{job="tandem",instance="a:8080",table="orders"}'
        values: '0.98x10'
      - series: 'tandem_consistency_samples{job="tandem",instance="a:8080",table="orders"}'
        values: '100x10'
    promql_expr_test:
      - expr: ALERTS{alertname="TandemConsistencyLow",alertstate="firing"}
        eval_time: 6m
        exp_samples:
          - labels: 'ALERTS{alertname="TandemConsistencyLow",alertstate="firing",severity="critical",job="tandem",instance="a:8080",table="orders"}'
            value: 1
  # Dead rows, brake, circuit, flags, verify drift, down.
  - interval: 1m
    input_series:
      - series: 'tandem_outbox_dead{job="tandem",instance="a:8080",table="users"}'
        values: '0 0 3x8'
      - series: 'tandem_safety_brake_active{job="tandem",instance="a:8080",table="users"}'
        values: '0 1x9'
      - series: 'tandem_circuit_state{job="tandem",instance="a:8080",store="target"}'
        values: '0 1 2 2 2 2 0x4'
      - series: 'tandem_outbox_worker_stalled{job="tandem",instance="a:8080"}'
        values: '0 1x9'
      - series: 'tandem_outbox_worker_stalled{job="tandem",instance="b:8080"}'
        values: '0x10'
      - series: 'tandem_flags_errors_total{job="tandem",instance="a:8080"}'
        values: '0+1x20'
      - series: 'tandem_verify_drift_rows{job="tandem",instance="a:8080",table="users"}'
        values: '0 0 2x8'
      - series: 'up{job="tandem",instance="a:8080"}'
        values: '1 1 0x8'
      - series: 'up{job="tandem",instance="b:8080"}'
        values: '1x10'
    promql_expr_test:
      - expr: ALERTS{alertstate="firing"}
        eval_time: 4m
        exp_samples:
          - labels: 'ALERTS{alertname="TandemOutboxDeadRows",alertstate="firing",severity="warning",table="users"}'
            value: 1
          - labels: 'ALERTS{alertname="TandemSafetyBrakeActive",alertstate="firing",severity="warning",table="users"}'
            value: 1
          - labels: 'ALERTS{alertname="TandemCircuitOpen",alertstate="firing",severity="warning",job="tandem",instance="a:8080",store="target"}'
            value: 1
          - labels: 'ALERTS{alertname="TandemVerifyDrift",alertstate="firing",severity="warning",table="users"}'
            value: 1
          - labels: 'ALERTS{alertname="TandemOutboxWorkerStalled",alertstate="firing",severity="critical",job="tandem",instance="a:8080"}'
            value: 1
          - labels: 'ALERTS{alertname="TandemDown",alertstate="firing",severity="critical",job="tandem",instance="a:8080"}'
            value: 1
      - expr: ALERTS{alertname="TandemFlagsRefreshFailing",alertstate="firing"}
        eval_time: 10m
        exp_samples:
          - labels: 'ALERTS{alertname="TandemFlagsRefreshFailing",alertstate="firing",severity="warning",job="tandem",instance="a:8080"}'
            value: 1
EOF
  promtool test rules "$work/alerts-test.yaml" || fail "promtool test rules"
fi

# --------------------------------------------------------------------- unit test (always)
log "dashboard and rules test (vitest test/unit/deploy.test.ts)"
npx --no-install vitest run test/unit/deploy.test.ts || fail "test/unit/deploy.test.ts"

log "result"
if [ "${#failures[@]}" -gt 0 ]; then
  printf 'deploy checks FAILED: %s\n' "${failures[*]}"
  exit 1
fi
if [ "$have_promtool" = 1 ]; then echo "deploy checks passed (promtool and unit test)"
else echo "deploy checks passed (unit test only; promtool unavailable: rules not checked by promtool)"
fi
