#!/usr/bin/env bash
# Installs, upgrades and rolls back the MXRC binaries and units on a host
# that runs systemd, as root.
#
#   mxrc-install.sh install [--bin-dir DIR] [--unit-dir DIR] [--timeout SECONDS]
#       Backs up the installed binaries and units, installs the new ones,
#       runs daemon-reload, restarts mxrc.target and waits until every MXRC
#       service is active. When one is not active within the timeout
#       (default 30 s), it restores the backup and exits 1.
#   mxrc-install.sh rollback
#       Restores the newest backup, restarts mxrc.target and waits as above.
#   mxrc-install.sh status
#       Lists the backups and the state of the services.
#
# --bin-dir and --unit-dir name where the files are copied from; the
# defaults are target/release and units/ of this repository. They are
# installed to $MXRC_PREFIX (default /usr/local/bin), $MXRC_SYSTEMD_DIR
# (default /etc/systemd/system) and $MXRC_SYSUSERS_DIR (default
# /etc/sysusers.d). Backups go to $MXRC_BACKUP_DIR (default
# /var/lib/mxrc/backup), one folder per install, newest last; the last 5
# are kept.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=$REPO/target/release
UNIT_DIR=$REPO/units
TIMEOUT=30
PREFIX=${MXRC_PREFIX:-/usr/local/bin}
SYSTEMD_DIR=${MXRC_SYSTEMD_DIR:-/etc/systemd/system}
SYSUSERS_DIR=${MXRC_SYSUSERS_DIR:-/etc/sysusers.d}
BACKUP_ROOT=${MXRC_BACKUP_DIR:-/var/lib/mxrc/backup}
KEEP_BACKUPS=5
BINARIES=(mxrc-rt mxrc-nonrt mxrc-monitor)
SERVICES=(mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service)

say() {
    echo "mxrc-install: $*" >&2
}

die() {
    say "$*"
    exit 1
}

usage() {
    sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

parse_flags() {
    while [ $# -gt 0 ]; do
        case "$1" in
        --bin-dir) BIN_DIR=${2:?--bin-dir needs a folder}; shift 2 ;;
        --unit-dir) UNIT_DIR=${2:?--unit-dir needs a folder}; shift 2 ;;
        --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
        *) die "unknown option '$1'; see '$0 --help'" ;;
        esac
    done
    [[ $TIMEOUT =~ ^[0-9]+$ ]] && [ "$TIMEOUT" -gt 0 ] || die "invalid --timeout '$TIMEOUT': expected whole seconds above 0"
}

