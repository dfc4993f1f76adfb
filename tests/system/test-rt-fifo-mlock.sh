#!/usr/bin/env bash
# The RT loop thread runs SCHED_FIFO at priority 80 on the CPUs of the unit's
# affinity, the other threads run SCHED_OTHER, and the process has locked memory.
source "$(dirname "$0")/lib.sh"

pid=$(main_pid mxrc-rt.service)
[ "$pid" -gt 0 ] || fail "mxrc-rt.service has no main PID"

tid=$(thread_id "$pid" mxrc-rt-loop) || fail "no thread named mxrc-rt-loop in PID $pid: $(cat /proc/"$pid"/task/*/comm | paste -sd' ')"
policy=$(chrt -p "$tid" | sed -n 's/.*policy: //p')
priority=$(chrt -p "$tid" | sed -n 's/.*priority: //p')
[ "$policy" = SCHED_FIFO ] || fail "loop thread $tid runs $policy, expected SCHED_FIFO"
[ "$priority" = 80 ] || fail "loop thread $tid has priority $priority, expected 80"

for task in /proc/"$pid"/task/*; do
    other=$(basename "$task")
    [ "$other" = "$tid" ] && continue
    other_policy=$(chrt -p "$other" | sed -n 's/.*policy: //p')
    [ "$other_policy" = SCHED_OTHER ] || fail "thread $other ($(cat "$task/comm")) runs $other_policy, expected SCHED_OTHER"
done

locked_kb=$(awk '/^VmLck:/ { print $2 }' /proc/"$pid"/status)
[ "${locked_kb:-0}" -gt 0 ] || fail "VmLck of PID $pid is ${locked_kb:-missing} kB, expected locked memory"
log "loop thread $tid: $policy $priority, VmLck ${locked_kb} kB"

# With CPUAffinity= from a drop-in, the loop thread runs on exactly those CPUs.
cpu=$(($(nproc) - 1))
cleanup() {
    rm -f /run/systemd/system/mxrc-rt.service.d/50-affinity.conf
    systemctl daemon-reload
    systemctl restart mxrc.target
}
trap cleanup EXIT
mkdir -p /run/systemd/system/mxrc-rt.service.d
printf '[Service]\nCPUAffinity=%s\n' "$cpu" >/run/systemd/system/mxrc-rt.service.d/50-affinity.conf
systemctl daemon-reload
systemctl restart mxrc-rt.service
wait_until 5 unit_is_running mxrc-rt.service || fail "mxrc-rt.service did not start with CPUAffinity=$cpu"
pid=$(main_pid mxrc-rt.service)
tid=$(thread_id "$pid" mxrc-rt-loop) || fail "no loop thread after the affinity restart"
affinity=$(taskset -cp "$tid" | sed -n 's/.*list: //p')
[ "$affinity" = "$cpu" ] || fail "loop thread $tid runs on CPUs $affinity, expected $cpu from CPUAffinity="
log "with CPUAffinity=$cpu the loop thread runs on CPU $affinity"
