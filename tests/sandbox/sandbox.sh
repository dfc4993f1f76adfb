#!/usr/bin/env bash
# Boots a real systemd as PID 1 of fresh PID, mount, UTS and IPC namespaces,
# on an overlayfs copy of / entered with pivot_root, and runs commands in it.
#
#   sandbox.sh up [SRC]     boot; SRC (default: this repository) is bind-mounted
#                           read-only at /mxrc inside, and SRC/target/release/mxrc-*
#                           plus SRC/units/* are installed when they exist
#   sandbox.sh run CMD...   run CMD as root inside, with a clean environment
#   sandbox.sh shell        interactive shell inside
#   sandbox.sh down         stop systemd and remove the sandbox
#   sandbox.sh status       print the PID of the sandbox's systemd, or fail
#
# Needs root, util-linux unshare/nsenter, iproute2 and overlayfs. By default
# the sandbox has its own network namespace with only loopback; with
# MXRC_SANDBOX_NETWORK=host it shares the host's, so that a port bound inside
# is reachable on the host's loopback. One sandbox runs per state directory
# (MXRC_SANDBOX_STATE, default /run/mxrc-sandbox); several can run side by
# side with different state directories and private networks.
#
# Safety: systemd's tmpfiles step empties /tmp, so the sandbox's /tmp and /run
# are fresh tmpfs mounts and the overlay's upper layer lives on a tmpfs that
# disappears with the mount namespace. /sys is mounted read-only, so udev does
# not start and nothing touches the host's devices; /sys/fs/cgroup stays
# writable for systemd.
set -euo pipefail

STATE=${MXRC_SANDBOX_STATE:-/run/mxrc-sandbox}
SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BOOT_TIMEOUT=${MXRC_SANDBOX_BOOT_TIMEOUT:-60}
# One cgroup per state directory, so that sandboxes with different states never share one.
CGROUP_NAME=$(basename "$STATE")
# "private" gives the sandbox its own network namespace with only loopback;
# "host" shares the host's, so that ports bound inside are on the host.
NETWORK=${MXRC_SANDBOX_NETWORK:-private}

die() {
    echo "sandbox: $*" >&2
    exit 1
}

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        die "must run as root: it creates namespaces, mounts an overlay of / and boots systemd (run it with sudo, or as root in CI)"
    fi
    for tool in unshare nsenter mount; do
        command -v "$tool" >/dev/null || die "'$tool' not found: install util-linux and mount"
    done
    [ -x /lib/systemd/systemd ] || die "/lib/systemd/systemd not found: install the systemd package"
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
        die "overlayfs is not available in this kernel"
}

systemd_pid() {
    local pid
    [ -f "$STATE/pid" ] || return 1
    pid=$(cat "$STATE/pid")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] || return 1
    echo "$pid"
}

# Runs inside the new namespaces as their PID 1, builds the root and becomes systemd.
stage_init() {
    local src=$1 root=$STATE/root

    mount --make-rprivate /
    mkdir -p "$root"
    mount -t tmpfs -o mode=0755 mxrc-sandbox "$root"
    mkdir -p "$root/upper" "$root/work" "$root/merged"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$root/upper,workdir=$root/work" "$root/merged"
    local m=$root/merged

    mount -t proc proc "$m/proc"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys"
    setup_cgroups "$m"
    setup_dev "$m"
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$m/run"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/tmp"

    remove_host_units "$m"
    install_project "$src" "$m"
    hostname mxrc-sandbox
    [ "$NETWORK" = host ] || ip link set lo up
    echo mxrc-sandbox >"$m/etc/hostname"

    mkdir -p "$m/.old-root"
    cd "$m"
    pivot_root . .old-root
    umount -l /.old-root
    rmdir /.old-root
    exec env -i container=mxrc-sandbox PATH="$INNER_PATH" TERM=dumb LANG=C.UTF-8 \
        /lib/systemd/systemd --system --unit=multi-user.target --log-target=journal-or-kmsg
}

# Moves this process into a child cgroup named $CGROUP_NAME of its current
# cgroup in each hierarchy and then creates the namespaces. systemd then uses
# that child as its cgroup root, and everything it creates stays below it.
# The cpu, cpuacct and cpuset hierarchies are left alone, because a new cpu
# child gets no RT runtime under RT group scheduling and a cpuset child
# starts with no CPUs.
stage_enter() {
    local dir rel
    while read -r dir rel; do
        mkdir -p "$dir$rel/$CGROUP_NAME"
        echo $$ >"$dir$rel/$CGROUP_NAME/cgroup.procs"
    done < <(sandbox_cgroup_dirs)
    local net=()
    [ "$NETWORK" = host ] || net=(--net)
    exec unshare --cgroup "${net[@]}" --fork --pid --mount --uts --ipc --propagation private \
        "$SELF" __init "$@"
}

