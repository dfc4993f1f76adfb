//! Metric descriptors and rendering of the shared state into metric families.
//!
//! The descriptors are built once at start. Each scrape renders the current
//! snapshot into fresh `MetricFamily` values, as node_exporter's collectors do.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::parse::{self, UnitProperties, Value};
use crate::snapshot::{MonitorState, PollErrorReason, SharedState};
use crate::units::role_of;

/// Content type of the text exposition format written by [`encode_text`].
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const GAUGE: MetricType = MetricType::GAUGE;
const COUNTER: MetricType = MetricType::COUNTER;
const UNIT_LABELS: &[&str] = &["unit", "role"];

/// Name, help text, type and label names of one metric family.
#[derive(Clone, Copy)]
struct FamilySpec {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

/// A per-unit metric whose value is one converted unit property.
struct PropertyMetric {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    property: &'static str,
    convert: fn(&str) -> Value,
    scale: f64,
}

const fn property_metric(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    property: &'static str,
    convert: fn(&str) -> Value,
) -> PropertyMetric {
    PropertyMetric {
        name,
        help,
        kind,
        property,
        convert,
        scale: 1.0,
    }
}

const PROPERTY_METRICS: &[PropertyMetric] = &[
    property_metric(
        "mxrc_unit_restarts_total",
        "Automatic restarts of the unit (NRestarts).",
        COUNTER,
        "NRestarts",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_main_pid",
        "Main process id of the unit, 0 when none (MainPID).",
        GAUGE,
        "MainPID",
        parse::integer,
    ),
    property_metric(
        "mxrc_unit_exec_main_status",
        "Exit status or signal number of the main process (ExecMainStatus).",
        GAUGE,
        "ExecMainStatus",
        parse::integer,
    ),
    property_metric(
        "mxrc_unit_exec_main_code",
        "CLD_* code of the main process: 1 exited, 2 killed, 3 dumped (ExecMainCode).",
        GAUGE,
        "ExecMainCode",
        parse::integer,
    ),
    property_metric(
        "mxrc_unit_status_errno",
        "Errno the service sent with ERRNO= (StatusErrno).",
        GAUGE,
        "StatusErrno",
        parse::integer,
    ),
    property_metric(
        "mxrc_unit_start_time_seconds",
        "Unix time at which the main process started (ExecMainStartTimestamp).",
        GAUGE,
        "ExecMainStartTimestamp",
        parse::unix_timestamp,
    ),
    property_metric(
        "mxrc_unit_state_change_time_seconds",
        "Unix time of the last unit state change (StateChangeTimestamp).",
        GAUGE,
        "StateChangeTimestamp",
        parse::unix_timestamp,
    ),
    property_metric(
        "mxrc_unit_active_enter_time_seconds",
        "Unix time at which the unit last entered the active state (ActiveEnterTimestamp).",
        GAUGE,
        "ActiveEnterTimestamp",
        parse::unix_timestamp,
    ),
    property_metric(
        "mxrc_unit_active_exit_time_seconds",
        "Unix time at which the unit last left the active state (ActiveExitTimestamp).",
        GAUGE,
        "ActiveExitTimestamp",
        parse::unix_timestamp,
    ),
    property_metric(
        "mxrc_unit_inactive_enter_time_seconds",
        "Unix time at which the unit last entered the inactive state (InactiveEnterTimestamp).",
        GAUGE,
        "InactiveEnterTimestamp",
        parse::unix_timestamp,
    ),
    property_metric(
        "mxrc_unit_inactive_exit_time_seconds",
        "Unix time at which the unit last left the inactive state (InactiveExitTimestamp).",
        GAUGE,
        "InactiveExitTimestamp",
        parse::unix_timestamp,
    ),
    PropertyMetric {
        scale: 1e-9,
        ..property_metric(
            "mxrc_unit_cpu_seconds_total",
            "CPU time consumed by the unit's cgroup in seconds (CPUUsageNSec).",
            COUNTER,
            "CPUUsageNSec",
            parse::gauge_u64,
        )
    },
    property_metric(
        "mxrc_unit_memory_bytes",
        "Current memory use of the unit's cgroup in bytes (MemoryCurrent).",
        GAUGE,
        "MemoryCurrent",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_memory_peak_bytes",
        "Peak memory use of the unit's cgroup in bytes (MemoryPeak, systemd 254 and later).",
        GAUGE,
        "MemoryPeak",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_memory_max_bytes",
        "Memory hard limit in bytes, +Inf when unlimited (MemoryMax).",
        GAUGE,
        "MemoryMax",
        parse::limit_u64,
    ),
    property_metric(
        "mxrc_unit_memory_high_bytes",
        "Memory throttling limit in bytes, +Inf when unlimited (MemoryHigh).",
        GAUGE,
        "MemoryHigh",
        parse::limit_u64,
    ),
    property_metric(
        "mxrc_unit_tasks",
        "Current number of tasks in the unit's cgroup (TasksCurrent).",
        GAUGE,
        "TasksCurrent",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_tasks_max",
        "Task limit of the unit, +Inf when unlimited (TasksMax).",
        GAUGE,
        "TasksMax",
        parse::limit_u64,
    ),
    property_metric(
        "mxrc_unit_cpu_quota_ratio",
        "CPU quota as a fraction of one CPU, absent when unlimited (CPUQuotaPerSecUSec).",
        GAUGE,
        "CPUQuotaPerSecUSec",
        finite_timespan_seconds,
    ),
    property_metric(
        "mxrc_unit_io_read_bytes_total",
        "Bytes read by the unit's cgroup (IOReadBytes).",
        COUNTER,
        "IOReadBytes",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_io_write_bytes_total",
        "Bytes written by the unit's cgroup (IOWriteBytes).",
        COUNTER,
        "IOWriteBytes",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_ip_ingress_bytes_total",
        "IP bytes received by the unit (IPIngressBytes).",
        COUNTER,
        "IPIngressBytes",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_ip_egress_bytes_total",
        "IP bytes sent by the unit (IPEgressBytes).",
        COUNTER,
        "IPEgressBytes",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_ip_ingress_packets_total",
        "IP packets received by the unit (IPIngressPackets).",
        COUNTER,
        "IPIngressPackets",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_ip_egress_packets_total",
        "IP packets sent by the unit (IPEgressPackets).",
        COUNTER,
        "IPEgressPackets",
        parse::gauge_u64,
    ),
    property_metric(
        "mxrc_unit_watchdog_timeout_seconds",
        "Watchdog timeout of the service in seconds, absent when disabled (WatchdogUSec).",
        GAUGE,
        "WatchdogUSec",
        finite_timespan_seconds,
    ),
];

/// Families that are not a single converted property.
const OTHER_FAMILIES: &[FamilySpec] = &[
    FamilySpec { name: "mxrc_unit_active_state", help: "Active state of the unit, 1 for the current state (ActiveState).", kind: GAUGE, labels: &["unit", "role", "state"] },
    FamilySpec { name: "mxrc_unit_load_state", help: "Load state of the unit, 1 for the current state (LoadState).", kind: GAUGE, labels: &["unit", "role", "state"] },
    FamilySpec { name: "mxrc_unit_sub_state", help: "Type-specific sub-state of the unit, 1 for the current state (SubState).", kind: GAUGE, labels: &["unit", "role", "state"] },
    FamilySpec { name: "mxrc_unit_result", help: "Result of the last run of the unit, 1 for the current result (Result).", kind: GAUGE, labels: &["unit", "role", "result"] },
    FamilySpec { name: "mxrc_unit_info", help: "Unit metadata, always 1 (Type, Description).", kind: GAUGE, labels: &["unit", "role", "type", "description"] },
    FamilySpec { name: "mxrc_unit_watchdog_last_ping_age_seconds", help: "Seconds since the service last sent WATCHDOG=1, from CLOCK_MONOTONIC (WatchdogTimestampMonotonic).", kind: GAUGE, labels: UNIT_LABELS },
    FamilySpec { name: "mxrc_unit_status_value", help: "Numeric key=value pairs of the status text (STATUS=) of the unit's running main process, at most 32 keys per unit.", kind: GAUGE, labels: &["unit", "role", "key"] },
    FamilySpec { name: "mxrc_monitor_poll_success", help: "Whether the latest poll of systemctl succeeded (1) or failed (0).", kind: GAUGE, labels: &[] },
    FamilySpec { name: "mxrc_monitor_poll_duration_seconds", help: "Wall time of the latest poll in seconds.", kind: GAUGE, labels: &[] },
    FamilySpec { name: "mxrc_monitor_polls_total", help: "Polls of systemctl started.", kind: COUNTER, labels: &[] },
    FamilySpec { name: "mxrc_monitor_poll_errors_total", help: "Failed systemctl runs (unit polls and manager queries) by reason.", kind: COUNTER, labels: &["reason"] },
    FamilySpec { name: "mxrc_monitor_parse_errors_total", help: "Lines, blocks and property values of systemctl output that did not parse.", kind: COUNTER, labels: &[] },
    FamilySpec { name: "mxrc_monitor_last_success_timestamp_seconds", help: "Unix time of the latest successful poll.", kind: GAUGE, labels: &[] },
    FamilySpec { name: "mxrc_monitor_stale", help: "1 when the latest poll failed and the served unit metrics come from an older poll, else 0.", kind: GAUGE, labels: &[] },
    FamilySpec { name: "mxrc_monitor_snapshot_age_seconds", help: "Age of the served unit snapshot at scrape time in seconds.", kind: GAUGE, labels: &[] },
    FamilySpec { name: "mxrc_systemd_info", help: "systemd manager version, always 1.", kind: GAUGE, labels: &["version"] },
    FamilySpec { name: "mxrc_systemd_system_state", help: "systemd system state, 1 for the current state (SystemState).", kind: GAUGE, labels: &["state"] },
];

const ACTIVE_STATES: &[&str] = &[
    "active",
    "activating",
    "deactivating",
    "inactive",
    "failed",
    "reloading",
];
const LOAD_STATES: &[&str] = &["loaded", "not-found", "bad-setting", "error", "masked"];
const SYSTEM_STATES: &[&str] = &[
    "initializing",
    "starting",
    "running",
    "degraded",
    "maintenance",
    "stopping",
    "offline",
    "unknown",
];

/// Unit properties that are read but have no [`PropertyMetric`] of their own.
const OTHER_UNIT_PROPERTIES: &[&str] = &[
    "Id",
    "Description",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "Type",
    "StatusText",
    "WatchdogTimestampMonotonic",
];

fn finite_timespan_seconds(text: &str) -> Value {
    match parse::timespan_seconds(text) {
        Value::Number(seconds) if seconds.is_infinite() || seconds == 0.0 => Value::Absent,
        other => other,
    }
}

/// Returns the unit properties to pass to `systemctl show --property=`.
pub fn unit_property_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = OTHER_UNIT_PROPERTIES.to_vec();
    names.extend(PROPERTY_METRICS.iter().map(|metric| metric.property));
    names
}

