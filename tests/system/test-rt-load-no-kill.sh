#!/usr/bin/env bash
# A healthy RT loop under stress-ng load on every CPU keeps feeding the
# watchdog: mxrc-rt is not killed and its loop keeps making progress.
source "$(dirname "$0")/lib.sh"

command -v stress-ng >/dev/null || fail "stress-ng not found; scripts/setup-debian.sh installs it"
unit=mxrc-rt.service
seconds=${MXRC_LOAD_SECONDS:-20}
pid=$(main_pid "$unit")
restarts=$(unit_prop "$unit" NRestarts)
cycles() {
    unit_prop "$unit" StatusText | sed -n 's/.*cycles=\([0-9]*\).*/\1/p'
}
before=$(cycles)

stress-ng --cpu "$(nproc)" --vm 1 --vm-bytes 256M --io 1 --timeout "${seconds}s" --quiet ||
    fail "stress-ng failed"

[ "$(main_pid "$unit")" = "$pid" ] || fail "$unit changed PID from $pid to $(main_pid "$unit") under load"
[ "$(unit_prop "$unit" NRestarts)" = "$restarts" ] || fail "$unit restarted under load (NRestarts $restarts -> $(unit_prop "$unit" NRestarts))"
unit_is_running "$unit" || fail "$unit is not running after the load"
sleep 2.5
after=$(cycles)
# The STATUS text is published every 2 s, so allow for that delay.
[ "$((after - before))" -ge $(((seconds - 3) * 1000)) ] ||
    fail "the loop ran $((after - before)) cycles in ${seconds} s of load, expected about $((seconds * 1000))"
log "$((after - before)) cycles under ${seconds} s of load; STATUS: $(unit_prop "$unit" StatusText)"
