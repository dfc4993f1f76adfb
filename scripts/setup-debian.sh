#!/usr/bin/env bash
# Installs what building and testing mxrc-systemd needs on Debian 12, as root:
# Debian's packages for the sandbox, the tests and the benchmarks, and a check
# that a recent enough Rust toolchain is on PATH. Packages already present are
# not installed again, so a second run is quick.
set -euo pipefail

# Program -> Debian package that provides it. The paths are absolute because
# the sandbox runs them with a plain PATH, whatever the host's PATH holds.
declare -A PACKAGES=(
    [/usr/bin/unshare]=util-linux
    [/usr/bin/nsenter]=util-linux
    [/usr/bin/chrt]=util-linux
    [/usr/bin/taskset]=util-linux
    [/lib/systemd/systemd]=systemd
    [/usr/sbin/ip]=iproute2
    [/usr/bin/curl]=curl
    [/usr/bin/jq]=jq
    [/usr/bin/python3]=python3
    [/usr/bin/promtool]=prometheus
    [/usr/bin/prometheus]=prometheus
    [/usr/bin/prometheus-node-exporter]=prometheus-node-exporter
    [/usr/bin/cyclictest]=rt-tests
    [/usr/bin/stress-ng]=stress-ng
    [/usr/bin/wrk]=wrk
    [/usr/bin/gcc]=gcc
)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-debian: must run as root, because it installs Debian packages (run it with sudo)" >&2
    exit 1
fi

missing=()
for program in "${!PACKAGES[@]}"; do
    [ -x "$program" ] || missing+=("${PACKAGES[$program]}")
done

if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "setup-debian: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # The host may not run systemd; the packages' services stay stopped here
    # and the sandbox starts what it needs.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The workspace sets rust-version; Debian 12's own rustc is older than that.
required=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup-debian: cargo not found; install Rust $required or newer with rustup (https://rustup.rs) and run this again" >&2
    exit 1
fi
have=$(rustc --version | awk '{ print $2 }')
if [ "$(printf '%s\n%s\n' "$required" "$have" | sort -V | head -n 1)" != "$required" ]; then
    echo "setup-debian: rustc $have is older than the required $required; run 'rustup update'" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
echo "setup-debian: ready (rustc $have)" >&2
