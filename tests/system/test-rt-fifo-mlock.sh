#!/usr/bin/env bash
# The RT loop thread runs SCHED_FIFO at priority 80 and the process has locked memory.
source "$(dirname "$0")/lib.sh"

pid=$(main_pid mxrc-rt.service)
[ "$pid" -gt 0 ] || fail "mxrc-rt.service has no main PID"

tid=$(thread_id "$pid" mxrc-rt-loop) || fail "no thread named mxrc-rt-loop in PID $pid: $(cat /proc/"$pid"/task/*/comm | paste -sd' ')"
policy=$(chrt -p "$tid" | sed -n 's/.*policy: //p')
priority=$(chrt -p "$tid" | sed -n 's/.*priority: //p')
[ "$policy" = SCHED_FIFO ] || fail "loop thread $tid runs $policy, expected SCHED_FIFO"
[ "$priority" = 80 ] || fail "loop thread $tid has priority $priority, expected 80"

locked_kb=$(awk '/^VmLck:/ { print $2 }' /proc/"$pid"/status)
[ "${locked_kb:-0}" -gt 0 ] || fail "VmLck of PID $pid is ${locked_kb:-missing} kB, expected locked memory"
log "loop thread $tid: $policy $priority, VmLck ${locked_kb} kB"