/// Counts property values of a unit that are present but not in the expected format.
pub fn count_invalid_values(unit: &UnitProperties) -> u64 {
    let mut invalid = PROPERTY_METRICS
        .iter()
        .filter_map(|metric| unit.get(metric.property).map(metric.convert))
        .filter(|value| *value == Value::Invalid)
        .count() as u64;
    if let Some(text) = unit.get("WatchdogTimestampMonotonic") {
        if parse::monotonic_usec(text) == Value::Invalid {
            invalid += 1;
        }
    }
    invalid
}

/// Wall and monotonic clock readings used for ages at scrape time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    pub unix_seconds: f64,
    /// CLOCK_MONOTONIC in microseconds, the clock of systemd's `*Monotonic` properties.
    pub monotonic_usec: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let unix_seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs_f64())
            .unwrap_or(0.0);
        Clock {
            unix_seconds,
            monotonic_usec: monotonic_usec_now(),
        }
    }
}

fn monotonic_usec_now() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(time) => (time.tv_sec() as u64) * 1_000_000 + (time.tv_nsec() as u64) / 1_000,
        Err(_) => 0,
    }
}

/// Source of the scrape time: the system clocks, or a fixed reading for tests.
#[derive(Clone, Copy, Debug)]
pub enum ClockSource {
    System,
    Fixed(Clock),
}

