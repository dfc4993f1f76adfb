#!/usr/bin/env bash
# Boots the systemd sandbox with the release binaries and units of this
# repository, runs each tests/system/*.sh inside it, and tears it down, also
# when a test fails or the run is interrupted.
#
#   tests/run-system-tests.sh [TEST-NAME...]
#
# Needs root and the release binaries (cargo build --release). Ends with a
# line "system: N passed, N failed" and exits non-zero when any test failed or
# the sandbox could not boot; it never skips.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SANDBOX=$REPO/tests/sandbox/sandbox.sh
# A state directory of its own, so that the run neither uses nor stops a
# sandbox that someone started by hand with the default one.
export MXRC_SANDBOX_STATE=${MXRC_SANDBOX_STATE:-/run/mxrc-sandbox-test}
TEST_TIMEOUT=${MXRC_TEST_TIMEOUT:-240}

if [ "$(id -u)" -ne 0 ]; then
    echo "system tests: must run as root, because they boot systemd in new namespaces (run with sudo; CI runs as root)" >&2
    echo "system: 0 passed, 1 failed"
    exit 1
fi
for bin in mxrc-rt mxrc-nonrt mxrc-monitor; do
    if [ ! -x "$REPO/target/release/$bin" ]; then
        echo "system tests: $REPO/target/release/$bin is missing; run 'cargo build --release' first" >&2
        echo "system: 0 passed, 1 failed"
        exit 1
    fi
done

cleanup() {
    "$SANDBOX" down || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$SANDBOX" down >/dev/null 2>&1 || true
"$SANDBOX" up "$REPO"

# Brings mxrc.target back to a known state: every service active, no failed
# units, restart counters as systemd keeps them.
reset_target() {
    "$SANDBOX" run bash -c '
        systemctl reset-failed
        systemctl start mxrc.target
        for i in $(seq 1 100); do
            # is-active succeeds when any one of several units is active, so ask one at a time.
            all=yes
            for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
                systemctl is-active --quiet "$unit" || all=no
            done
            [ "$all" = yes ] && exit 0
            sleep 0.1
        done
        systemctl --no-pager status mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service
        exit 1'
}

tests=()
if [ $# -gt 0 ]; then
    for name in "$@"; do tests+=("$REPO/tests/system/${name%.sh}.sh"); done
else
    for path in "$REPO"/tests/system/*.sh; do
        [ "$(basename "$path")" = lib.sh ] || tests+=("$path")
    done
fi

passed=0
failed=0
failed_names=()
suite_start=$SECONDS
for path in "${tests[@]}"; do
    name=$(basename "$path" .sh)
    start=$SECONDS
    if ! reset_target >"/tmp/mxrc-reset.log" 2>&1; then
        echo "FAIL $name: mxrc.target did not become active before the test:"
        sed 's/^/    /' /tmp/mxrc-reset.log
        failed=$((failed + 1))
        failed_names+=("$name")
        continue
    fi
    if output=$(timeout --kill-after=5 "$TEST_TIMEOUT" "$SANDBOX" run bash "/mxrc/tests/system/$name.sh" 2>&1); then
        echo "ok   $name ($((SECONDS - start)) s)"
        # A passing test shows only its own findings (lib.sh's log lines);
        # the messages of commands that fail on purpose would read as errors.
        grep '^  ' <<<"$output" | sed 's/^/  /' || true
        passed=$((passed + 1))
    else
        echo "FAIL $name ($((SECONDS - start)) s)"
        sed 's/^/    /' <<<"$output"
        "$SANDBOX" run journalctl --no-pager -n 30 -u mxrc-rt.service -u mxrc-nonrt.service -u mxrc-monitor.service 2>&1 |
            sed 's/^/    journal: /' || true
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
done

echo "system tests took $((SECONDS - suite_start)) s"
[ "$failed" -eq 0 ] || echo "failed: ${failed_names[*]}"
echo "system: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
