#!/usr/bin/env bash
# mxrc-monitor --once inside the sandbox lists all three units as active.
source "$(dirname "$0")/lib.sh"

out=$(mxrc-monitor --once) || fail "mxrc-monitor --once exited with $?"
for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    line=$(grep '^mxrc_unit_active_state{' <<<"$out" | grep "unit=\"$unit\"" | grep 'state="active"') ||
        fail "mxrc-monitor --once printed no active-state sample for $unit"
    [ "${line##* }" = 1 ] || fail "mxrc-monitor --once reports $unit as not active: $line"
done
grep -q '^mxrc_monitor_poll_success 1$' <<<"$out" || fail "mxrc-monitor --once did not report a successful poll"