/// Collector that renders the shared state on each scrape.
pub struct MonitorCollector {
    descs: Vec<Desc>,
    state: SharedState,
    clock: ClockSource,
}

impl MonitorCollector {
    pub fn new(state: SharedState, clock: ClockSource) -> MonitorCollector {
        let descs = all_specs()
            .map(|spec| {
                let labels = spec.labels.iter().map(|label| label.to_string()).collect();
                Desc::new(
                    spec.name.to_owned(),
                    spec.help.to_owned(),
                    labels,
                    Default::default(),
                )
                .expect("metric descriptors are static and valid")
            })
            .collect();
        MonitorCollector {
            descs,
            state,
            clock,
        }
    }
}

impl Collector for MonitorCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let clock = match self.clock {
            ClockSource::System => Clock::now(),
            ClockSource::Fixed(clock) => clock,
        };
        render(&self.state.read(), clock)
    }
}

/// Builds a registry with the monitor's collector.
pub fn new_registry(state: SharedState, clock: ClockSource) -> Registry {
    let registry = Registry::new();
    registry
        .register(Box::new(MonitorCollector::new(state, clock)))
        .expect("the registry is new, so no descriptor collides");
    registry
}

/// Encodes all metrics of the registry in the Prometheus text format.
pub fn encode_text(registry: &Registry) -> Vec<u8> {
    let families = registry.gather();
    let mut buffer = Vec::with_capacity(16 * 1024);
    // NOTE: TextEncoder writes +Inf as "inf"; Prometheus and promtool parse
    // it with Go's strconv.ParseFloat, which accepts that spelling.
    if let Err(error) = TextEncoder::new().encode(&families, &mut buffer) {
        // Only empty families fail to encode, and gather() drops those.
        buffer.clear();
        buffer.extend_from_slice(format!("# encoding failed: {error}\n").as_bytes());
    }
    buffer
}

