#!/usr/bin/env bash
# A system call outside a service's filter fails with EPERM and the service
# keeps running. ptrace(PTRACE_TRACEME) succeeds for any unprivileged process,
# but it belongs to @debug, which no MXRC filter allows; ExecStartPost= runs
# under the same sandbox as the service.
source "$(dirname "$0")/lib.sh"

probe=/run/mxrc-seccomp-probe.py
cat >"$probe" <<'PYTHON'
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
result = libc.ptrace(0, 0, None, None)
print(f"seccomp-probe ptrace={result} errno={ctypes.get_errno()}", flush=True)
PYTHON
chmod 0644 "$probe"

unfiltered=$(python3 "$probe")
[ "$unfiltered" = "seccomp-probe ptrace=0 errno=0" ] || fail "ptrace(PTRACE_TRACEME) outside the sandbox printed '$unfiltered'"

cleanup() {
    rm -rf /run/systemd/system/mxrc-*.service.d/50-seccomp-probe.conf "$probe"
    systemctl daemon-reload
    systemctl restart mxrc.target
}
trap cleanup EXIT

for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    mkdir -p "/run/systemd/system/$unit.d"
    printf '[Service]\nExecStartPost=/usr/bin/python3 %s\n' "$probe" >"/run/systemd/system/$unit.d/50-seccomp-probe.conf"
done
systemctl daemon-reload
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl restart mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service

for unit in mxrc-rt.service mxrc-nonrt.service mxrc-monitor.service; do
    wait_until 5 bash -c "journalctl -u $unit --since '$since' -o cat | grep -q seccomp-probe" ||
        fail "the probe printed nothing in the journal of $unit"
    line=$(journalctl -u "$unit" --since "$since" -o cat | grep seccomp-probe | tail -n 1)
    [ "$line" = "seccomp-probe ptrace=-1 errno=1" ] || fail "$unit: ptrace under the filter printed '$line', expected EPERM (errno 1)"
    sleep 0.5
    unit_is_running "$unit" || fail "$unit is not running after a filtered system call"
done
