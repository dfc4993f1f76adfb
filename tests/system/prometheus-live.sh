#!/usr/bin/env bash
# Runs the shipped Prometheus config, alert rules and Grafana dashboard
# queries against the real mxrc-monitor, and provokes two alerts.
#
# Runs inside the booted systemd sandbox as root, with mxrc.target started and
# mxrc-monitor listening on 127.0.0.1:9720 (tests/run-system-tests.sh sets
# that up). The repository is at $MXRC_SRC (default /mxrc). Needs Debian's
# prometheus package (/usr/bin/prometheus), curl and python3.
#
# Steps:
# 1. Start /usr/bin/prometheus in the background (not as a systemd service)
#    on 127.0.0.1:19090 with a temporary copy of prometheus/. The copy
#    scrapes 127.0.0.1:9720 every second and shortens every for: of the
#    alert rules to 2 s, so that alerts fire within the test's time.
# 2. Run every dashboard query and every alert expression through
#    /api/v1/query. Any error fails the test, and so does a dashboard query
#    with an empty result unless it depends on an optional metric.
# 3. SIGKILL mxrc-rt.service three times (MxrcRestartStorm), stop it
#    (MxrcServiceNotActive), and start it with an ExecStart= that exits 1
#    (MxrcTargetStartFailed), and wait for /api/v1/alerts to report each
#    alert as firing.
# On exit, also on failure, Prometheus is stopped, the test's drop-in is
# removed and mxrc.target is restarted with its failed state reset.
# A pass took 34 s in the sandbox on a 2-core machine. The waits add up to
# about 190 s when every step times out, below the 240 s per test of
# tests/run-system-tests.sh.
set -euo pipefail

MXRC_SRC=${MXRC_SRC:-/mxrc}
# `sandbox.sh run` may start bash in a working directory outside the
# sandbox's root, and bash then warns on every job that it cannot read it.
cd /
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
PROM_ADDRESS=127.0.0.1:19090
PROM_URL=http://$PROM_ADDRESS
EXPORTER_ADDRESS=127.0.0.1:9720
RT_UNIT=mxrc-rt.service
FAIL_DROPIN_DIR=/run/systemd/system/$RT_UNIT.d
FAIL_DROPIN=$FAIL_DROPIN_DIR/zz-prometheus-live-fail.conf

