#!/usr/bin/env bash
# mxrc-install.sh installs a good release, rolls back on request, and rolls
# back by itself when a broken unit keeps a service from becoming active.
source "$(dirname "$0")/lib.sh"

installer=$MXRC_SRC/scripts/mxrc-install.sh
release=$MXRC_SRC/target/release
work=$(mktemp -d)
export MXRC_BACKUP_DIR=$work/backup
original=$(sha256sum /etc/systemd/system/mxrc-rt.service | cut -d' ' -f1)

"$installer" install --bin-dir "$release" --unit-dir "$MXRC_SRC/units" --timeout 20 ||
    fail "installing the repository's release failed"
for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    systemctl is-active --quiet "$unit" || fail "$unit is not active after install"
done

# A new unit whose RT worker exits at once must not stay installed.
mkdir "$work/broken"
cp -r "$MXRC_SRC"/units/. "$work/broken/"
sed -i 's|^ExecStart=.*|ExecStart=/bin/false|' "$work/broken/mxrc-rt.service"
if "$installer" install --bin-dir "$release" --unit-dir "$work/broken" --timeout 6; then
    fail "installing a unit whose ExecStart is /bin/false reported success"
fi
grep -q '^ExecStart=/usr/local/bin/mxrc-rt' /etc/systemd/system/mxrc-rt.service ||
    fail "the broken unit is still installed after the automatic rollback: $(grep ^ExecStart= /etc/systemd/system/mxrc-rt.service)"
wait_until 10 all_active mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service ||
    fail "the services are not active after the automatic rollback"

# A later manual rollback returns to the files that were there before the first install.
"$installer" rollback --timeout 20 || fail "mxrc-install.sh rollback failed"
[ "$(sha256sum /etc/systemd/system/mxrc-rt.service | cut -d' ' -f1)" = "$original" ] ||
    fail "mxrc-rt.service after rollback differs from the one installed before the test"
all_active mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service ||
    fail "the services are not active after the manual rollback"

# From a host with nothing installed, a rollback after the first install
# removes the units and binaries again instead of waiting for services
# that cannot start.
export MXRC_BACKUP_DIR=$work/backup-first
systemctl stop mxrc.target
rm -f /etc/systemd/system/mxrc*.service /etc/systemd/system/mxrc.target /usr/local/bin/mxrc-*
systemctl daemon-reload
"$installer" install --bin-dir "$release" --unit-dir "$MXRC_SRC/units" --timeout 20 ||
    fail "the first install on a host without MXRC failed"
"$installer" rollback --timeout 20 || fail "rolling back the first install failed"
[ ! -e /etc/systemd/system/mxrc-rt.service ] || fail "mxrc-rt.service is still installed after rolling back the first install"
[ ! -e /usr/local/bin/mxrc-rt ] || fail "/usr/local/bin/mxrc-rt is still installed after rolling back the first install"
[ "$(unit_prop mxrc-rt.service LoadState)" = not-found ] || fail "systemd still loads mxrc-rt.service after the rollback"

"$installer" install --bin-dir "$release" --unit-dir "$MXRC_SRC/units" --timeout 20 ||
    fail "reinstalling after the rollback failed"
rm -rf "$work"
