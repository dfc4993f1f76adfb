#!/usr/bin/env bash
# Checks the Prometheus and Grafana bundle offline:
# - prometheus/prometheus.yml, alone and with the example file_sd targets
# - the alert rules and their promtool unit tests
# - grafana/mxrc-dashboard.json: valid JSON, importable structure, and every
#   panel query parses as PromQL
#
#   tests/promtool-check.sh
#
# Needs promtool (Debian package prometheus) and python3; installs nothing.
# Debian 12's promtool 2.42 has no command that parses a bare PromQL
# expression, so the dashboard queries are checked as recording rules with
# `promtool check rules`, after replacing the Grafana variables with sample
# values. Whether they return data is checked by tests/system/prometheus-live.sh.
#
# Prints one line per check and ends with "promtool: N passed, N failed";
# exits non-zero when any check failed.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DASHBOARD=$REPO/grafana/mxrc-dashboard.json

if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found: install the prometheus package: apt-get install -y prometheus" >&2
    echo "promtool: 0 passed, 1 failed"
    exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: install it with apt-get install -y python3" >&2
    echo "promtool: 0 passed, 1 failed"
    exit 1
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0

# Runs CMD... and prints "ok   NAME" or "FAIL NAME" with the command's output.
check() {
    local name=$1
    shift
    local output
    if output=$("$@" 2>&1); then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        sed 's/^/    /' <<<"$output"
        failed=$((failed + 1))
    fi
}

# Checks a copy of the config whose targets/ directory contains the example
# target list under a .yml name, so that promtool also validates that file.
check_config_with_example_targets() {
    local copy=$WORK/config-with-targets
    mkdir -p "$copy"
    cp -r "$REPO/prometheus/." "$copy/"
    cp "$REPO/prometheus/targets/example.yml.sample" "$copy/targets/example.yml"
    promtool check config "$copy/prometheus.yml"
}

# Checks the JSON syntax and the parts of the dashboard that an import needs.
check_dashboard_structure() {
    python3 -m json.tool "$DASHBOARD" >/dev/null
    python3 - "$DASHBOARD" <<'EOF'
import json
import sys

path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    dashboard = json.load(f)

errors = []
inputs = [i.get("name") for i in dashboard.get("__inputs", [])]
if "DS_PROMETHEUS" not in inputs:
    errors.append("__inputs has no DS_PROMETHEUS datasource input")
if not dashboard.get("__requires"):
    errors.append("__requires is missing or empty")
if not dashboard.get("uid"):
    errors.append("uid is missing")

variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
for name in ("instance", "unit"):
    if name not in variables:
        errors.append(f"template variable {name!r} is missing")
if "unit" in variables and not (variables["unit"].get("multi") and variables["unit"].get("includeAll")):
    errors.append("template variable 'unit' must allow multiple values and All")

panel_types = {r["id"] for r in dashboard.get("__requires", []) if r.get("type") == "panel"}
seen_ids = set()
for panel in dashboard.get("panels", []):
    title = panel.get("title", "")
    where = f"panel {panel.get('id')} {title!r}"
    if panel.get("id") in seen_ids:
        errors.append(f"{where}: duplicate id")
    seen_ids.add(panel.get("id"))
    if not title:
        errors.append(f"{where}: no title")
    if panel.get("type") == "row":
        continue
    if panel.get("type") not in panel_types:
        errors.append(f"{where}: type {panel.get('type')!r} is not listed in __requires")
    if not panel.get("description"):
        errors.append(f"{where}: no description")
    if panel.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
        errors.append(f"{where}: datasource is not ${{DS_PROMETHEUS}}")
    if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
        errors.append(f"{where}: no unit in fieldConfig.defaults")
    targets = panel.get("targets", [])
    if not targets:
        errors.append(f"{where}: no targets")
    for target in targets:
        if not target.get("expr", "").strip():
            errors.append(f"{where}: target {target.get('refId')} has no expr")
        if target.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"{where}: target {target.get('refId')} datasource is not ${{DS_PROMETHEUS}}")

for error in errors:
    print(error)
sys.exit(1 if errors else 0)
EOF
}

# Writes every panel query and variable query of the dashboard as a recording
# rule, with the Grafana variables replaced, and lets promtool parse them.
check_dashboard_queries() {
    local rules=$WORK/dashboard-queries.yml
    python3 - "$DASHBOARD" "$rules" <<'EOF'
import json
import re
import sys

dashboard_path, rules_path = sys.argv[1], sys.argv[2]
with open(dashboard_path, encoding="utf-8") as f:
    dashboard = json.load(f)

# Sample values of the kind Grafana substitutes.
substitutions = {
    "$__rate_interval": "20s",
    "$__interval": "5s",
    "$__range": "1h",
    "$instance": "localhost:9720",
    "$unit": "mxrc-rt.service|mxrc-nonrt.service",
}


def substitute(expr):
    for name in sorted(substitutions, key=len, reverse=True):
        expr = expr.replace(name, substitutions[name])
    return expr


rules = []
for panel in dashboard.get("panels", []):
    for target in panel.get("targets", []):
        rules.append((f"dashboard:panel_{panel['id']}_{target['refId']}", substitute(target["expr"])))
for variable in dashboard.get("templating", {}).get("list", []):
    query = variable.get("query", {})
    query = query.get("query", "") if isinstance(query, dict) else query
    match = re.fullmatch(r"label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)", query.strip())
    if match:
        rules.append((f"dashboard:variable_{variable['name']}", substitute(match.group(1))))
    else:
        rules.append((f"dashboard:variable_{variable['name']}", f"invalid label_values query: {query}"))

with open(rules_path, "w", encoding="utf-8") as f:
    f.write("groups:\n  - name: dashboard-queries\n    rules:\n")
    for record, expr in rules:
        f.write(f"      - record: {record}\n        expr: {json.dumps(expr)}\n")
print(f"{len(rules)} queries written", file=sys.stderr)
EOF
    promtool check rules "$rules"
}

cd "$REPO"
check "config prometheus/prometheus.yml" promtool check config prometheus/prometheus.yml
check "config with targets/example.yml.sample" check_config_with_example_targets
for file in prometheus/rules/*.yml; do
    check "rules $file" promtool check rules "$file"
done
for file in prometheus/tests/*.yml; do
    check "rule tests $file" promtool test rules "$file"
done
check "dashboard structure grafana/mxrc-dashboard.json" check_dashboard_structure
check "dashboard queries parse" check_dashboard_queries

# The exporter's golden exposition (exporter/tests/golden/metrics.txt) must
# satisfy promtool's naming and format lint.
check_golden_metrics() {
    promtool check metrics <exporter/tests/golden/metrics.txt
}
check "exporter golden metrics pass promtool check metrics" check_golden_metrics

echo "promtool: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
