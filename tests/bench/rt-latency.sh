#!/usr/bin/env bash
# Compares mxrc-rt's loop wakeup latency with cyclictest's on the same CPU,
# for the same duration, idle and under stress-ng load, then runs mxrc-rt's
# own push and notify micro-benchmarks. Runs on the host as root, because
# both programs need SCHED_FIFO and mlockall.
#   rt-latency.sh [--duration SECONDS] [--cpu N] [--binary PATH]
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
duration=30
cpu=$(($(nproc) - 1))
binary=$REPO/target/release/mxrc-rt
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) echo "rt-latency: unknown option '$1'" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "rt-latency: must run as root, for SCHED_FIFO and mlockall" >&2; exit 1; }
for tool in cyclictest stress-ng; do
    command -v "$tool" >/dev/null || { echo "rt-latency: $tool not found; run scripts/setup-debian.sh" >&2; exit 1; }
done
[ -x "$binary" ] || { echo "rt-latency: $binary not found; run 'cargo build --release'" >&2; exit 1; }

work=$(mktemp -d)
stress_pid=""
trap '[ -z "$stress_pid" ] || kill "$stress_pid" 2>/dev/null; rm -rf "$work"' EXIT

# Prints "p50 p99 max" in microseconds from cyclictest's histogram output.
cyclictest_percentiles() {
    awk '
        /^[0-9]+ +[0-9]+/ { lat = $1 + 0; n = $2 + 0; count[lat] = n; total += n; if (n > 0) last = lat }
        /# Max Latencies:/ { max = $4 + 0 }
        /# Histogram Overflows:/ { overflow = $4 + 0 }
        END {
            total += overflow
            for (lat = 0; lat <= last; lat++) {
                seen += count[lat]
                if (!p50 && seen >= total * 0.50) p50 = lat
                if (!p99 && seen >= total * 0.99) p99 = lat
            }
            if (!p99) p99 = max
            printf "%d %d %d\n", p50, p99, max
        }' "$1"
}

run_phase() {
    local phase=$1 c m ratio_p99 ratio_max
    cyclictest -p 80 -m -i 1000 -a "$cpu" -t 1 -D "${duration}s" -q -h 10000 >"$work/cyclictest-$phase.txt"
    read -r c50 c99 cmax < <(cyclictest_percentiles "$work/cyclictest-$phase.txt")
    "$binary" --priority 80 --period-us 1000 --cpus "$cpu" --log.target stderr --log.level warn \
        bench --duration-s "$duration" >"$work/mxrc-$phase.txt"
    m=$(grep '^latency_us ' "$work/mxrc-$phase.txt")
    m50=$(sed -n 's/.*p50=\([0-9]*\).*/\1/p' <<<"$m")
    m99=$(sed -n 's/.*p99=\([0-9]*\).*/\1/p' <<<"$m")
    mmax=$(sed -n 's/.*max=\([0-9]*\).*/\1/p' <<<"$m")
    ratio_p99=$(awk -v a="$m99" -v b="$c99" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    ratio_max=$(awk -v a="$mmax" -v b="$cmax" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    printf '%-6s %-12s p50 %5s us  p99 %5s us  max %6s us\n' "$phase" cyclictest "$c50" "$c99" "$cmax"
    printf '%-6s %-12s p50 %5s us  p99 %5s us  max %6s us   p99 ratio %s, max ratio %s (target <= 1.10)\n' \
        "$phase" mxrc-rt "$m50" "$m99" "$mmax" "$ratio_p99" "$ratio_max"
    echo "result rt_${phase}_p99_ratio $ratio_p99"
    echo "result rt_${phase}_max_ratio $ratio_max"
}

echo "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), kernel $(uname -r)"
echo "loop CPU $cpu, $duration s per program and phase, period 1000 us, SCHED_FIFO 80, memory locked"
echo "command: tests/bench/rt-latency.sh --duration $duration --cpu $cpu"
echo
run_phase idle
stress-ng --cpu "$(nproc)" --vm 1 --vm-bytes 256M --io 1 --timeout "$((duration * 2 + 30))s" --quiet &
stress_pid=$!
sleep 2
run_phase load
kill "$stress_pid" 2>/dev/null || true
wait "$stress_pid" 2>/dev/null || true
stress_pid=""

echo
echo "micro-benchmarks (mxrc-rt bench):"
"$binary" --log.target stderr --log.level warn bench | sed 's/^/  /'