fn all_specs() -> impl Iterator<Item = FamilySpec> {
    let property_specs = PROPERTY_METRICS.iter().map(|metric| FamilySpec {
        name: metric.name,
        help: metric.help,
        kind: metric.kind,
        labels: UNIT_LABELS,
    });
    property_specs.chain(OTHER_FAMILIES.iter().copied())
}

/// Renders the state into metric families; families without samples are left out.
pub fn render(state: &MonitorState, clock: Clock) -> Vec<MetricFamily> {
    let mut families = Families::new();
    if let Some(snapshot) = &state.snapshot {
        for unit in &snapshot.units {
            render_unit(&mut families, unit, clock);
        }
        let age = (clock.unix_seconds - snapshot.taken_at_unix).max(0.0);
        families.add("mxrc_monitor_snapshot_age_seconds", &[], age);
    }
    render_monitor(&mut families, state);
    render_manager(&mut families, state);
    families.finish()
}

fn render_unit(families: &mut Families, unit: &UnitProperties, clock: Clock) {
    let id = unit.id.as_str();
    let role = role_of(id);
    let base = [id, role];

    for metric in PROPERTY_METRICS {
        let value = unit.get(metric.property).map(metric.convert);
        if let Some(Value::Number(number)) = value {
            families.add(metric.name, &base, number * metric.scale);
        }
    }

    let active_state = unit.get("ActiveState").unwrap_or("");
    families.add_one_hot("mxrc_unit_active_state", &base, ACTIVE_STATES, active_state);
    let load_state = unit.get("LoadState").unwrap_or("");
    families.add_one_hot("mxrc_unit_load_state", &base, LOAD_STATES, load_state);
    if let Some(sub_state) = unit.get("SubState").filter(|text| !text.is_empty()) {
        families.add("mxrc_unit_sub_state", &[id, role, sub_state], 1.0);
    }
    if let Some(result) = unit.get("Result").filter(|text| !text.is_empty()) {
        families.add("mxrc_unit_result", &[id, role, result], 1.0);
    }
    let unit_type = unit.get("Type").unwrap_or("");
    let description = unit.get("Description").unwrap_or("");
    families.add("mxrc_unit_info", &[id, role, unit_type, description], 1.0);

    let last_ping = unit
        .get("WatchdogTimestampMonotonic")
        .map(parse::monotonic_usec);
    if let Some(Value::Number(ping_usec)) = last_ping {
        let age = (clock.monotonic_usec as f64 - ping_usec).max(0.0) / 1e6;
        families.add("mxrc_unit_watchdog_last_ping_age_seconds", &base, age);
    }

    // systemd keeps StatusText after the main process exits, so values from a
    // dead process are left out instead of being reported as current.
    let main_pid = unit.get("MainPID").map(parse::integer);
    if matches!(main_pid, Some(Value::Number(pid)) if pid > 0.0) {
        for (key, value) in parse::status_values(unit.get("StatusText").unwrap_or("")) {
            families.add("mxrc_unit_status_value", &[id, role, &key], value);
        }
    }
}