check_sources() {
    local bin unit
    for bin in "${BINARIES[@]}"; do
        [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin is missing or not executable; build with 'cargo build --release' or pass --bin-dir"
    done
    for unit in "${SERVICES[@]}" mxrc.target; do
        [ -f "$UNIT_DIR/$unit" ] || die "$UNIT_DIR/$unit is missing; pass --unit-dir"
    done
}

backup_current() {
    local dest=$BACKUP_ROOT/$(date -u +%Y%m%dT%H%M%S.%NZ) bin unit
    mkdir -p "$dest/bin" "$dest/units"
    for bin in "${BINARIES[@]}"; do
        [ -e "$PREFIX/$bin" ] && cp -a "$PREFIX/$bin" "$dest/bin/"
    done
    for unit in "${SERVICES[@]}" mxrc.target; do
        [ -e "$SYSTEMD_DIR/$unit" ] && cp -a "$SYSTEMD_DIR/$unit" "$dest/units/"
    done
    if [ -e "$SYSUSERS_DIR/mxrc.conf" ]; then
        mkdir -p "$dest/units/sysusers.d"
        cp -a "$SYSUSERS_DIR/mxrc.conf" "$dest/units/sysusers.d/"
    fi
    say "backed up the installed files to $dest"
    ls -1d "$BACKUP_ROOT"/*/ | head -n -"$KEEP_BACKUPS" | xargs -r rm -rf
    echo "$dest"
}

# Copies binaries and units from FROM_BIN and FROM_UNITS; a file missing
# there is removed, so a rollback to "nothing installed" is exact.
put_files() {
    local from_bin=$1 from_units=$2 bin unit
    for bin in "${BINARIES[@]}"; do
        if [ -e "$from_bin/$bin" ]; then
            install -m 0755 "$from_bin/$bin" "$PREFIX/$bin.new"
            mv -f "$PREFIX/$bin.new" "$PREFIX/$bin"
        else
            rm -f "$PREFIX/$bin"
        fi
    done
    for unit in "${SERVICES[@]}" mxrc.target; do
        if [ -e "$from_units/$unit" ]; then
            install -m 0644 "$from_units/$unit" "$SYSTEMD_DIR/$unit"
        else
            rm -f "$SYSTEMD_DIR/$unit"
        fi
    done
    # The exporter's account; creating it again is a no-op.
    if [ -e "$from_units/sysusers.d/mxrc.conf" ]; then
        install -m 0644 -D "$from_units/sysusers.d/mxrc.conf" "$SYSUSERS_DIR/mxrc.conf"
        systemd-sysusers "$SYSUSERS_DIR/mxrc.conf"
    fi
    systemctl daemon-reload
}

# Succeeds when every MXRC service is active; `systemctl is-active` with
# several units succeeds when any one of them is.
all_active() {
    local unit
    for unit in "${SERVICES[@]}"; do
        systemctl is-active --quiet "$unit" || return 1
    done
}

# Restarts mxrc.target and waits until every service is active; prints
# the states and returns 1 when that does not happen within TIMEOUT.
restart_and_wait() {
    local deadline=$((SECONDS + TIMEOUT)) unit
    systemctl reset-failed "${SERVICES[@]}" mxrc.target 2>/dev/null || true
    systemctl restart mxrc.target || true
    while [ $SECONDS -lt $deadline ]; do
        if all_active; then
            say "all services are active: ${SERVICES[*]}"
            return 0
        fi
        sleep 0.2
    done
    for unit in "${SERVICES[@]}"; do
        say "$unit: $(systemctl show -p ActiveState --value "$unit")/$(systemctl show -p SubState --value "$unit") (result $(systemctl show -p Result --value "$unit"))"
    done
    return 1
}

# Succeeds when BACKUP contains no unit, because nothing was installed before it.
backup_is_empty() {
    [ ! -e "$1/units/mxrc.target" ]
}

# Returns to the state of an empty backup: the services stopped and the
# MXRC binaries and units removed.
remove_everything() {
    systemctl stop mxrc.target "${SERVICES[@]}" 2>/dev/null || true
    put_files "$1/bin" "$1/units"
    systemctl reset-failed "${SERVICES[@]}" mxrc.target 2>/dev/null || true
}

cmd_install() {
    parse_flags "$@"
    check_sources
    local backup
    backup=$(backup_current)
    put_files "$BIN_DIR" "$UNIT_DIR"
    say "installed from $BIN_DIR and $UNIT_DIR; restarting mxrc.target"
    if restart_and_wait; then
        return 0
    fi
    say "the new version did not become active within ${TIMEOUT}s; rolling back to $backup"
    if backup_is_empty "$backup"; then
        remove_everything "$backup"
        die "install failed; nothing was installed before, so the MXRC units and binaries were removed again"
    fi
    put_files "$backup/bin" "$backup/units"
    if restart_and_wait; then
        die "install failed and was rolled back to $backup; the previous version is running"
    fi
    die "install failed and the rollback to $backup did not become active either; see 'journalctl -u mxrc-rt.service -u mxrc-nonrt.service -u mxrc-monitor.service'"
}

cmd_rollback() {
    parse_flags "$@"
    local backup
    backup=$(ls -1d "$BACKUP_ROOT"/*/ 2>/dev/null | tail -n 1)
    [ -n "$backup" ] || die "no backup in $BACKUP_ROOT; nothing to roll back to"
    backup=${backup%/}
    say "rolling back to $backup"
    if backup_is_empty "$backup"; then
        remove_everything "$backup"
        rm -rf "$backup"
        say "nothing was installed before that backup; the MXRC units and binaries are removed"
        return 0
    fi
    put_files "$backup/bin" "$backup/units"
    rm -rf "$backup"
    restart_and_wait || die "the rolled-back version did not become active within ${TIMEOUT}s"
}

cmd_status() {
    echo "backups in $BACKUP_ROOT (newest last):"
    ls -1 "$BACKUP_ROOT" 2>/dev/null | sed 's/^/  /' || true
    systemctl --no-pager list-units 'mxrc*' || true
}

case "${1:-}" in
-h | --help | help)
    usage
    exit 0
    ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root, because it writes to $PREFIX and $SYSTEMD_DIR and restarts services"
case "${1:-}" in
install) shift; cmd_install "$@" ;;
rollback) shift; cmd_rollback "$@" ;;
status) cmd_status ;;
*)
    usage >&2
    exit 2
    ;;
esac