progress() {
    echo "  $*"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

for tool in curl python3 systemctl; do
    command -v "$tool" >/dev/null || fail "'$tool' not found in the sandbox"
done
[ -x "$PROMETHEUS_BIN" ] ||
    fail "$PROMETHEUS_BIN not found: install the prometheus package: apt-get install -y prometheus"
[ -f "$MXRC_SRC/prometheus/prometheus.yml" ] || fail "$MXRC_SRC/prometheus/prometheus.yml not found; set MXRC_SRC to the repository"
if curl -fsS --max-time 1 "$PROM_URL/-/ready" >/dev/null 2>&1; then
    fail "something already listens on $PROM_ADDRESS; stop it before running this test"
fi

WORK=$(mktemp -d /tmp/mxrc-prometheus-live.XXXXXX)
PROM_PID=""

cleanup() {
    local status=$?
    if [ -n "$PROM_PID" ] && kill -0 "$PROM_PID" 2>/dev/null; then
        kill "$PROM_PID" 2>/dev/null || true
        wait "$PROM_PID" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$WORK/prometheus.log" ]; then
        echo "  last lines of the Prometheus log:" >&2
        tail -n 20 "$WORK/prometheus.log" | sed 's/^/    /' >&2
    fi
    if [ -f "$FAIL_DROPIN" ]; then
        rm -f "$FAIL_DROPIN"
        rmdir "$FAIL_DROPIN_DIR" 2>/dev/null || true
        systemctl daemon-reload || echo "  cleanup: 'systemctl daemon-reload' failed" >&2
    fi
    systemctl reset-failed mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service 2>/dev/null || true
    systemctl restart mxrc.target || echo "  cleanup: 'systemctl restart mxrc.target' failed" >&2
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Copies prometheus/ with test-only changes: the static target is
# 127.0.0.1:9720, scrapes and rule evaluations run every second, and every
# for: is 2 s. The shipped files stay unchanged.
prepare_config() {
    local config=$WORK/config
    mkdir -p "$config"
    cp -r "$MXRC_SRC/prometheus/." "$config/"
    sed -i \
        -e 's/^\(\s*scrape_interval:\).*/\1 1s/' \
        -e 's/^\(\s*scrape_timeout:\).*/\1 1s/' \
        -e 's/^\(\s*evaluation_interval:\).*/\1 1s/' \
        -e "s/\"localhost:9720\"/\"$EXPORTER_ADDRESS\"/" \
        "$config/prometheus.yml"
    grep -q "\"$EXPORTER_ADDRESS\"" "$config/prometheus.yml" ||
        fail "the static target localhost:9720 was not found in prometheus/prometheus.yml"
    sed -i -e 's/^\(\s*for:\).*/\1 2s/' "$config"/rules/*.yml
}

start_prometheus() {
    "$PROMETHEUS_BIN" \
        --config.file="$WORK/config/prometheus.yml" \
        --storage.tsdb.path="$WORK/data" \
        --web.listen-address="$PROM_ADDRESS" \
        --log.level=warn \
        >"$WORK/prometheus.log" 2>&1 &
    PROM_PID=$!
    progress "started prometheus (PID $PROM_PID) on $PROM_ADDRESS"
}

# Polls CMD once a second for at most SECONDS seconds; fails with MESSAGE.
wait_for() {
    local seconds=$1 message=$2
    shift 2
    local i
    for ((i = 0; i < seconds; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$PROM_PID" 2>/dev/null || fail "prometheus exited: $(tail -n 5 "$WORK/prometheus.log")"
        sleep 1
    done
    fail "$message (waited ${seconds}s)"
}

# The Python side: queries the HTTP API and checks the results.
cat >"$WORK/check.py" <<'EOF'
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

PROM_URL = sys.argv[1]
COMMAND = sys.argv[2]
ARGS = sys.argv[3:]

# Dashboard queries that may return nothing on a healthy system:
# MemoryPeak exists from systemd 254 on, the limits only when the units set
# them (infinity is filtered out by "< +Inf"), CPUQuota only when set, and
# CPUUsageNSec only with CPU accounting. The sandbox leaves the cpu and
# cpuacct cgroup hierarchies to the host, so its systemd reports no CPU usage.
OPTIONAL_METRICS = re.compile(
    r"mxrc_unit_memory_peak_bytes|mxrc_unit_memory_high_bytes|mxrc_unit_memory_max_bytes"
    r"|mxrc_unit_tasks_max|mxrc_unit_cpu_quota_ratio|mxrc_unit_cpu_seconds_total"
)


def api_get(path, params=None):
    url = PROM_URL + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)


def query(expr):
    """Return (error, result list) of an instant query."""
    body = api_get("/api/v1/query", {"query": expr})
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}", []
    return None, body["data"]["result"]


def substitute(expr, instance):
    values = {
        "$__rate_interval": "20s",
        "$__interval": "1s",
        "$__range": "5m",
        # A regex that matches the instance. Its dots also match other
        # characters, which is harmless for a single exporter.
        "$instance": instance,
        "$unit": ".+",
    }
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def check_dashboard(dashboard_path, instance):
    with open(dashboard_path, encoding="utf-8") as f:
        dashboard = json.load(f)
    failures = 0
    count = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            count += 1
            expr = substitute(target["expr"], instance)
            name = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
            error, result = query(expr)
            if error:
                print(f"    FAIL {name}: {error}\n      {expr}")
                failures += 1
            elif not result and not OPTIONAL_METRICS.search(expr):
                print(f"    FAIL {name}: empty result\n      {expr}")
                failures += 1
            elif not result:
                print(f"    ok   {name}: empty, optional metric")
    for variable in dashboard["templating"]["list"]:
        count += 1
        raw = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_]\w*)\)", raw.strip())
        if not match:
            print(f"    FAIL variable {variable['name']}: not a label_values() query: {raw}")
            failures += 1
            continue
        error, result = query(substitute(match.group(1), instance))
        values = sorted({series["metric"].get(match.group(2), "") for series in result})
        if error or not values or values == [""]:
            print(f"    FAIL variable {variable['name']}: {error or 'no values'} for {raw}")
            failures += 1
        else:
            print(f"    ok   variable {variable['name']}: {', '.join(values)}")
    print(f"  dashboard: {count - failures} of {count} queries ok")
    return failures


def check_rules():
    body = api_get("/api/v1/rules")
    failures = 0
    count = 0
    for group in body["data"]["groups"]:
        for rule in group["rules"]:
            count += 1
            name = rule.get("name")
            if rule.get("health") != "ok":
                print(f"    FAIL rule {name}: health {rule.get('health')}: {rule.get('lastError')}")
                failures += 1
            error, _ = query(rule["query"])
            if error:
                print(f"    FAIL rule {name}: {error}")
                failures += 1
    if count == 0:
        print("    FAIL no rules are loaded")
        failures += 1
    print(f"  rules: {count} loaded, {failures} failures")
    return failures


def alerts(state):
    body = api_get("/api/v1/alerts")
    return [a for a in body["data"]["alerts"] if a["state"] == state]


def main():
    if COMMAND == "dashboard":
        sys.exit(1 if check_dashboard(ARGS[0], ARGS[1]) else 0)
    if COMMAND == "rules":
        sys.exit(1 if check_rules() else 0)
    if COMMAND == "firing":
        # Exit 0 when the alert ARGS[0] fires with unit=ARGS[1].
        for alert in alerts("firing"):
            labels = alert["labels"]
            if labels.get("alertname") == ARGS[0] and labels.get("unit") == ARGS[1]:
                print(f"  {ARGS[0]} fires: {alert['annotations'].get('summary')}")
                sys.exit(0)
        sys.exit(1)
    if COMMAND == "list":
        for alert in alerts(ARGS[0]):
            labels = alert["labels"]
            print(f"{labels.get('alertname')} unit={labels.get('unit', '-')} "
                  f"severity={labels.get('severity')}")
        sys.exit(0)
    if COMMAND == "value":
        error, result = query(ARGS[0])
        if error or not result:
            sys.exit(1)
        print(result[0]["value"][1])
        sys.exit(0)
    sys.exit(f"unknown command {COMMAND}")


main()
EOF

prom() {
    python3 "$WORK/check.py" "$PROM_URL" "$@"
}

# True once Prometheus has stored at least five successful scrapes of the exporter.
scraped_enough() {
    local count
    count=$(prom value "sum_over_time(up{job=\"mxrc\",instance=\"$EXPORTER_ADDRESS\"}[1m])") || return 1
    python3 -c "import sys; sys.exit(0 if float('$count') >= 5 else 1)"
}

rt_active_with_new_pid() {
    local old_pid=$1 pid
    pid=$(systemctl show --property=MainPID --value "$RT_UNIT")
    [ "$(systemctl is-active "$RT_UNIT")" = active ] && [ "$pid" != 0 ] && [ "$pid" != "$old_pid" ]
}

unit_is_inactive() {
    [ "$(systemctl is-active "$RT_UNIT")" = inactive ]
}

unit_is_failed() {
    [ "$(systemctl is-active "$RT_UNIT")" = failed ]
}

# Makes every start of mxrc-rt fail until cleanup removes the drop-in. It
# lives in /run, so it disappears with the sandbox in any case.
break_rt_start() {
    mkdir -p "$FAIL_DROPIN_DIR"
    printf '[Service]\nExecStart=\nExecStart=/bin/false\n' >"$FAIL_DROPIN"
    systemctl daemon-reload
}

# Alerts about the service state must be quiet before the test provokes any.
# Latency and overrun alerts are only listed, because a loaded machine may
# raise them legitimately.
check_baseline_alerts() {
    local active
    active=$( (
        prom list firing
        prom list pending
    ) | sort -u)
    [ -z "$active" ] || progress "alerts already active: $(tr '\n' ';' <<<"$active")"
    if grep -E '^(MxrcServiceNotActive|MxrcServiceFailed|MxrcTargetStartFailed|MxrcRestartStorm|MxrcExporterDown|MxrcExporterStale) ' <<<"$active"; then
        fail "service or exporter alerts are active before the test provoked any"
    fi
}

# Prints the value of the first sample of metric NAME for mxrc-monitor.service
# in the exporter's current output, or nothing.
monitor_unit_metric() {
    curl -fs --max-time 2 "http://$EXPORTER_ADDRESS/metrics" |
        awk -v name="$1" 'index($0, name "{") == 1 && /unit="mxrc-monitor.service"/ { print $NF; exit }'
}

# The sandbox shares the host's network namespace, so another sandbox's
# exporter could own 127.0.0.1:9720. The exporter must report the MainPID and
# start time that this sandbox's systemd has for mxrc-monitor.service.
check_exporter_is_ours() {
    local i pid start reported_pid="" reported_start poll_success
    for ((i = 0; i < 10; i++)); do
        reported_pid=$(monitor_unit_metric mxrc_unit_main_pid) || true
        [ -z "$reported_pid" ] || break
        sleep 1
    done
    if [ -z "$reported_pid" ]; then
        poll_success=$(curl -fsS --max-time 2 "http://$EXPORTER_ADDRESS/metrics" |
            awk '/^mxrc_monitor_poll_success / { print $2 }') ||
            fail "GET http://$EXPORTER_ADDRESS/metrics failed; is mxrc-monitor.service active?"
        fail "the exporter on $EXPORTER_ADDRESS serves no unit metrics after 10 s \
(mxrc_monitor_poll_success=${poll_success:-missing}); see journalctl -u mxrc-monitor.service"
    fi
    reported_start=$(monitor_unit_metric mxrc_unit_start_time_seconds) || true
    pid=$(systemctl show --property=MainPID --value mxrc-monitor.service)
    start=$(systemctl show --timestamp=unix --property=ExecMainStartTimestamp --value mxrc-monitor.service)
    if [ "$reported_pid" != "$pid" ] ||
        ! python3 -c "import sys; sys.exit(0 if float('${reported_start:-nan}') == float('${start#@}') else 1)"; then
        fail "the exporter on $EXPORTER_ADDRESS reports mxrc-monitor.service MainPID=$reported_pid start=$reported_start, \
but this sandbox has MainPID=$pid start=$start: another sandbox owns the port"
    fi
}

main() {
    local i old_pid
    check_exporter_is_ours
    prepare_config
    start_prometheus
    wait_for 20 "prometheus did not become ready at $PROM_URL/-/ready" curl -fsS --max-time 1 "$PROM_URL/-/ready"
    wait_for 30 "prometheus did not scrape $EXPORTER_ADDRESS successfully five times" scraped_enough
    progress "prometheus has scraped mxrc-monitor at least five times"

    prom dashboard "$MXRC_SRC/grafana/mxrc-dashboard.json" "$EXPORTER_ADDRESS" ||
        fail "dashboard queries failed against the live exporter"
    prom rules || fail "alert rules failed to evaluate"
    check_baseline_alerts

    # Three restarts stay within the unit's start limit of 5 starts in 60 s.
    # reset-failed also resets the counter of that limit.
    systemctl reset-failed "$RT_UNIT"
    for i in 1 2 3; do
        old_pid=$(systemctl show --property=MainPID --value "$RT_UNIT")
        systemctl kill -s SIGKILL "$RT_UNIT"
        wait_for 10 "$RT_UNIT did not come back after SIGKILL $i" rt_active_with_new_pid "$old_pid"
        progress "SIGKILL $i: $RT_UNIT restarted"
        sleep 2
    done
    wait_for 20 "MxrcRestartStorm did not fire for $RT_UNIT" prom firing MxrcRestartStorm "$RT_UNIT"
    prom firing MxrcRestartStorm "$RT_UNIT"

    systemctl stop "$RT_UNIT"
    wait_for 10 "$RT_UNIT did not stop" unit_is_inactive
    progress "stopped $RT_UNIT"
    wait_for 20 "MxrcServiceNotActive did not fire for $RT_UNIT" prom firing MxrcServiceNotActive "$RT_UNIT"
    prom firing MxrcServiceNotActive "$RT_UNIT"

    # systemd restarts the failing unit (Restart=on-failure) until it gives
    # up and leaves it failed, which takes a few seconds with RestartSec=1s.
    break_rt_start
    systemctl reset-failed "$RT_UNIT"
    systemctl start "$RT_UNIT" 2>/dev/null || true
    wait_for 20 "$RT_UNIT did not end up failed with ExecStart=/bin/false" unit_is_failed
    progress "$RT_UNIT failed to start: Result=$(systemctl show --property=Result --value "$RT_UNIT")"
    wait_for 20 "MxrcTargetStartFailed did not fire for $RT_UNIT" prom firing MxrcTargetStartFailed "$RT_UNIT"
    prom firing MxrcTargetStartFailed "$RT_UNIT"

    progress "pass: dashboard queries, rules and three live alerts"
}

main