fn render_monitor(families: &mut Families, state: &MonitorState) {
    if state.polled {
        let success = if state.last_poll_success { 1.0 } else { 0.0 };
        families.add("mxrc_monitor_poll_success", &[], success);
        let duration = state.last_poll_duration_seconds;
        families.add("mxrc_monitor_poll_duration_seconds", &[], duration);
    }
    families.add("mxrc_monitor_polls_total", &[], state.polls_total as f64);
    for reason in PollErrorReason::ALL {
        let count = state.errors_for(reason) as f64;
        families.add("mxrc_monitor_poll_errors_total", &[reason.label()], count);
    }
    let parse_errors = state.parse_errors_total as f64;
    families.add("mxrc_monitor_parse_errors_total", &[], parse_errors);
    if let Some(unix_seconds) = state.last_success_unix {
        families.add(
            "mxrc_monitor_last_success_timestamp_seconds",
            &[],
            unix_seconds,
        );
    }
    let stale = if state.is_stale() { 1.0 } else { 0.0 };
    families.add("mxrc_monitor_stale", &[], stale);
}

fn render_manager(families: &mut Families, state: &MonitorState) {
    if let Some(version) = &state.manager.version {
        families.add("mxrc_systemd_info", &[version], 1.0);
    }
    let system_state = state.manager.system_state.as_deref().unwrap_or("unknown");
    families.add_one_hot(
        "mxrc_systemd_system_state",
        &[],
        SYSTEM_STATES,
        system_state,
    );
}

/// Metric families under construction, in descriptor order.
struct Families {
    specs: Vec<FamilySpec>,
    metrics: Vec<Vec<Metric>>,
}

impl Families {
    fn new() -> Families {
        let specs: Vec<FamilySpec> = all_specs().collect();
        let metrics = specs.iter().map(|_| Vec::new()).collect();
        Families { specs, metrics }
    }

    /// Adds one sample; `label_values` follow the family's label names.
    fn add(&mut self, name: &str, label_values: &[&str], value: f64) {
        let Some(index) = self.specs.iter().position(|spec| spec.name == name) else {
            debug_assert!(false, "metric {name} has no descriptor");
            return;
        };
        let spec = &self.specs[index];
        debug_assert_eq!(spec.labels.len(), label_values.len(), "labels of {name}");
        let labels = spec
            .labels
            .iter()
            .zip(label_values)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_string());
                pair.set_value(value.to_string());
                pair
            })
            .collect();
        let mut metric = Metric::from_label(labels);
        if spec.kind == COUNTER {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        self.metrics[index].push(metric);
    }

    /// Adds one sample per known state, 1 for `current`; an unknown current state gets its own sample.
    fn add_one_hot(&mut self, name: &str, prefix: &[&str], known: &[&str], current: &str) {
        let mut label_values: Vec<&str> = prefix.to_vec();
        for state in known {
            label_values.push(state);
            self.add(
                name,
                &label_values,
                if *state == current { 1.0 } else { 0.0 },
            );
            label_values.pop();
        }
        if !current.is_empty() && !known.contains(&current) {
            label_values.push(current);
            self.add(name, &label_values, 1.0);
        }
    }

    fn finish(self) -> Vec<MetricFamily> {
        self.specs
            .into_iter()
            .zip(self.metrics)
            .filter(|(_, metrics)| !metrics.is_empty())
            .map(|(spec, metrics)| {
                let mut family = MetricFamily::default();
                family.set_name(spec.name.to_owned());
                family.set_help(spec.help.to_owned());
                family.set_field_type(spec.kind);
                family.set_metric(metrics);
                family
            })
            .collect()
    }
}
