//! Command-line interface.

use std::fmt;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Smallest accepted loop period. Below this, wakeup latency and the
/// control work itself take a large share of the period on typical hardware.
pub const MIN_PERIOD_US: u64 = 50;

/// Highest CPU number accepted in `--cpus`; matches glibc's `CPU_SETSIZE`.
pub const MAX_CPU: usize = 1023;

#[derive(Debug, Parser)]
#[command(
    name = "mxrc-rt",
    version,
    about = "MXRC real-time control loop (systemd Type=notify service)"
)]
pub struct Cli {
    #[command(flatten)]
    pub rt: RtArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure log push cost, sd_notify cost or loop wakeup latency, then exit.
    Bench(BenchArgs),
}

/// Options of the real-time loop and its supervision.
#[derive(Debug, Clone, Args)]
pub struct RtArgs {
    /// SCHED_FIFO priority of the loop thread (1..=99).
    #[arg(global = true, long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=99))]
    pub priority: u8,

    /// Loop period in microseconds (at least 50; 1000 is 1 kHz).
    #[arg(global = true, long = "period-us", default_value_t = 1000, value_parser = parse_period_us)]
    pub period_us: u64,

    /// CPUs for the loop thread, e.g. "2-3,5". Default: the process's current
    /// affinity mask (set by the unit's CPUAffinity=).
    #[arg(global = true, long, value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,

    /// Reaction to a failed mlockall, SCHED_FIFO or CPU affinity: "strict" exits
    /// with code 3, "degraded" warns, continues and reports degraded=1 in STATUS.
    #[arg(global = true, long = "rt-policy", value_enum, default_value_t = RtPolicy::Strict)]
    pub rt_policy: RtPolicy,

    /// Interval between STATUS= publications to systemd, in milliseconds
    /// (100..=3600000).
    #[arg(global = true, long = "status-interval-ms", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub status_interval_ms: u64,

    /// Consecutive overrun cycles after which the watchdog stops sending WATCHDOG=1.
    #[arg(global = true, long = "overrun-limit", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub overrun_limit: u64,

    /// CPU wakeup latency limit in microseconds, requested from the kernel's
    /// PM QoS through /dev/cpu_dma_latency and held until exit. 0 keeps idle
    /// CPUs out of every sleep state except polling. Default: no request.
    /// Opening the device needs root, so it fails for an unprivileged unit
    /// user; --rt-policy decides what happens then.
    #[arg(global = true, long = "cpu-dma-latency-us",
          value_parser = clap::value_parser!(u32).range(0..=2_000_000_000))]
    pub cpu_dma_latency_us: Option<u32>,

    /// Let SIGUSR1 stop the loop thread's cycles until the process stops, so
    /// that the systemd watchdog kills the service. For testing only.
    #[arg(global = true, long = "fault-injection")]
    pub fault_injection: bool,
}

/// Logging and trace options shared by all MXRC binaries.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log destination: "auto" picks journald when JOURNAL_STREAM is set or
    /// /run/systemd/journal/socket exists, else stderr.
    #[arg(global = true, long = "log.target", value_enum, default_value_t = LogTarget::Auto)]
    pub target: LogTarget,

    /// Minimum level of records written to the log.
    #[arg(global = true, long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub level: LogLevel,

    /// W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>") whose trace id this
    /// process joins. Default: env TRACEPARENT, else a new random trace id.
    #[arg(global = true, long)]
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Number of timed ring pushes (a consumer thread drains concurrently).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub pushes: u64,

    /// Number of timed WATCHDOG=1 notifications sent to a socket that the
    /// benchmark binds itself.
    #[arg(long = "notify-calls", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub notify_calls: u64,

    /// Run the control loop for this many seconds with the RT options above and
    /// print one "latency_us p50=.. p99=.. max=.." line, instead of the push and
    /// notify benchmarks.
    #[arg(long = "duration-s", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration_s: Option<u64>,

    /// Push this many latency probe records, 1 ms apart, through the ring and
    /// the log thread to the log target, print one "log_probes .." line and
    /// exit, instead of the other benchmarks. Each record carries its push
    /// time as MONOTONIC_NS, to compare with journald's __MONOTONIC_TIMESTAMP.
    #[arg(long = "log-probes", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub log_probes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RtPolicy {
    Strict,
    Degraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    Auto,
    Journald,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// A sorted, deduplicated set of CPU numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

fn parse_period_us(text: &str) -> Result<u64, String> {
    let period: u64 = text.parse().map_err(|_| {
        format!("invalid period {text:?}: expected an integer number of microseconds")
    })?;
    if period < MIN_PERIOD_US {
        return Err(format!(
            "period {period} us is too short: use at least {MIN_PERIOD_US} us"
        ));
    }
    Ok(period)
}

