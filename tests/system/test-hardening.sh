#!/usr/bin/env bash
# The loaded services run hardened as systemd applies them: a dynamic
# non-root user, no effective capabilities, exposure within each limit,
# and the start limits in effect as systemd read them.
source "$(dirname "$0")/lib.sh"

declare -A max_exposure=([mxrc-rt.service]=1.0 [mxrc-nonrt.service]=1.0 [mxrc-monitor.service]=1.5)
# CAP_IPC_LOCK (bit 14) and CAP_SYS_NICE (bit 23) for mlockall and FIFO; none elsewhere.
declare -A expected_caps=([mxrc-rt.service]=0000000000804000 [mxrc-nonrt.service]=0000000000000000 [mxrc-monitor.service]=0000000000000000)
for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    pid=$(main_pid "$unit")
    uid=$(awk '/^Uid:/ { print $2 }' /proc/"$pid"/status)
    [ "$uid" -ne 0 ] || fail "$unit (PID $pid) runs as root"
    capeff=$(awk '/^CapEff:/ { print $2 }' /proc/"$pid"/status)
    [ "$capeff" = "${expected_caps[$unit]}" ] || fail "$unit (PID $pid) has effective capabilities $capeff, expected ${expected_caps[$unit]}"
    [ "$(awk '/^Seccomp:/ { print $2 }' /proc/"$pid"/status)" = 2 ] || fail "$unit (PID $pid) runs without a seccomp filter"
    [ "$(awk '/^NoNewPrivs:/ { print $2 }' /proc/"$pid"/status)" = 1 ] || fail "$unit (PID $pid) may gain privileges"

    level=$(systemd-analyze security --no-pager "$unit" | sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p")
    awk -v l="$level" -v m="${max_exposure[$unit]}" 'BEGIN { exit !(l <= m) }' ||
        fail "$unit has exposure level $level as loaded, above ${max_exposure[$unit]}"

    [ "$(unit_prop "$unit" StartLimitBurst)" = 5 ] || fail "$unit has StartLimitBurst=$(unit_prop "$unit" StartLimitBurst), expected 5"
    [ "$(unit_prop "$unit" StartLimitIntervalUSec)" = 1min ] ||
        fail "$unit has StartLimitIntervalUSec=$(unit_prop "$unit" StartLimitIntervalUSec), expected 1min"
    log "$unit: uid $uid, exposure $level"
done
