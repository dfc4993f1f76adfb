#!/usr/bin/env bash
# Measures, inside the sandbox, the latency from a log call to the entry in
# journald. `mxrc-nonrt bench-log` stamps each record with CLOCK_REALTIME
# (BENCH_SENT_US) just before the call, and journald stamps
# __REALTIME_TIMESTAMP when it receives it. `mxrc-rt bench --log-probes`
# stamps each record with CLOCK_MONOTONIC (MONOTONIC_NS) when the loop side
# pushes it into the ring. The record then travels through the log thread,
# as in the service. journald's __MONOTONIC_TIMESTAMP is on the same clock.
# Prints p50/p99/max in microseconds.
#   log-latency.sh [COUNT]   (default 2000 per run)
set -euo pipefail

count=${1:-2000}

measure() {
    local label=$1 out trace found
    shift
    out=$(systemd-run --quiet --wait --pipe --collect -p DynamicUser=yes \
        /usr/local/bin/mxrc-nonrt --log.target journald bench-log --count "$count" "$@")
    trace=$(sed -n 's/.*trace_id=\([0-9a-f]*\).*/\1/p' <<<"$out")
    [ -n "$trace" ] || { echo "log-latency: bench-log printed no trace id: $out" >&2; exit 1; }
    # journald may still be writing the last entries.
    sleep 1
    journalctl -o json "TRACE_ID=$trace" |
        jq -r 'select(.BENCH_SEQ != null) | (.__REALTIME_TIMESTAMP | tonumber) - (.BENCH_SENT_US | tonumber)' |
        sort -n >/tmp/log-latency.txt
    found=$(wc -l </tmp/log-latency.txt)
    awk -v label="$label" -v sent="$count" -v found="$found" '
        { v[NR] = $1 }
        END {
            printf "%-26s n=%d/%d  p50 %5d us  p99 %5d us  max %6d us\n", label, found, sent, v[int(NR * 0.50) + 1], v[int(NR * 0.99) + 1], v[NR]
            printf "result log_%s_p99_us %d\n", (label ~ /paced/ ? "paced" : "burst"), v[int(NR * 0.99) + 1]
        }' /tmp/log-latency.txt
}

echo "mxrc-nonrt log call to journald entry, $count records per run:"
measure "paced (1 record per ms)" --interval-us 1000
measure "back to back" --interval-us 0

echo "mxrc-rt ring push to journald entry, $count records 1 ms apart:"
out=$(systemd-run --quiet --wait --pipe --collect -p DynamicUser=yes \
    /usr/local/bin/mxrc-rt --log.target journald bench --log-probes "$count")
trace=$(sed -n 's/.*trace_id=\([0-9a-f]*\).*/\1/p' <<<"$out")
[ -n "$trace" ] || { echo "log-latency: mxrc-rt printed no trace id: $out" >&2; exit 1; }
sleep 1
journalctl -o json "TRACE_ID=$trace" EVENT=probe |
    jq -r '(.__MONOTONIC_TIMESTAMP | tonumber) - ((.MONOTONIC_NS | tonumber) / 1000 | floor)' |
    sort -n >/tmp/log-latency.txt
awk -v sent="$count" -v found="$(wc -l </tmp/log-latency.txt)" '
    { v[NR] = $1 }
    END {
        printf "%-26s n=%d/%d  p50 %5d us  p99 %5d us  max %6d us\n", "push to journal", found, sent, v[int(NR * 0.50) + 1], v[int(NR * 0.99) + 1], v[NR]
        printf "result rt_log_p99_us %d\n", v[int(NR * 0.99) + 1]
    }' /tmp/log-latency.txt