# Prints "MOUNTPOINT CURRENT-PATH" for each cgroup hierarchy the sandbox gets
# its own child cgroup in.
sandbox_cgroup_dirs() {
    local dir fstype opts key rel
    while read -r _ dir fstype opts _; do
        case "$fstype" in
        cgroup2) key="" ;;
        cgroup)
            key=$(tr ',' '\n' <<<"$opts" | grep -Ev '^(rw|ro|relatime|noatime|nosuid|nodev|noexec|clone_children|xattr)$' | paste -sd,)
            case "$key" in cpu | cpuacct | cpuset | cpu,cpuacct) continue ;; esac
            ;;
        *) continue ;;
        esac
        rel=$(awk -F: -v k="$key" '$2 == k { print $3 }' /proc/self/cgroup)
        [ -n "$rel" ] || continue
        [ "$rel" = / ] && rel=""
        echo "$dir $rel"
    done </proc/mounts
}

# NOTE: run only on hybrid hosts (v1 controllers plus a v2 "unified" mount).
# A host with only cgroup v2 takes the cgroup2 branch, which is untested.
#
# Private cgroup mounts, made inside the cgroup namespace so that they show
# the sandbox's own cgroups as their roots. systemd remounts and extends
# /sys/fs/cgroup, so it must not be the host's tmpfs.
setup_cgroups() {
    local m=$1 dir fstype opts
    mount -t tmpfs -o mode=0755,nosuid,nodev,noexec cgroup "$m/sys/fs/cgroup"
    while read -r _ dir fstype opts _; do
        case "$fstype" in
        cgroup)
            mkdir -p "$m$dir"
            mount -t cgroup -o "$(tr ',' '\n' <<<"$opts" | grep -Ev '^(rw|ro|relatime)$' | paste -sd,)" cgroup "$m$dir"
            ;;
        cgroup2)
            mkdir -p "$m$dir"
            mount -t cgroup2 cgroup2 "$m$dir"
            ;;
        esac
    done < <(grep -E '^cgroup2? /sys/fs/cgroup/' /proc/mounts)
}

# A minimal /dev: only the basic character devices, a private devpts and shm.
setup_dev() {
    local m=$1
    mount -t tmpfs -o mode=0755,nosuid tmpfs "$m/dev"
    for node in null zero full random urandom tty; do
        touch "$m/dev/$node"
        mount --bind "/dev/$node" "$m/dev/$node"
    done
    touch "$m/dev/console"
    mount --bind /dev/null "$m/dev/console"
    mkdir -p "$m/dev/pts" "$m/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$m/dev/pts"
    ln -s pts/ptmx "$m/dev/ptmx"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/dev/shm"
    ln -s /proc/self/fd "$m/dev/fd"
    ln -s /proc/self/fd/0 "$m/dev/stdin"
    ln -s /proc/self/fd/1 "$m/dev/stdout"
    ln -s /proc/self/fd/2 "$m/dev/stderr"
}

# The host enables its own services; the sandbox boots only systemd's basics
# and what the tests start.
remove_host_units() {
    local m=$1
    find "$m/etc/systemd/system" -mindepth 2 -maxdepth 2 -path '*.wants/*' -delete 2>/dev/null || true
    find "$m/etc/systemd/system" -mindepth 2 -maxdepth 2 -path '*.requires/*' -delete 2>/dev/null || true
    rm -f "$m/etc/systemd/system/default.target"
    # Services that need real hardware or a real boot and only add noise here.
    for unit in systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
        systemd-networkd.service systemd-resolved.service systemd-timesyncd.service \
        getty@.service console-getty.service serial-getty@.service \
        systemd-logind.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
        fstrim.timer man-db.timer dpkg-db-backup.timer logrotate.timer cron.service \
        ssh.service docker.service containerd.service; do
        ln -sf /dev/null "$m/etc/systemd/system/$unit"
    done
}

