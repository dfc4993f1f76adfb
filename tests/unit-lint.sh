#!/usr/bin/env bash
# Checks the unit files in units/ without booting them: systemd-analyze verify
# with every warning treated as a failure, the exposure level that
# systemd-analyze security reports against each service's limit, FIFO units
# without CPUQuota=/CPUAccounting=, start-limit keys in [Unit], and no hard
# dependency on passive targets. Ends with "unit-lint: N passed, N failed".
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
UNITS=$REPO/units
# Maximum exposure level per service (0 is safest, 10 least safe).
declare -A MAX_EXPOSURE=([mxrc-rt.service]=1.0 [mxrc-nonrt.service]=1.0 [mxrc-monitor.service]=1.5)

passed=0
failed=0
check() {
    local name=$1
    shift
    local output
    if output=$("$@" 2>&1); then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        sed 's/^/    /' <<<"$output"
        failed=$((failed + 1))
    fi
}

# An offline root with systemd's own units, the project's units and
# executable stand-ins for the binaries, so that verify can resolve
# dependencies and ExecStart= paths without installing anything.
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system" "$ROOT/lib/systemd"
cp -a /lib/systemd/system "$ROOT/lib/systemd/"
for bin in mxrc-rt mxrc-nonrt mxrc-monitor; do
    printf '#!/bin/sh\n' >"$ROOT/usr/local/bin/$bin"
    chmod +x "$ROOT/usr/local/bin/$bin"
done
cp "$UNITS"/*.service "$UNITS"/*.target "$ROOT/etc/systemd/system/"

verify_quietly() {
    local out
    out=$(systemd-analyze verify --root="$ROOT" "$1" 2>&1) || {
        echo "$out"
        return 1
    }
    if [ -n "$out" ]; then
        echo "systemd-analyze verify printed warnings:"
        echo "$out"
        return 1
    fi
}

exposure_within() {
    local unit=$1 max=$2 out level
    out=$(systemd-analyze security --offline=true --root="$ROOT" --no-pager "$unit" 2>&1)
    level=$(sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p" <<<"$out")
    [ -n "$level" ] || {
        echo "no exposure level in the output of systemd-analyze security:"
        echo "$out"
        return 1
    }
    echo "exposure $level, limit $max"
    awk -v l="$level" -v m="$max" 'BEGIN { exit !(l <= m) }' || {
        grep '^✗' <<<"$out"
        return 1
    }
}

# Prints KEY=VALUE lines of SECTION in FILE.
section_keys() {
    awk -v want="[$2]" '/^\[/ { in_section = ($0 == want); next } in_section && /^[A-Za-z]/ { print }' "$1"
}

no_quota_on_fifo() {
    local file=$1
    if section_keys "$file" Service | grep -Eq '^CPUSchedulingPolicy=(fifo|rr)'; then
        if grep -En '^(CPUQuota|CPUAccounting)=' "$file"; then
            echo "a FIFO/RR unit must not set CPUQuota= or CPUAccounting=: under RT group scheduling it fails with 214/SETSCHEDULER"
            return 1
        fi
    fi
}

start_limits_in_unit_section() {
    local file=$1
    if section_keys "$file" Service | grep -E '^StartLimit(IntervalSec|Burst)='; then
        echo "StartLimitIntervalSec= and StartLimitBurst= belong in [Unit]; systemd ignores them in [Service]"
        return 1
    fi
    section_keys "$file" Unit | grep -q '^StartLimitIntervalSec=' || { echo "no StartLimitIntervalSec= in [Unit]"; return 1; }
    section_keys "$file" Unit | grep -q '^StartLimitBurst=' || { echo "no StartLimitBurst= in [Unit]"; return 1; }
}

no_hard_dependency_on_passive_targets() {
    if grep -En '^(Requires|BindsTo|Requisite)=.*(network|network-online|nss-lookup|time-sync|remote-fs)\.target' "$1"; then
        echo "passive targets are synchronisation points; order against them with After= and pull them with Wants= only"
        return 1
    fi
}

for file in "$UNITS"/*.service "$UNITS"/*.target; do
    unit=$(basename "$file")
    check "$unit: systemd-analyze verify without warnings" verify_quietly "$unit"
    check "$unit: no Requires= on passive targets" no_hard_dependency_on_passive_targets "$file"
    case "$unit" in
    *.service)
        check "$unit: exposure within ${MAX_EXPOSURE[$unit]:-1.0}" exposure_within "$unit" "${MAX_EXPOSURE[$unit]:-1.0}"
        check "$unit: no CPUQuota= with FIFO" no_quota_on_fifo "$file"
        check "$unit: start limits in [Unit]" start_limits_in_unit_section "$file"
        ;;
    esac
done

# The optional drop-ins must load cleanly on top of the RT unit.
mkdir -p "$ROOT/etc/systemd/system/mxrc-rt.service.d"
cp "$UNITS"/drop-ins/*.conf "$ROOT/etc/systemd/system/mxrc-rt.service.d/"
check "mxrc-rt.service with the optional drop-ins: verify without warnings" verify_quietly mxrc-rt.service

echo "unit-lint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
