#!/usr/bin/env bash
# Runs every benchmark of mxrc-systemd as root and prints the results with
# the ratios against the references measured in the same run:
#   - the RT loop against cyclictest, idle and under stress-ng, and the cost
#     of a log push and of a WATCHDOG=1 notification (host, FIFO);
#   - boot time of each service and log latency to journald (sandbox);
#   - mxrc-monitor against node_exporter and a bare systemctl show loop
#     (sandbox, tests/bench/exporter.sh).
#   scripts/bench.sh [--duration SECONDS]   (default 30 per measured phase)
set -euo pipefail

cd "$(dirname "$0")/.."
duration=30
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=$2; shift 2 ;;
    *) echo "bench: unknown option '$1'; usage: $0 [--duration SECONDS]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench: must run as root, for SCHED_FIFO and the systemd sandbox" >&2; exit 1; }

scripts/setup-debian.sh
cargo build --workspace --release --locked

echo "== RT loop against cyclictest"
tests/bench/rt-latency.sh --duration "$duration"

echo
echo "== boot time and log latency (sandbox)"
export MXRC_SANDBOX_STATE=/run/mxrc-sandbox-bench
trap 'tests/sandbox/sandbox.sh down' EXIT
tests/sandbox/sandbox.sh up
tests/sandbox/sandbox.sh run systemctl start mxrc.target
tests/sandbox/sandbox.sh run bash /mxrc/tests/bench/boot-time.sh 10
tests/sandbox/sandbox.sh run bash /mxrc/tests/bench/log-latency.sh 2000
tests/sandbox/sandbox.sh down
trap - EXIT

if [ -x tests/bench/exporter.sh ]; then
    echo
    echo "== mxrc-monitor against node_exporter and systemctl show"
    tests/bench/exporter.sh --duration "$duration"
fi
