#!/usr/bin/env bash
# Measures, inside the sandbox, how long each MXRC service takes from
# `systemctl start mxrc.target` until systemd marks it active (READY=1 for
# Type=notify), from the units' own CLOCK_MONOTONIC timestamps. Prints one
# line per run and a summary with the median and maximum in milliseconds.
#   boot-time.sh [RUNS]   (default 10)
set -euo pipefail

runs=${1:-10}
services=(mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service)
declare -A samples

monotonic_us() {
    # CLOCK_MONOTONIC, the clock of systemd's *TimestampMonotonic properties.
    python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)'
}

for run in $(seq 1 "$runs"); do
    systemctl stop mxrc.target
    while systemctl is-active --quiet "${services[@]}"; do sleep 0.05; done
    sleep 0.2
    start_us=$(monotonic_us)
    systemctl start mxrc.target
    line="run $run:"
    last=0
    for unit in "${services[@]}"; do
        active_us=$(systemctl show -p ActiveEnterTimestampMonotonic --value "$unit")
        ms=$(((active_us - start_us) / 1000))
        samples[$unit]+="$ms "
        line+=" $unit ${ms} ms"
        [ "$ms" -gt "$last" ] && last=$ms
    done
    samples[target]+="$last "
    echo "$line; all ${last} ms"
done

summary() {
    tr ' ' '\n' <<<"$2" | grep -v '^$' | sort -n | awk -v name="$1" '
        { v[NR] = $1 }
        END { printf "%-22s median %4d ms  max %4d ms  (%d runs)\n", name, v[int((NR + 1) / 2)], v[NR], NR }'
}
echo
for unit in "${services[@]}"; do summary "$unit" "${samples[$unit]}"; done
summary "mxrc.target (all)" "${samples[target]}"
