#!/usr/bin/env bash
# A crash restarts the service after RestartSec; a crash loop stops at the
# start limit, leaves the unit failed, and mxrc-monitor reports it.
source "$(dirname "$0")/lib.sh"

unit=mxrc-nonrt.service
pid=$(main_pid "$unit")
kill -SEGV "$pid"
restarted() {
    [ "$(main_pid "$unit")" != "$pid" ] && [ "$(main_pid "$unit")" != 0 ] && unit_is_running "$unit"
}
wait_until 5 restarted ||
    fail "$unit did not come back after SIGSEGV"
# An automatic restart passes through activating/auto-restart, so the unit
# leaves "active" at the crash and enters it again after the new start.
crash_us=$(unit_prop "$unit" ActiveExitTimestampMonotonic)
start_us=$(unit_prop "$unit" ExecMainStartTimestampMonotonic)
[ "$crash_us" -gt 0 ] && [ "$start_us" -gt "$crash_us" ] ||
    fail "$unit has no crash time before its new start (ActiveExit $crash_us, ExecMainStart $start_us)"
gap_ms=$(((start_us - crash_us) / 1000))
[ "$gap_ms" -ge 1000 ] || fail "$unit restarted $gap_ms ms after the crash, sooner than RestartSec=1s"
log "restart $gap_ms ms after SIGSEGV"

cleanup() {
    rm -rf "/run/systemd/system/$unit.d/50-crash-loop.conf"
    systemctl daemon-reload
    systemctl reset-failed "$unit"
    systemctl restart mxrc.target
}
trap cleanup EXIT
mkdir -p "/run/systemd/system/$unit.d"
printf '[Service]\nExecStart=\nExecStart=/bin/false\n' >"/run/systemd/system/$unit.d/50-crash-loop.conf"
systemctl daemon-reload
systemctl restart "$unit" || true

hit_start_limit() {
    [ "$(unit_prop "$unit" Result)" = start-limit-hit ]
}
wait_until 20 hit_start_limit ||
    fail "$unit did not stop at the start limit (Result $(unit_prop "$unit" Result), NRestarts $(unit_prop "$unit" NRestarts))"
[ "$(unit_prop "$unit" ActiveState)" = failed ] || fail "$unit is $(unit_prop "$unit" ActiveState) after the start limit, expected failed"
wait_until 3 metric_is 1 mxrc_unit_active_state "unit=\"$unit\"" 'state="failed"' ||
    fail "/metrics does not show $unit as failed"
wait_until 3 metric_is 1 mxrc_unit_result "unit=\"$unit\"" 'result="start-limit-hit"' ||
    fail "/metrics does not show the start-limit-hit result of $unit"
