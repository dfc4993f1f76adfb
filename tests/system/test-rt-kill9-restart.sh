#!/usr/bin/env bash
# kill -9 of mxrc-rt is followed by a restart, and /metrics counts it within
# RestartSec plus two seconds.
source "$(dirname "$0")/lib.sh"

unit=mxrc-rt.service
has_restarts_metric() {
    [ -n "$(metric_value mxrc_unit_restarts_total "unit=\"$unit\"")" ]
}
wait_until 5 has_restarts_metric ||
    fail "/metrics has no mxrc_unit_restarts_total for $unit"
before=$(metric_value mxrc_unit_restarts_total "unit=\"$unit\"")
old_pid=$(main_pid "$unit")
# RestartUSec prints as "1s" or "500ms"; round up to whole seconds.
restart_sec=$(unit_prop "$unit" RestartUSec | awk '/ms$/ { print int(($0 + 999) / 1000); next } /s$/ { print $0 + 0; next } { print "invalid" }')
[ "$restart_sec" != invalid ] || fail "cannot read RestartUSec of $unit: $(unit_prop "$unit" RestartUSec)"

kill -9 "$old_pid"
expected=$((before + 1))
wait_until $((restart_sec + 2)) metric_is "$expected" mxrc_unit_restarts_total "unit=\"$unit\"" ||
    fail "mxrc_unit_restarts_total for $unit is $(metric_value mxrc_unit_restarts_total "unit=\"$unit\""), expected $expected within $((restart_sec + 2)) s of kill -9"

wait_until 5 unit_is_running "$unit" || fail "$unit did not return to active/running after kill -9"
[ "$(main_pid "$unit")" != "$old_pid" ] || fail "$unit still has the killed PID $old_pid"
log "restarts total went from $before to $expected"
