#!/usr/bin/env bash
# Runs every check of mxrc-systemd on a Debian 12 machine, as root: set-up,
# formatting, clippy, the crates' tests, the Prometheus bundle checks, the
# unit checks, a release build and the system tests in a booted systemd
# sandbox. Stops at the first failing step and names it.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() {
    echo
    echo "==> $* ($(date -u +%H:%M:%S))"
}

if [ "$(id -u)" -ne 0 ]; then
    echo "test: must run as root, because it installs packages and boots systemd in new namespaces (run it with sudo)" >&2
    exit 1
fi

step "set-up"
scripts/setup-debian.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

if [ -x tests/promtool-check.sh ]; then
    step "Prometheus config, alert rules and dashboard"
    tests/promtool-check.sh
fi

if [ -x tests/unit-lint.sh ]; then
    step "unit files"
    tests/unit-lint.sh
fi

step "cargo build --release"
cargo build --workspace --release --locked

step "system tests in the systemd sandbox"
tests/run-system-tests.sh
