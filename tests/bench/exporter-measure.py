#!/usr/bin/python3
"""Measure mxrc-monitor against node_exporter inside the systemd sandbox.

tests/bench/exporter.sh runs this as root inside a booted sandbox in which
mxrc.target and the transient unit bench-node-exporter.service already run.
`exporter-measure.py floor DURATION ARGV...` is the bare systemctl loop; the
main mode starts it as the exporter's user.

CPU times come from /proc/<pid>/stat (utime, stime, cutime, cstime, in clock
ticks of 10 ms at USER_HZ=100), so a window of 30 s resolves about 0.3 ms/s.
PID 1 and dbus-daemon are also read from /proc/<pid>/task/*/schedstat, whose
first field is the run time in nanoseconds, because their totals per window
are only a few ticks. The bare loop reads its children's CPU with
getrusage (microseconds) and os.times (clock ticks). os.times truncates
once, at the end, so it reads up to two ticks per window low.
"""

import argparse
import os
import re
import resource
import subprocess
import sys
import threading
import time
import urllib.request

EXPORTER_UNIT = "mxrc-monitor.service"
EXPORTER_URL = "http://127.0.0.1:9720/metrics"
NODE_UNIT = "bench-node-exporter.service"
NODE_URL = "http://127.0.0.1:9100/metrics"
EXPORTER_USER = "mxrc-monitor"
ARGV_WRAPPER = "/tmp/bench-systemctl-argv.sh"
ARGV_LOG_DIR = "/tmp/bench-systemctl-argv"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK_THREADS = 2
WRK_CONNECTIONS = 64


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def systemctl(*args):
    return subprocess.run(["systemctl", *args], check=True, capture_output=True, text=True).stdout


def main_pid(unit):
    pid = int(systemctl("show", "--property=MainPID", "--value", unit).strip())
    if pid == 0:
        raise SystemExit(f"bench: {unit} has no main process; check `systemctl status {unit}`")
    return pid


def pid_of(comm):
    """Return the PID of the only process whose comm is `comm`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as file:
                if file.read().strip() == comm:
                    return int(entry)
        except OSError:
            continue
    raise SystemExit(f"bench: no process named {comm} runs in the sandbox")


def stat_seconds(pid):
    """Return (own, children) CPU seconds of a process from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as file:
        # The comm field may contain spaces, so split after its closing bracket.
        fields = file.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def schedstat_seconds(pid):
    """Return the run time of all threads of a process, from schedstat, in seconds."""
    total_ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as file:
                total_ns += int(file.read().split()[0])
        except OSError:
            continue
    return total_ns / 1e9


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"bench: /proc/{pid}/status has no {field}")


class Window:
    """CPU of PID 1, dbus-daemon and optionally one service over a wall-clock window."""

    def __init__(self, dbus_pid, service_pid=None):
        self.dbus_pid = dbus_pid
        self.service_pid = service_pid

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *_):
        end = self._sample()
        wall = end["wall"] - self.start["wall"]
        self.result = {key: (end[key] - self.start[key]) / wall for key in end if key != "wall"}
        self.result["wall"] = wall

    def _sample(self):
        sample = {
            "wall": time.monotonic(),
            "pid1_stat": stat_seconds(1)[0],
            "pid1_sched": schedstat_seconds(1),
            "dbus_stat": stat_seconds(self.dbus_pid)[0],
            "dbus_sched": schedstat_seconds(self.dbus_pid),
        }
        if self.service_pid is not None:
            own, children = stat_seconds(self.service_pid)
            sample["service_own"] = own
            sample["service_own_sched"] = schedstat_seconds(self.service_pid)
            sample["service_children"] = children
            sample["service_total"] = own + children
        return sample


