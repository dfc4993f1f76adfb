//! mxrc-monitor: Prometheus exporter for the MXRC systemd units.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use slog::{info, o};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use mxrc_monitor::cli::Args;
use mxrc_monitor::http::{self, Site};
use mxrc_monitor::log::{self, Loggers, TraceContext};
use mxrc_monitor::metrics::{self, ClockSource};
use mxrc_monitor::notify;
use mxrc_monitor::poll::{PollConfig, Poller};
use mxrc_monitor::snapshot::SharedState;

fn main() -> ExitCode {
    let args = Args::parse_and_check();
    let traceparent = args
        .traceparent
        .clone()
        .or_else(|| std::env::var("TRACEPARENT").ok());
    let trace = match TraceContext::new(traceparent.as_deref()) {
        Ok(trace) => trace,
        Err(message) => {
            eprintln!("mxrc-monitor: {message}");
            return ExitCode::from(2);
        }
    };
    let loggers = log::build(args.log_target, args.log_level, &trace);

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            loggers.startup_error("failed to start the tokio runtime", &error);
            return ExitCode::FAILURE;
        }
    };
    let state = SharedState::default();
    // A repeated name would make systemctl print a duplicate block.
    let mut units: Vec<String> = Vec::with_capacity(args.units.len());
    for unit in &args.units {
        if !units.contains(unit) {
            units.push(unit.clone());
        }
    }
    let config = PollConfig {
        systemctl: args.systemctl_path.clone(),
        units,
        timeout: args.timeout,
    };
    let poller = Poller::new(config, state.clone(), loggers.clone());
    let registry = metrics::new_registry(state.clone(), ClockSource::System);

    if args.once {
        return runtime.block_on(run_once(poller, &registry));
    }
    runtime.block_on(run_service(&args, poller, state, registry, &loggers))
}

/// Polls once and prints the metrics; exit status 1 when the poll failed.
async fn run_once(mut poller: Poller, registry: &prometheus::Registry) -> ExitCode {
    if let Err(error) = poller.poll_once().await {
        eprintln!("mxrc-monitor: collection failed: {error}");
        return ExitCode::FAILURE;
    }
    let text = metrics::encode_text(registry);
    if let Err(error) = std::io::stdout().lock().write_all(&text) {
        eprintln!("mxrc-monitor: failed to write the metrics to stdout: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Runs the exporter until SIGTERM or SIGINT.
async fn run_service(
    args: &Args,
    mut poller: Poller,
    state: SharedState,
    registry: prometheus::Registry,
    loggers: &Loggers,
) -> ExitCode {
    let log = &loggers.root;
    let (mut sigterm, mut sigint) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(sigterm), Ok(sigint)) => (sigterm, sigint),
        (Err(error), _) | (_, Err(error)) => {
            loggers.startup_error("failed to install the SIGTERM and SIGINT handlers", &error);
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(args.listen_address).await {
        Ok(listener) => listener,
        Err(error) => {
            let message = format!(
                "failed to listen on {}; check --web.listen-address",
                args.listen_address
            );
            loggers.startup_error(&message, &error);
            return ExitCode::FAILURE;
        }
    };

    let bound_address = listener.local_addr().unwrap_or(args.listen_address);

    // Readiness waits for the first poll so that the first scrape has data.
    let _ = poller.poll_once().await;
    let site = Arc::new(Site {
        telemetry_path: args.telemetry_path.clone(),
        registry,
    });
    let http_log = log.new(o!("component" => "http"));
    let server = tokio::spawn(http::serve(listener, site, http_log));
    let polling = tokio::spawn(poller.run(args.interval));
    let watchdog = tokio::spawn(notify::run_watchdog(state, log.clone()));

    notify::notify_ready(log);
    info!(log, "started";
        "address" => %bound_address,
        "telemetry_path" => &args.telemetry_path,
        "units" => args.units.join(","),
        "interval_ms" => args.interval.as_millis() as u64,
        "timeout_ms" => args.timeout.as_millis() as u64);

    let signal_name = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    notify::notify_stopping(log);
    info!(log, "stopping"; "signal" => signal_name);
    server.abort();
    polling.abort();
    watchdog.abort();
    ExitCode::SUCCESS
}
