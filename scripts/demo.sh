#!/usr/bin/env bash
# Builds the three binaries, boots the systemd sandbox with them, starts
# mxrc.target and serves /metrics on the host's loopback until Ctrl-C, then
# stops everything. Runs as root on Debian 12.
set -euo pipefail

cd "$(dirname "$0")/.."
SANDBOX=tests/sandbox/sandbox.sh
URL=http://127.0.0.1:9720/metrics
# The demo shares the host's network, so that /metrics is on the host's loopback.
export MXRC_SANDBOX_STATE=/run/mxrc-sandbox-demo MXRC_SANDBOX_NETWORK=host

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: must run as root, because it boots systemd in new namespaces (run it with sudo)" >&2
    exit 1
fi

scripts/setup-debian.sh
echo "demo: building the release binaries" >&2
cargo build --workspace --release --locked

if ss -Hltn 'sport = :9720' | grep -q .; then
    echo "demo: port 9720 on the host is in use; stop what listens there ('ss -ltnp sport = :9720') and try again" >&2
    exit 1
fi
"$SANDBOX" down >/dev/null 2>&1 || true
trap '"$SANDBOX" down; echo "demo: stopped" >&2' EXIT
trap 'exit 0' INT TERM
"$SANDBOX" up

echo "demo: starting mxrc.target" >&2
if ! "$SANDBOX" run systemctl start mxrc.target; then
    "$SANDBOX" run systemctl --no-pager status mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service || true
    exit 1
fi
"$SANDBOX" run systemctl --no-pager list-units 'mxrc*'

# The exporter's first poll runs before its own READY=1, so wait until
# /metrics reports all three services active.
for _ in $(seq 1 50); do
    active=$(curl -fsS --max-time 1 "$URL" 2>/dev/null | grep -c '^mxrc_unit_active_state{.*state="active"} 1$' || true)
    [ "$active" = 3 ] && break
    sleep 0.1
done
echo
echo "/metrics is served at $URL; first scrape:"
curl -fsS --max-time 2 "$URL" | grep -E '^mxrc_(unit_active_state\{.*state="active"|unit_restarts_total|monitor_poll)'
echo
echo "Inside the sandbox: sudo MXRC_SANDBOX_STATE=$MXRC_SANDBOX_STATE $PWD/$SANDBOX run systemctl status mxrc.target"
echo "Press Ctrl-C to stop."
while "$SANDBOX" status >/dev/null 2>&1; do
    sleep 1
done