def wait_for_http(url, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {url} did not respond within {timeout:.0f} s: {error}")
            time.sleep(0.2)


def write_argv_wrapper():
    os.makedirs(ARGV_LOG_DIR, exist_ok=True)
    with open(ARGV_WRAPPER, "w") as file:
        file.write(
            "#!/bin/sh\n"
            f"printf '%s\\0' \"$@\" >{ARGV_LOG_DIR}/$$\n"
            'exec systemctl "$@"\n'
        )
    os.chmod(ARGV_WRAPPER, 0o755)


def capture_unit_argv():
    """Return the argv (without the program) of the exporter's unit poll.

    mxrc-monitor --once runs with a wrapper as --systemctl.path that records
    each argv, so the floor loop runs exactly what the exporter runs.
    """
    write_argv_wrapper()
    subprocess.run(
        ["mxrc-monitor", "--once", "--log.target", "stderr", "--log.level", "warn",
         "--systemctl.path", ARGV_WRAPPER],
        check=True, stdout=subprocess.DEVNULL,
    )
    for name in os.listdir(ARGV_LOG_DIR):
        with open(os.path.join(ARGV_LOG_DIR, name), "rb") as file:
            argv = file.read().decode().split("\0")[:-1]
        if "--timestamp=unix" in argv:
            return argv
    raise SystemExit(f"bench: mxrc-monitor --once ran no systemctl with --timestamp=unix; see {ARGV_LOG_DIR}")


def run_floor(duration, argv):
    """Run `systemctl ARGV` once per second for DURATION s and print the children's CPU seconds.

    The schedule matches the exporter's tokio interval with
    MissedTickBehavior::Delay: a late tick runs at once and the next one
    follows a full second later.
    """
    environment = dict(os.environ, SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    deadline = time.monotonic()
    for _ in range(duration):
        pause = deadline - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            deadline = time.monotonic()
        subprocess.run(["systemctl", *argv], check=True, env=environment,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline += 1
    # Sleep out the last second, so that DURATION runs span DURATION s of wall time.
    time.sleep(max(0.0, deadline - time.monotonic()))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    times = os.times()
    print(f"runs {duration}")
    print(f"children_ticks {times.children_user + times.children_system:.6f}")
    print(f"children_rusage {usage.ru_utime + usage.ru_stime:.6f}")


def parse_wrk_time(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise SystemExit(f"bench: cannot parse wrk latency {text!r}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}[match.group(2)]
    return float(match.group(1)) * scale


def run_wrk(url, duration):
    """Run wrk -t2 -c64 --latency against URL; return latencies in ms and counts."""
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{duration}s",
               "--timeout", "10s", "--latency", url]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = {"non_2xx": 0, "socket_errors": 0}
    for line in output.splitlines():
        fields = line.split()
        if fields[:1] == ["Latency"] and len(fields) >= 4:
            result["max_ms"] = parse_wrk_time(fields[3])
        elif fields[:1] in (["50%"], ["99%"]):
            result["p" + fields[0].rstrip("%") + "_ms"] = parse_wrk_time(fields[1])
        elif "requests in" in line:
            result["requests"] = int(fields[0])
        elif line.strip().startswith("Non-2xx"):
            result["non_2xx"] = int(fields[-1])
        elif line.strip().startswith("Socket errors"):
            result["socket_errors"] = sum(int(value.rstrip(",")) for value in fields[3::2])
        elif line.startswith("Requests/sec:"):
            result["rps"] = float(fields[1])
    missing = {"p50_ms", "p99_ms", "max_ms", "requests", "rps"} - result.keys()
    if missing:
        raise SystemExit(f"bench: wrk output lacks {sorted(missing)}:\n{output}")
    return result


def scrape_paced(url, duration):
    """GET URL once per second for DURATION s; return the number of failed scrapes."""
    failures = 0
    start = time.monotonic()
    for index in range(duration):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
        except OSError:
            failures += 1
        pause = start + index + 1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return failures


def measure_floor(duration, argv, dbus_pid):
    command = ["setpriv", f"--reuid={EXPORTER_USER}", f"--regid={EXPORTER_USER}",
               "--clear-groups", sys.executable, os.path.abspath(__file__),
               "floor", str(duration), *argv]
    with Window(dbus_pid) as window:
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    values = dict(line.split() for line in output.splitlines())
    result = window.result
    result["floor_runs"] = int(values["runs"])
    result["floor_ticks"] = float(values["children_ticks"]) / result["wall"]
    result["floor_rusage"] = float(values["children_rusage"]) / result["wall"]
    return result


def run_phases(duration):
    argv = capture_unit_argv()
    log("exporter's unit poll: systemctl " + " ".join(argv))
    dbus_pid = pid_of("dbus-daemon")
    wait_for_http(EXPORTER_URL)
    wait_for_http(NODE_URL)
    # Start-up work of both exporters (first polls, first scrapes) stays out of the windows.
    time.sleep(3)
    phases = {}

    log(f"exporter idle window, {duration} s (exporter polling, no scrapes)")
    with Window(dbus_pid, main_pid(EXPORTER_UNIT)) as window:
        time.sleep(duration)
    phases["exporter_idle"] = window.result

    log(f"mxrc-monitor under {WRK_CONNECTIONS} clients, {duration} s")
    with Window(dbus_pid, main_pid(EXPORTER_UNIT)) as window:
        phases["exporter_wrk"] = run_wrk(EXPORTER_URL, duration)
    phases["exporter_wrk"].update(window.result)
    exporter_pid = main_pid(EXPORTER_UNIT)
    phases["exporter_memory"] = {field: status_kib(exporter_pid, field) for field in ("VmRSS", "VmHWM")}

    # The exporter stops for the remaining windows, so that PID 1 serves only
    # the bare loop or node_exporter there.
    systemctl("stop", EXPORTER_UNIT)
    log(f"bare systemctl loop, {duration} s (exporter stopped)")
    phases["floor"] = measure_floor(duration, argv, dbus_pid)

    log(f"node_exporter under {WRK_CONNECTIONS} clients, {duration} s (exporter stopped)")
    with Window(dbus_pid, main_pid(NODE_UNIT)) as window:
        phases["node_wrk"] = run_wrk(NODE_URL, duration)
    phases["node_wrk"].update(window.result)
    node_pid = main_pid(NODE_UNIT)
    phases["node_memory"] = {field: status_kib(node_pid, field) for field in ("VmRSS", "VmHWM")}

    log(f"node_exporter at 1 scrape/s, {duration} s (exporter stopped)")
    with Window(dbus_pid, node_pid) as window:
        failures = scrape_paced(NODE_URL, duration)
    phases["node_paced"] = window.result
    phases["node_paced"]["failures"] = failures
    systemctl("start", EXPORTER_UNIT)
    return phases


def format_ms(value):
    return f"{value * 1000:.2f}"


def print_report(phases):
    exporter, node = phases["exporter_wrk"], phases["node_wrk"]
    idle, floor = phases["exporter_idle"], phases["floor"]
    p99_ratio = node["p99_ms"] / exporter["p99_ms"]
    cpu_ratio = idle["service_total"] / floor["floor_rusage"]
    cpu_ratio_ticks = idle["service_total"] / floor["floor_ticks"] if floor["floor_ticks"] else float("inf")
    mib = 1024.0

    print(f"1. GET /metrics, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} --latency, same duration each")
    print(f"   {'':16} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'req/s':>9} {'non-2xx':>8} {'sock err':>8}")
    for name, row in (("mxrc-monitor", exporter), ("node_exporter", node)):
        print(f"   {name:16} {row['p50_ms']:9.3f} {row['p99_ms']:9.3f} {row['max_ms']:9.3f} "
              f"{row['rps']:9.0f} {row['non_2xx']:8d} {row['socket_errors']:8d}")
    print(f"   p99 node_exporter / mxrc-monitor: {p99_ratio:.1f}x (target >= 10x)")
    print()
    print("2. CPU per second of wall time, idle window (ms/s)")
    print(f"   mxrc-monitor, /proc/<pid>/stat: total {format_ms(idle['service_total'])}"
          f" = own {format_ms(idle['service_own'])} + systemctl children {format_ms(idle['service_children'])}"
          f" (own from schedstat: {format_ms(idle['service_own_sched'])})")
    print(f"   bare loop, systemctl children: {format_ms(floor['floor_rusage'])} (getrusage),"
          f" {format_ms(floor['floor_ticks'])} (os.times), {floor['floor_runs']} runs")
    print(f"   mxrc-monitor / bare loop: {cpu_ratio:.2f} against getrusage,"
          f" {cpu_ratio_ticks:.2f} against os.times (target <= 1.10)")
    print()
    print("3. CPU per second of PID 1 and dbus-daemon (ms/s; stat = utime+stime, sched = schedstat)")
    print(f"   {'window':44} {'PID1 stat':>9} {'PID1 sched':>10} {'dbus stat':>9} {'dbus sched':>10}")
    rows = (
        ("mxrc-monitor idle (1 poll/s)", idle),
        ("bare systemctl loop (1 run/s)", floor),
        ("node_exporter at 1 scrape/s", phases["node_paced"]),
        (f"mxrc-monitor under {WRK_CONNECTIONS} clients", exporter),
        (f"node_exporter under {WRK_CONNECTIONS} clients", node),
    )
    for name, row in rows:
        print(f"   {name:44} {format_ms(row['pid1_stat']):>9} {format_ms(row['pid1_sched']):>10} "
              f"{format_ms(row['dbus_stat']):>9} {format_ms(row['dbus_sched']):>10}")
    print()
    print("4. Memory after the load phases (MiB)")
    for name, key in (("mxrc-monitor", "exporter_memory"), ("node_exporter", "node_memory")):
        memory = phases[key]
        print(f"   {name:16} VmRSS {memory['VmRSS'] / mib:7.2f}   VmHWM {memory['VmHWM'] / mib:7.2f}")
    print("   target: mxrc-monitor VmRSS <= 8 MiB")
    if phases["node_paced"]["failures"]:
        print(f"   note: {phases['node_paced']['failures']} paced node_exporter scrapes failed")
    print()

    results = {
        "exporter_p50_ms": f"{exporter['p50_ms']:.3f}",
        "exporter_p99_ms": f"{exporter['p99_ms']:.3f}",
        "exporter_max_ms": f"{exporter['max_ms']:.3f}",
        "exporter_rps": f"{exporter['rps']:.0f}",
        "node_exporter_p50_ms": f"{node['p50_ms']:.3f}",
        "node_exporter_p99_ms": f"{node['p99_ms']:.3f}",
        "node_exporter_max_ms": f"{node['max_ms']:.3f}",
        "node_exporter_rps": f"{node['rps']:.0f}",
        "node_exporter_non_2xx": node["non_2xx"],
        "p99_ratio_node_over_exporter": f"{p99_ratio:.2f}",
        "exporter_idle_cpu_ms_per_s": format_ms(idle["service_total"]),
        "exporter_idle_own_cpu_ms_per_s": format_ms(idle["service_own"]),
        "exporter_idle_own_schedstat_ms_per_s": format_ms(idle["service_own_sched"]),
        "exporter_idle_children_cpu_ms_per_s": format_ms(idle["service_children"]),
        "floor_cpu_ms_per_s": format_ms(floor["floor_rusage"]),
        "floor_os_times_cpu_ms_per_s": format_ms(floor["floor_ticks"]),
        "cpu_ratio_exporter_over_floor": f"{cpu_ratio:.3f}",
        "cpu_ratio_exporter_over_floor_os_times": f"{cpu_ratio_ticks:.3f}",
        "pid1_exporter_idle_ms_per_s": format_ms(idle["pid1_sched"]),
        "pid1_floor_ms_per_s": format_ms(floor["pid1_sched"]),
        "pid1_node_exporter_1rps_ms_per_s": format_ms(phases["node_paced"]["pid1_sched"]),
        "pid1_exporter_64c_ms_per_s": format_ms(exporter["pid1_sched"]),
        "pid1_node_exporter_64c_ms_per_s": format_ms(node["pid1_sched"]),
        "exporter_vmrss_kib": phases["exporter_memory"]["VmRSS"],
        "exporter_vmhwm_kib": phases["exporter_memory"]["VmHWM"],
        "node_exporter_vmrss_kib": phases["node_memory"]["VmRSS"],
        "node_exporter_vmhwm_kib": phases["node_memory"]["VmHWM"],
    }
    for name, value in results.items():
        print(f"result {name} {value}")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "floor":
        run_floor(int(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=30, help="length of each window in seconds")
    arguments = parser.parse_args()
    print_report(run_phases(arguments.duration))


if __name__ == "__main__":
    main()