install_project() {
    local src=$1 m=$2
    mkdir -p "$m/mxrc"
    mount --bind "$src" "$m/mxrc"
    mount -o remount,bind,ro "$m/mxrc"
    for bin in mxrc-rt mxrc-nonrt mxrc-monitor; do
        if [ -x "$src/target/release/$bin" ]; then
            install -m 0755 "$src/target/release/$bin" "$m/usr/local/bin/$bin"
        fi
    done
    if [ -d "$src/units" ]; then
        find "$src/units" -maxdepth 1 -type f \( -name '*.service' -o -name '*.target' \) \
            -exec install -m 0644 -t "$m/etc/systemd/system" {} +
    fi
    # systemd-sysusers creates these accounts during boot.
    if [ -d "$src/units/sysusers.d" ]; then
        install -m 0644 -D -t "$m/etc/sysusers.d" "$src"/units/sysusers.d/*.conf
    fi
}

cmd_up() {
    require_root
    local src=${1:-$REPO}
    src=$(cd "$src" && pwd)
    if pid=$(systemd_pid); then
        die "a sandbox is already running (systemd PID $pid); run '$0 down' first"
    fi
    case "$NETWORK" in
    private | host) ;;
    *) die "invalid MXRC_SANDBOX_NETWORK '$NETWORK': expected private or host" ;;
    esac
    mkdir -p "$STATE"
    rm -f "$STATE/pid"

    setsid "$SELF" __enter "$src" </dev/null >"$STATE/init.log" 2>&1 &
    local unshare_pid=$! child="" i
    # The first process runs stage_enter, which execs unshare; only then is
    # unshare's single child the namespaces' PID 1.
    for i in $(seq 1 100); do
        if [ "$(cat "/proc/$unshare_pid/comm" 2>/dev/null)" = unshare ]; then
            child=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null | awk '{print $1}')
            [ -n "$child" ] && break
        fi
        sleep 0.05
    done
    [ -n "$child" ] || die "namespaces could not be created: $(cat "$STATE/init.log")"
    echo "$child" >"$STATE/pid"

    local start=$SECONDS state
    while :; do
        if ! kill -0 "$child" 2>/dev/null; then
            die "systemd exited during boot; see $STATE/init.log: $(tail -n 5 "$STATE/init.log")"
        fi
        state=$(cmd_run systemctl is-system-running 2>/dev/null) || true
        case "$state" in
        running | degraded) break ;;
        esac
        if [ $((SECONDS - start)) -ge "$BOOT_TIMEOUT" ]; then
            kill -9 "$child" 2>/dev/null || true
            rm -f "$STATE/pid"
            die "systemd did not finish booting within ${BOOT_TIMEOUT}s (state '$state'); its namespaces were killed"
        fi
        sleep 0.1
    done
    echo "sandbox: systemd is PID $child on the host, booted to '$state' in $((SECONDS - start))s" >&2
}

cmd_run() {
    local pid
    pid=$(systemd_pid) || die "no sandbox is running; run '$0 up' first"
    # --net enters the host's own namespace when the sandbox shares it.
    nsenter --target "$pid" --cgroup --net --mount --uts --ipc --pid --root \
        env -i -C / PATH="$INNER_PATH" HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
        SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 MXRC_SRC=/mxrc "$@"
}

cmd_down() {
    require_root
    local pid i
    if ! pid=$(systemd_pid); then
        rm -f "$STATE/pid"
        return 0
    fi
    # SIGRTMIN+4 requests a clean poweroff, which in a container makes systemd exit.
    kill -s "RTMIN+4" "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "sandbox: systemd did not stop within 10s; killing its PID namespace" >&2
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/pid"
    remove_leftover_cgroups
}

# Once the sandbox's PID namespace is gone its cgroups are empty and can go.
remove_leftover_cgroups() {
    local dir rel
    while read -r dir rel; do
        [ -d "$dir$rel/$CGROUP_NAME" ] || continue
        find "$dir$rel/$CGROUP_NAME" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done < <(sandbox_cgroup_dirs)
}

case "${1:-}" in
up) shift; cmd_up "$@" ;;
run) shift; [ $# -gt 0 ] || die "usage: $0 run CMD..."; cmd_run "$@" ;;
shell) cmd_run bash -l ;;
down) cmd_down ;;
status) systemd_pid || die "no sandbox is running" ;;
__enter) shift; stage_enter "$@" ;;
__init) shift; stage_init "$@" ;;
*) die "usage: $0 up [SRC] | run CMD... | shell | down | status" ;;
esac
