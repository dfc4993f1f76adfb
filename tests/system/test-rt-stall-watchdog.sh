#!/usr/bin/env bash
# A stalled RT loop in a live process stops the watchdog pings, so systemd
# kills mxrc-rt and restarts it. --fault-injection lets SIGUSR1 stall only
# the loop thread; the process and its other threads keep running.
source "$(dirname "$0")/lib.sh"

unit=mxrc-rt.service
cleanup() {
    rm -f "/run/systemd/system/$unit.d/50-fault-injection.conf"
    systemctl daemon-reload
    systemctl restart mxrc.target
}
trap cleanup EXIT

mkdir -p "/run/systemd/system/$unit.d"
exec_start=$(grep '^ExecStart=' "/etc/systemd/system/$unit")
printf '[Service]\nExecStart=\n%s --fault-injection\n' "$exec_start" >"/run/systemd/system/$unit.d/50-fault-injection.conf"
systemctl daemon-reload
systemctl restart "$unit"
wait_until 5 unit_is_running "$unit" || fail "$unit with --fault-injection did not start"

pid=$(main_pid "$unit")
restarts=$(unit_prop "$unit" NRestarts)
cycles_before=$(unit_prop "$unit" StatusText | sed -n 's/.*cycles=\([0-9]*\).*/\1/p')
kill -USR1 "$pid"

# Half the watchdog period later the process is alive but its loop is not.
sleep 1
kill -0 "$pid" 2>/dev/null || fail "the stalled process $pid died before the watchdog fired"
[ "$(awk '/^State:/ { print $2 }' /proc/"$pid"/status)" != T ] || fail "process $pid is stopped, not stalled"

# WatchdogSec (2 s) + RestartSec (1 s), with margin; SIGABRT ends a live process at once.
wait_until 10 prop_greater "$unit" NRestarts "$restarts" || fail "$unit was not restarted within 10 s of the stall"
kill -0 "$pid" 2>/dev/null && fail "the stalled process $pid is still alive after the restart"
journalctl -u "$unit" -o cat | grep -q 'Watchdog timeout' || fail "the journal of $unit has no 'Watchdog timeout' entry"
journalctl -u "$unit" -o cat | grep -qi 'no progress' || fail "mxrc-rt did not log why it stopped feeding the watchdog"
wait_until 5 unit_is_running "$unit" || fail "$unit did not return to active/running after the watchdog restart"
log "stalled after $cycles_before cycles; watchdog restart observed"
