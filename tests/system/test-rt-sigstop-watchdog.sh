#!/usr/bin/env bash
# A SIGSTOPped mxrc-rt stops feeding the watchdog, so systemd kills it and
# restarts it.
source "$(dirname "$0")/lib.sh"

unit=mxrc-rt.service
old_pid=$(main_pid "$unit")
restarts=$(unit_prop "$unit" NRestarts)
since=$(date '+%Y-%m-%d %H:%M:%S')

kill -STOP "$old_pid"
# WatchdogSec (2 s) + TimeoutAbortSec (2 s) + RestartSec (1 s), with margin.
wait_until 12 prop_greater "$unit" NRestarts "$restarts" ||
    fail "$unit was not restarted within 12 s of SIGSTOP (NRestarts $(unit_prop "$unit" NRestarts))"
wait_until 5 unit_is_running "$unit" || fail "$unit did not return to active/running"
[ "$(main_pid "$unit")" != "$old_pid" ] || fail "$unit still has the stopped PID $old_pid"
kill -0 "$old_pid" 2>/dev/null && fail "the stopped process $old_pid is still alive"

journalctl -u "$unit" --since "$since" -o cat | grep -q 'Watchdog timeout' ||
    fail "the journal of $unit has no 'Watchdog timeout' entry since $since"
