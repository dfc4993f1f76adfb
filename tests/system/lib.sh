# Helpers for the system tests. Each test is a bash script that runs inside the
# booted sandbox as root, with the repository at $MXRC_SRC, the release
# binaries in /usr/local/bin and the units in /etc/systemd/system. A test exits
# 0 when it passes; the runner starts each test with mxrc.target active.
set -euo pipefail

MXRC_SRC=${MXRC_SRC:-/mxrc}
METRICS_URL=${METRICS_URL:-http://127.0.0.1:9720/metrics}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

log() {
    echo "  $*" >&2
}

# Polls CMD every 0.1 s until it succeeds or TIMEOUT seconds (fractions
# allowed) have passed; returns 1 on timeout. CMD runs anew each time, so
# pass a function or `bash -c`, not an expanded "$(...)" value.
wait_until() {
    local timeout=$1
    shift
    local deadline
    deadline=$(($(date +%s%N) + $(awk -v t="$timeout" 'BEGIN { printf "%.0f", t * 1e9 }')))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

unit_prop() {
    systemctl show --property="$2" --value "$1"
}

unit_is_running() {
    [ "$(unit_prop "$1" ActiveState)/$(unit_prop "$1" SubState)" = active/running ]
}

# Succeeds when every given unit is active. `systemctl is-active` with several
# units succeeds when any one of them is.
all_active() {
    local unit
    for unit in "$@"; do
        systemctl is-active --quiet "$unit" || return 1
    done
}

main_pid() {
    unit_prop "$1" MainPID
}

# Prints the value of the first sample of metric NAME whose labels include
# every given LABEL="VALUE" pair, in any order, e.g.
# metric_value mxrc_unit_restarts_total 'unit="mxrc-rt.service"'.
# Prints nothing when there is no such sample.
metric_value() {
    local name=$1
    shift
    curl -fsS --max-time 2 "$METRICS_URL" | awk -v name="$name" -v want="$*" '
        index($0, name "{") == 1 || index($0, name " ") == 1 {
            n = split(want, pairs, " ")
            for (i = 1; i <= n; i++) if (index($0, pairs[i]) == 0) next
            print $NF
            exit
        }'
}

# Succeeds when metric_value NAME LABEL... prints EXPECTED.
metric_is() {
    local expected=$1
    shift
    [ "$(metric_value "$@")" = "$expected" ]
}

# Succeeds when systemd's PROPERTY of UNIT is greater than NUMBER.
prop_greater() {
    [ "$(unit_prop "$1" "$2")" -gt "$3" ]
}

# Prints the TID of the thread named NAME in process PID.
thread_id() {
    local pid=$1 name=$2 task
    for task in /proc/"$pid"/task/*; do
        if [ "$(cat "$task/comm" 2>/dev/null)" = "$name" ]; then
            basename "$task"
            return 0
        fi
    done
    return 1
}
