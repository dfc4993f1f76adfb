#!/usr/bin/env bash
# mxrc-monitor serves /metrics over HTTP with all three units active.
source "$(dirname "$0")/lib.sh"

headers=$(mktemp)
body=$(curl -fsS --max-time 2 -D "$headers" "$METRICS_URL") || fail "GET $METRICS_URL failed"
grep -qi '^content-type: text/plain' "$headers" || fail "/metrics has content type $(grep -i '^content-type' "$headers")"
# The exporter's first poll may see itself still activating, before READY=1.
for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    wait_until 3 metric_is 1 mxrc_unit_active_state "unit=\"$unit\"" 'state="active"' ||
        fail "/metrics does not report $unit as active"
done
grep -q '^mxrc_monitor_poll_duration_seconds ' <<<"$body" || fail "/metrics has no mxrc_monitor_poll_duration_seconds"