/// Parses a Linux CPU list such as "0", "2-3,5" or "0-1, 4".
pub fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("invalid CPU list {text:?}: empty element"));
        }
        let (start, end) = match part.split_once('-') {
            Some((a, b)) => (parse_cpu(a.trim(), text)?, parse_cpu(b.trim(), text)?),
            None => {
                let cpu = parse_cpu(part, text)?;
                (cpu, cpu)
            }
        };
        if start > end {
            return Err(format!(
                "invalid CPU list {text:?}: range {part:?} has its start above its end"
            ));
        }
        cpus.extend(start..=end);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(CpuList(cpus))
}

fn parse_cpu(number: &str, list: &str) -> Result<usize, String> {
    let cpu: usize = number
        .parse()
        .map_err(|_| format!("invalid CPU list {list:?}: {number:?} is not a CPU number"))?;
    if cpu > MAX_CPU {
        return Err(format!(
            "invalid CPU list {list:?}: CPU {cpu} is above the maximum {MAX_CPU}"
        ));
    }
    Ok(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_list_single_cpu() {
        assert_eq!(parse_cpu_list("3").unwrap(), CpuList(vec![3]));
    }

    #[test]
    fn cpu_list_ranges_and_singles() {
        assert_eq!(parse_cpu_list("2-3,5").unwrap(), CpuList(vec![2, 3, 5]));
        assert_eq!(parse_cpu_list("0-1, 4").unwrap(), CpuList(vec![0, 1, 4]));
    }

    #[test]
    fn cpu_list_overlaps_are_merged() {
        assert_eq!(
            parse_cpu_list("5,1-3,2").unwrap(),
            CpuList(vec![1, 2, 3, 5])
        );
    }

    #[test]
    fn cpu_list_rejects_bad_input() {
        for bad in ["", ",", "1,", "a", "1-", "-2", "3-1", "1-2-3", "1024", "-1"] {
            let err = parse_cpu_list(bad).unwrap_err();
            assert!(err.contains("invalid CPU list"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn cpu_list_display_compacts_ranges() {
        assert_eq!(parse_cpu_list("0,2-4,7").unwrap().to_string(), "0,2-4,7");
        assert_eq!(parse_cpu_list("1").unwrap().to_string(), "1");
    }

    #[test]
    fn period_below_minimum_rejected() {
        assert!(parse_period_us("0").unwrap_err().contains("at least 50"));
        assert!(parse_period_us("49").unwrap_err().contains("at least 50"));
        assert_eq!(parse_period_us("50").unwrap(), 50);
        assert!(parse_period_us("1ms")
            .unwrap_err()
            .contains("invalid period"));
    }

    #[test]
    fn cli_defaults() {
        let cli = Cli::try_parse_from(["mxrc-rt"]).unwrap();
        assert_eq!(cli.rt.priority, 80);
        assert_eq!(cli.rt.period_us, 1000);
        assert_eq!(cli.rt.rt_policy, RtPolicy::Strict);
        assert_eq!(cli.rt.status_interval_ms, 2000);
        assert!(!cli.rt.fault_injection);
        assert_eq!(cli.rt.cpu_dma_latency_us, None);
        assert_eq!(cli.log.target, LogTarget::Auto);
        assert_eq!(cli.log.level, LogLevel::Info);
        assert!(cli.command.is_none());
    }

    #[test]
    fn cli_priority_out_of_range_rejected() {
        assert!(Cli::try_parse_from(["mxrc-rt", "--priority", "0"]).is_err());
        assert!(Cli::try_parse_from(["mxrc-rt", "--priority", "100"]).is_err());
    }

    #[test]
    fn cli_options_accepted_after_bench() {
        let cli = Cli::try_parse_from([
            "mxrc-rt",
            "bench",
            "--duration-s",
            "2",
            "--priority",
            "70",
            "--cpus",
            "1",
            "--log.level",
            "warn",
        ])
        .unwrap();
        assert_eq!(cli.rt.priority, 70);
        assert_eq!(cli.rt.cpus, Some(CpuList(vec![1])));
        assert_eq!(cli.log.level, LogLevel::Warn);
        let Some(Command::Bench(bench)) = cli.command else {
            panic!("bench subcommand not parsed");
        };
        assert_eq!(bench.duration_s, Some(2));
    }

    #[test]
    fn cli_cpu_dma_latency_parses() {
        let cli = Cli::try_parse_from(["mxrc-rt", "--cpu-dma-latency-us", "0"]).unwrap();
        assert_eq!(cli.rt.cpu_dma_latency_us, Some(0));
        assert!(Cli::try_parse_from(["mxrc-rt", "--cpu-dma-latency-us", "-1"]).is_err());
        assert!(Cli::try_parse_from(["mxrc-rt", "--cpu-dma-latency-us", "1us"]).is_err());
    }

    #[test]
    fn cli_dotted_log_options_parse() {
        let cli =
            Cli::try_parse_from(["mxrc-rt", "--log.target", "stderr", "--log.level", "debug"])
                .unwrap();
        assert_eq!(cli.log.target, LogTarget::Stderr);
        assert_eq!(cli.log.level, LogLevel::Debug);
    }
}
