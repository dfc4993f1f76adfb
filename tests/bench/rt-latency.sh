#!/usr/bin/env bash
# Compares mxrc-rt's loop wakeup latency with cyclictest's on the same CPU,
# for the same duration, idle and under stress-ng load, then runs mxrc-rt's
# own push and notify micro-benchmarks. Runs on the host as root, because
# both programs need SCHED_FIFO and mlockall.
#   rt-latency.sh [--duration SECONDS] [--repeats N] [--cpu N] [--binary PATH]
#
# Each phase runs the programs in turn (cyclictest, mxrc-rt, ... A/B/A/B),
# --repeats times, so that noise from other work on the machine falls on
# both programs alike. The summary gives the median over the repeats and
# the worst maximum.
#
# cyclictest writes 0 to /dev/cpu_dma_latency while it runs (its default
# without --laptop), which keeps idle CPUs polling instead of sleeping.
# mxrc-rt makes the same request only with --cpu-dma-latency-us, so the
# idle phase runs mxrc-rt both ways: "mxrc-rt" without the request and
# "mxrc-rt+qos" with --cpu-dma-latency-us 0. The ratios compare
# mxrc-rt+qos with cyclictest. Both requests end when the program exits.
# Under load no CPU is idle, so the load phase runs mxrc-rt+qos only.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
duration=30
repeats=2
cpu=$(($(nproc) - 1))
binary=$REPO/target/release/mxrc-rt
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
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

# Prints the steal time of all CPUs from /proc/stat, in USER_HZ ticks.
steal_ticks() {
    awk '/^cpu / { print $9 }' /proc/stat
}

# Runs one program for $duration seconds and appends "program p50 p99 max"
# to $work/<phase>.txt. Prints one line per run with the load average and
# the steal time during the run.
run_one() {
    local phase=$1 program=$2 load steal_before p50 p99 max line extra=""
    load=$(cut -d' ' -f1 /proc/loadavg)
    steal_before=$(steal_ticks)
    case "$program" in
    cyclictest)
        cyclictest -p 80 -m -i 1000 -a "$cpu" -t 1 -D "${duration}s" -q -h 10000 >"$work/run.txt"
        read -r p50 p99 max < <(cyclictest_percentiles "$work/run.txt")
        ;;
    mxrc-rt | mxrc-rt+qos)
        local qos=()
        [ "$program" = mxrc-rt ] || qos=(--cpu-dma-latency-us 0)
        "$binary" --priority 80 --period-us 1000 --cpus "$cpu" "${qos[@]}" \
            --log.target stderr --log.level warn \
            bench --duration-s "$duration" >"$work/run.txt" 2>"$work/run-stderr.txt"
        line=$(grep '^latency_us ' "$work/run.txt")
        p50=$(sed -n 's/.* p50=\([0-9]*\).*/\1/p' <<<"$line")
        p99=$(sed -n 's/.* p99=\([0-9]*\).*/\1/p' <<<"$line")
        max=$(sed -n 's/.* max=\([0-9]*\).*/\1/p' <<<"$line")
        extra="overruns $(sed -n 's/.* overruns=\([0-9]*\).*/\1/p' <<<"$line")"
        ;;
    esac
    echo "$program $p50 $p99 $max" >>"$work/$phase.txt"
    printf '  %-5s %-12s p50 %4s us  p99 %5s us  max %6s us  load %s  steal %s ms  %s\n' \
        "$phase" "$program" "$p50" "$p99" "$max" "$load" \
        "$((($(steal_ticks) - steal_before) * 1000 / $(getconf CLK_TCK)))" "$extra"
}

# Prints "median_p50 median_p99 median_max worst_max" of one program in a phase.
summarise() {
    awk -v program="$2" '
        function median(values, n,   i, j, t) {
            for (i = 2; i <= n; i++)
                for (j = i; j > 1 && values[j - 1] > values[j]; j--) { t = values[j]; values[j] = values[j - 1]; values[j - 1] = t }
            return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
        }
        $1 == program { n++; p50[n] = $2; p99[n] = $3; max[n] = $4; if ($4 > worst) worst = $4 }
        END { printf "%g %g %g %d\n", median(p50, n), median(p99, n), median(max, n), worst }' "$work/$1.txt"
}

print_summary() {
    local phase=$1 program c50 c99 cmax cworst m50 m99 mmax mworst ratio_p99 ratio_max
    read -r c50 c99 cmax cworst < <(summarise "$phase" cyclictest)
    shift
    for program in cyclictest "$@"; do
        read -r m50 m99 mmax mworst < <(summarise "$phase" "$program")
        printf '%-5s %-12s p50 %5s us  p99 %5s us  max %7s us  worst max %6s us\n' \
            "$phase" "$program" "$m50" "$m99" "$mmax" "$mworst"
    done
    read -r m50 m99 mmax mworst < <(summarise "$phase" mxrc-rt+qos)
    ratio_p99=$(awk -v a="$m99" -v b="$c99" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    ratio_max=$(awk -v a="$mmax" -v b="$cmax" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    echo "$phase mxrc-rt+qos / cyclictest (medians): p99 ratio $ratio_p99, max ratio $ratio_max (target <= 1.10)"
    echo "result rt_${phase}_p99_ratio $ratio_p99"
    echo "result rt_${phase}_max_ratio $ratio_max"
}

echo "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), kernel $(uname -r), virtualization $(systemd-detect-virt --vm 2>/dev/null || echo none)"
echo "loop CPU $cpu, $duration s per run, $repeats runs per program and phase, period 1000 us, SCHED_FIFO 80, memory locked"
echo "command: tests/bench/rt-latency.sh --duration $duration --repeats $repeats --cpu $cpu"
echo "PM QoS: cyclictest and mxrc-rt+qos hold /dev/cpu_dma_latency at 0 while they run; the kernel drops the request at exit"
echo
echo "runs (load = 1-minute load average at the start, steal = hypervisor steal time of all CPUs during the run):"
for _ in $(seq "$repeats"); do
    for program in cyclictest mxrc-rt mxrc-rt+qos; do
        run_one idle "$program"
    done
done
stress-ng --cpu "$(nproc)" --vm 1 --vm-bytes 256M --io 1 \
    --timeout "$((duration * repeats * 2 + 30))s" --quiet &
stress_pid=$!
sleep 2
for _ in $(seq "$repeats"); do
    for program in cyclictest mxrc-rt+qos; do
        run_one load "$program"
    done
done
kill "$stress_pid" 2>/dev/null || true
wait "$stress_pid" 2>/dev/null || true
stress_pid=""

echo
echo "summary (median over $repeats runs; worst max = largest max of any run):"
print_summary idle mxrc-rt mxrc-rt+qos
print_summary load mxrc-rt+qos

echo
echo "micro-benchmarks (mxrc-rt bench):"
"$binary" --log.target stderr --log.level warn bench | sed 's/^/  /'
