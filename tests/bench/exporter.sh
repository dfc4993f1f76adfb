#!/usr/bin/env bash
# Benchmarks mxrc-monitor against Debian's node_exporter (systemd collector)
# in a booted systemd sandbox and prints one table of results, then lines
# `result NAME VALUE`. Run as root from anywhere:
#
#   tests/bench/exporter.sh [--duration SECONDS]   (default 30 s per window)
#
# Five windows of the duration run one after another, so the total is about
# 5 x duration plus about 5 s to boot and tear down the sandbox:
#   1. mxrc-monitor idle: it polls at 1 s, nothing scrapes it
#   2. mxrc-monitor under wrk -t2 -c64 --latency
#   3. the bare loop: the exporter's own `systemctl show` argv once per
#      second, run as the exporter's user, with mxrc-monitor stopped
#   4. node_exporter under wrk -t2 -c64 --latency
#   5. node_exporter scraped once per second
# tests/bench/exporter-measure.py runs the windows inside the sandbox.
#
# Needs target/release/mxrc-* (cargo build --release --workspace) and the
# Debian packages wrk and prometheus-node-exporter. The sandbox has its own
# state directory (MXRC_SANDBOX_STATE, default /run/mxrc-sandbox-bench-exp)
# and network namespace, and it is torn down on every exit.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SANDBOX=$REPO/tests/sandbox/sandbox.sh
export MXRC_SANDBOX_STATE=${MXRC_SANDBOX_STATE:-/run/mxrc-sandbox-bench-exp}
NODE_EXPORTER=/usr/bin/prometheus-node-exporter
# Flags checked against `prometheus-node-exporter --help` of Debian 12's 1.5.0.
# --web.max-requests=64 lets node_exporter serve all 64 wrk connections.
# With the default of 40 it replies HTTP 503 to the excess, and those fast
# replies would lower the measured latency.
NODE_EXPORTER_FLAGS=(
    --web.listen-address=127.0.0.1:9100
    --web.max-requests=64
    --collector.disable-defaults
    --collector.systemd
    --collector.systemd.enable-restarts-metrics
    --collector.systemd.enable-task-metrics
    --collector.systemd.enable-start-time-metrics
    '--collector.systemd.unit-include=mxrc-.*\.service'
)

die() {
    echo "exporter.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 [--duration SECONDS]"
}

parse_args() {
    duration=30
    while [ $# -gt 0 ]; do
        case "$1" in
        --duration)
            [ $# -ge 2 ] || die "--duration needs a value in seconds"
            duration=$2
            shift 2
            ;;
        --duration=*)
            duration=${1#--duration=}
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$1'; $(usage)" ;;
        esac
    done
    [[ "$duration" =~ ^[0-9]+$ ]] && [ "$duration" -ge 5 ] ||
        die "invalid --duration '$duration': expected whole seconds, at least 5"
}

check_requirements() {
    [ "$(id -u)" -eq 0 ] || die "must run as root because it boots a systemd sandbox (run it with sudo)"
    for bin in mxrc-rt mxrc-nonrt mxrc-monitor; do
        [ -x "$REPO/target/release/$bin" ] ||
            die "$REPO/target/release/$bin not found: run 'cargo build --release --workspace' first"
    done
    command -v wrk >/dev/null || die "wrk not found: install it with 'apt-get install wrk'"
    [ -x "$NODE_EXPORTER" ] ||
        die "$NODE_EXPORTER not found: install it with 'apt-get install prometheus-node-exporter'"
    if "$SANDBOX" status >/dev/null 2>&1; then
        die "a sandbox already runs in $MXRC_SANDBOX_STATE; stop it with 'MXRC_SANDBOX_STATE=$MXRC_SANDBOX_STATE $SANDBOX down'"
    fi
}

print_machine() {
    local cpu
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "command:  $command"
    echo "machine:  $(nproc) CPUs, ${cpu:-unknown CPU model}"
    echo "kernel:   $(uname -r)"
    echo "systemd:  $("$SANDBOX" run systemctl --version | head -n 1)"
    echo "exporter: $("$SANDBOX" run mxrc-monitor --version), node_exporter $("$SANDBOX" run "$NODE_EXPORTER" --version 2>&1 | awk 'NR == 1 { print $3 }')"
    echo "windows:  ${duration} s each; CPU figures are ms of CPU per s of wall time"
    echo
}

start_services() {
    "$SANDBOX" run systemctl start mxrc.target
    "$SANDBOX" run systemd-run --quiet --unit=bench-node-exporter \
        --property=User=prometheus "$NODE_EXPORTER" "${NODE_EXPORTER_FLAGS[@]}"
    "$SANDBOX" run systemctl is-active --quiet mxrc-monitor.service bench-node-exporter.service ||
        die "the services did not start: $("$SANDBOX" run systemctl --no-pager status mxrc-monitor.service bench-node-exporter.service)"
}

main() {
    command="$0${*:+ $*}"
    parse_args "$@"
    check_requirements
    trap '"$SANDBOX" down' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    "$SANDBOX" up
    start_services
    print_machine
    "$SANDBOX" run python3 /mxrc/tests/bench/exporter-measure.py --duration "$duration"
}

main "$@"
