#!/usr/bin/env bash
# mxrc.target starts all three services, and each reaches active/running.
source "$(dirname "$0")/lib.sh"

systemctl stop mxrc.target
wait_until 10 bash -c '! systemctl is-active --quiet mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service' ||
    fail "stopping mxrc.target did not stop its services"

systemctl start mxrc.target
for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    state="$(unit_prop "$unit" ActiveState)/$(unit_prop "$unit" SubState)"
    [ "$state" = active/running ] || fail "$unit is $state after 'systemctl start mxrc.target', expected active/running"
    [ "$(unit_prop "$unit" Type)" = notify ] || fail "$unit is not Type=notify"
done
[ "$(systemctl is-active mxrc.target)" = active ] || fail "mxrc.target is not active"
