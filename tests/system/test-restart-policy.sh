#!/usr/bin/env bash
# A crash restarts the service after RestartSec; a crash loop stops at the
# start limit (StartLimitBurst=5 in 60 s), leaves the unit failed, and
# mxrc-monitor reports it.
source "$(dirname "$0")/lib.sh"

unit=mxrc-nonrt.service
pid=$(main_pid "$unit")
# SIGABRT, as from abort(): Rust's runtime handles a SIGSEGV sent with kill()
# as a possible stack overflow and returns from it, so that one is swallowed.
kill -ABRT "$pid"
restarted() {
    [ "$(main_pid "$unit")" != "$pid" ] && [ "$(main_pid "$unit")" != 0 ] && unit_is_running "$unit"
}
wait_until 5 restarted ||
    fail "$unit did not come back after SIGABRT"
# An automatic restart passes through activating/auto-restart, so the unit
# leaves "active" at the crash and enters it again after the new start.
crash_us=$(unit_prop "$unit" ActiveExitTimestampMonotonic)
start_us=$(unit_prop "$unit" ExecMainStartTimestampMonotonic)
[ "$crash_us" -gt 0 ] && [ "$start_us" -gt "$crash_us" ] ||
    fail "$unit has no crash time before its new start (ActiveExit $crash_us, ExecMainStart $start_us)"
gap_ms=$(((start_us - crash_us) / 1000))
[ "$gap_ms" -ge 1000 ] || fail "$unit restarted $gap_ms ms after the crash, sooner than RestartSec=1s"
log "restart $gap_ms ms after SIGABRT"

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

# systemd 252 keeps the last failure's result (exit-code) when an automatic
# restart hits the start limit, so the limit shows as the failed state, a
# restart counter that stops growing, and systemd's own journal message.
is_failed() {
    [ "$(unit_prop "$unit" ActiveState)/$(unit_prop "$unit" SubState)" = failed/failed ]
}
wait_until 20 is_failed ||
    fail "$unit did not stop at the start limit ($(unit_prop "$unit" ActiveState)/$(unit_prop "$unit" SubState), NRestarts $(unit_prop "$unit" NRestarts))"
restarts=$(unit_prop "$unit" NRestarts)
sleep 3
[ "$(unit_prop "$unit" NRestarts)" = "$restarts" ] || fail "$unit kept restarting after it failed ($restarts, then $(unit_prop "$unit" NRestarts))"
journalctl -u "$unit" -o cat | grep -q 'Start request repeated too quickly' ||
    fail "the journal of $unit has no start-limit message"
log "crash loop stopped after $restarts restarts"

wait_until 3 metric_is 1 mxrc_unit_active_state "unit=\"$unit\"" 'state="failed"' ||
    fail "/metrics does not show $unit as failed"
wait_until 3 metric_is 1 mxrc_unit_result "unit=\"$unit\"" 'result="exit-code"' ||
    fail "/metrics does not show the exit-code result of $unit"
wait_until 3 metric_is "$restarts" mxrc_unit_restarts_total "unit=\"$unit\"" ||
    fail "/metrics does not show $restarts restarts of $unit"
