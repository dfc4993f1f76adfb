//! Parser and rendering tests on `systemctl show` fixtures, a golden
//! exposition file, and property tests checking that no input panics.

use std::path::PathBuf;
use std::sync::Arc;

use mxrc_monitor::metrics::{self, encode_text, Clock, ClockSource};
use mxrc_monitor::parse::{self, parse_manager, parse_show, UnitProperties};
use mxrc_monitor::snapshot::{ManagerInfo, MonitorState, PollErrorReason, SharedState, Snapshot};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn unit<'a>(units: &'a [UnitProperties], id: &str) -> &'a UnitProperties {
    units
        .iter()
        .find(|unit| unit.id == id)
        .unwrap_or_else(|| panic!("{id} not in the fixture"))
}

#[test]
fn running_fixture_parses() {
    let (units, errors) = parse_show(&fixture("running.txt"));
    assert_eq!(errors, 0);
    assert_eq!(units.len(), 3);
    let rt = unit(&units, "mxrc-rt.service");
    assert_eq!(rt.get("ActiveState"), Some("active"));
    assert_eq!(rt.get("SubState"), Some("running"));
    assert_eq!(rt.get("Type"), Some("notify"));
    assert_eq!(rt.get("MainPID"), Some("188"));
    let status = parse::status_values(rt.get("StatusText").unwrap());
    assert_eq!(status.len(), 10);
    assert_eq!(status[0], ("cycles".to_owned(), 6000.0));
    for unit in &units {
        assert_eq!(metrics::count_invalid_values(unit), 0, "{}", unit.id);
    }
}

#[test]
fn failed_fixture_parses() {
    let (units, errors) = parse_show(&fixture("failed.txt"));
    assert_eq!(errors, 0);
    let rt = unit(&units, "mxrc-rt.service");
    assert_eq!(rt.get("ActiveState"), Some("failed"));
    assert_eq!(rt.get("Result"), Some("signal"));
    assert_eq!(
        parse::integer(rt.get("ExecMainCode").unwrap()).number(),
        Some(2.0)
    );
    assert_eq!(
        parse::integer(rt.get("ExecMainStatus").unwrap()).number(),
        Some(6.0)
    );
    assert_eq!(
        parse::monotonic_usec(rt.get("WatchdogTimestampMonotonic").unwrap()).number(),
        None
    );
}

#[test]
fn not_found_fixture_parses() {
    let (units, errors) = parse_show(&fixture("not-found.txt"));
    assert_eq!(errors, 0);
    let missing = unit(&units, "mxrc-missing.service");
    assert_eq!(missing.get("LoadState"), Some("not-found"));
    assert_eq!(
        parse::gauge_u64(missing.get("MemoryCurrent").unwrap()).number(),
        None
    );
    assert_eq!(
        parse::unix_timestamp(missing.get("StateChangeTimestamp").unwrap()).number(),
        None
    );
}

#[test]
fn auto_restart_fixture_parses() {
    let (units, errors) = parse_show(&fixture("auto-restart.txt"));
    assert_eq!(errors, 0);
    let nonrt = unit(&units, "mxrc-nonrt.service");
    assert_eq!(nonrt.get("ActiveState"), Some("activating"));
    assert_eq!(nonrt.get("SubState"), Some("auto-restart"));
    assert_eq!(nonrt.get("Result"), Some("signal"));
    assert_eq!(
        parse::integer(nonrt.get("ExecMainStatus").unwrap()).number(),
        Some(9.0)
    );
}

#[test]
fn manager_fixture_parses() {
    let manager = parse_manager(&fixture("manager.txt"));
    assert_eq!(
        manager.get("SystemState").map(String::as_str),
        Some("degraded")
    );
    assert!(manager
        .get("Version")
        .is_some_and(|version| version.starts_with("252")));
}

/// State of a monitor that polled `fixture` once, successfully, at a fixed time.
fn fixed_state(fixture_name: &str) -> MonitorState {
    let (units, parse_errors) = parse_show(&fixture(fixture_name));
    let manager = parse_manager(&fixture("manager.txt"));
    let mut state = MonitorState {
        snapshot: Some(Arc::new(Snapshot {
            units,
            taken_at_unix: 1_733_400_000.25,
        })),
        manager: ManagerInfo {
            version: manager.get("Version").cloned(),
            system_state: manager.get("SystemState").cloned(),
        },
        polls_total: 7,
        parse_errors_total: parse_errors + 1,
        polled: true,
        last_poll_success: true,
        last_poll_duration_seconds: 0.0125,
        last_success_unix: Some(1_733_400_000.25),
        ..MonitorState::default()
    };
    state.record_error(PollErrorReason::Timeout);
    state
}

const FIXED_CLOCK: Clock = Clock {
    unix_seconds: 1_733_400_000.75,
    monotonic_usec: 1_242_445_142,
};

fn render_text(state: MonitorState) -> String {
    let shared = SharedState::default();
    shared.update(|target| *target = state);
    let registry = metrics::new_registry(shared, ClockSource::Fixed(FIXED_CLOCK));
    String::from_utf8(encode_text(&registry)).expect("the exposition text is UTF-8")
}

#[test]
fn golden_metrics_match() {
    let text = render_text(fixed_state("running.txt"));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!("read {}: {error}; run with UPDATE_GOLDEN=1", path.display())
    });
    assert!(
        text == expected,
        "rendered metrics differ from {}; rerun with UPDATE_GOLDEN=1 after checking the change\n{text}",
        path.display()
    );
}

#[test]
fn rendering_computes_ages() {
    let text = render_text(fixed_state("running.txt"));
    assert!(
        text.contains("mxrc_monitor_snapshot_age_seconds 0.5\n"),
        "{text}"
    );
    let ping_age =
        "mxrc_unit_watchdog_last_ping_age_seconds{unit=\"mxrc-rt.service\",role=\"rt\"} 0.5\n";
    assert!(text.contains(ping_age), "{text}");
}

#[test]
fn failed_unit_renders_states() {
    let text = render_text(fixed_state("failed.txt"));
    let lines = [
        "mxrc_unit_active_state{unit=\"mxrc-rt.service\",role=\"rt\",state=\"failed\"} 1\n",
        "mxrc_unit_active_state{unit=\"mxrc-rt.service\",role=\"rt\",state=\"active\"} 0\n",
        "mxrc_unit_result{unit=\"mxrc-rt.service\",role=\"rt\",result=\"signal\"} 1\n",
        "mxrc_unit_exec_main_code{unit=\"mxrc-rt.service\",role=\"rt\"} 2\n",
        "mxrc_unit_exec_main_status{unit=\"mxrc-rt.service\",role=\"rt\"} 6\n",
        "mxrc_unit_main_pid{unit=\"mxrc-rt.service\",role=\"rt\"} 0\n",
    ];
    for line in lines {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let ping_age = "mxrc_unit_watchdog_last_ping_age_seconds{unit=\"mxrc-rt.service\"";
    assert!(!text.contains(ping_age), "no ping since the failure");
    let status = "mxrc_unit_status_value{unit=\"mxrc-rt.service\"";
    assert!(
        !text.contains(status),
        "status text of the dead process is left out"
    );
    let running_status =
        "mxrc_unit_status_value{unit=\"mxrc-nonrt.service\",role=\"nonrt\",key=\"cycles\"} 1\n";
    assert!(text.contains(running_status), "{text}");
}

#[test]
fn not_found_unit_renders_role_other() {
    let text = render_text(fixed_state("not-found.txt"));
    let line = "mxrc_unit_load_state{unit=\"mxrc-missing.service\",role=\"other\",state=\"not-found\"} 1\n";
    assert!(text.contains(line), "{text}");
    assert!(!text.contains("mxrc_unit_memory_bytes{unit=\"mxrc-missing.service\""));
}

#[test]
fn auto_restart_renders_sub_state() {
    let text = render_text(fixed_state("auto-restart.txt"));
    let line = "mxrc_unit_sub_state{unit=\"mxrc-nonrt.service\",role=\"nonrt\",state=\"auto-restart\"} 1\n";
    assert!(text.contains(line), "{text}");
}

#[test]
fn failed_poll_renders_stale() {
    let mut state = fixed_state("running.txt");
    state.last_poll_success = false;
    let text = render_text(state);
    assert!(text.contains("mxrc_monitor_poll_success 0\n"), "{text}");
    assert!(text.contains("mxrc_monitor_stale 1\n"), "{text}");
    assert!(
        text.contains("mxrc_unit_active_state{"),
        "old snapshot still served"
    );
}

#[test]
fn empty_state_renders() {
    let text = render_text(MonitorState::default());
    assert!(text.contains("mxrc_monitor_polls_total 0\n"), "{text}");
    assert!(
        text.contains("mxrc_systemd_system_state{state=\"unknown\"} 1\n"),
        "{text}"
    );
    assert!(
        !text.contains("mxrc_monitor_poll_success"),
        "no poll has finished yet"
    );
}

/// Lines that look like `systemctl show` output, with odd values mixed in.
fn show_like_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("Id".to_owned()),
        Just("StatusText".to_owned()),
        Just("MemoryMax".to_owned()),
        Just("WatchdogUSec".to_owned()),
        Just("WatchdogTimestampMonotonic".to_owned()),
        Just("ActiveState".to_owned()),
        Just("ExecMainStartTimestamp".to_owned()),
        Just("CPUUsageNSec".to_owned()),
        "[A-Za-z]{1,12}",
    ];
    let value = prop_oneof![
        Just("infinity".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("[not set]".to_owned()),
        Just("@".to_owned()),
        Just("1min 2.5s".to_owned()),
        "[0-9]{1,25}",
        "[a-z_]{1,8}=-?[0-9.e]{1,8}( [a-z_]{1,8}=[0-9]{1,4}){0,40}",
        "\\PC{0,30}",
    ];
    let line = prop_oneof![
        (key, value).prop_map(|(key, value)| format!("{key}={value}")),
        Just(String::new()),
        "\\PC{0,20}",
    ];
    prop::collection::vec(line, 0..60).prop_map(|lines| lines.join("\n"))
}

fn state_from_text(text: &str) -> MonitorState {
    let (units, parse_errors) = parse_show(text);
    MonitorState {
        snapshot: Some(Arc::new(Snapshot {
            units,
            taken_at_unix: 1.0,
        })),
        parse_errors_total: parse_errors,
        polled: true,
        ..MonitorState::default()
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        let state = state_from_text(&text);
        let _ = metrics::render(&state, FIXED_CLOCK);
        let _ = render_text(state);
    }

    #[test]
    fn show_like_text_never_panics(text in show_like_text()) {
        let state = state_from_text(&text);
        let units = state.snapshot.as_ref().map(|snapshot| snapshot.units.len()).unwrap_or(0);
        let text = render_text(state);
        prop_assert!(text.contains("mxrc_monitor_polls_total"));
        let info_lines = text.matches("mxrc_unit_info{").count();
        prop_assert_eq!(units, info_lines);
    }

    #[test]
    fn value_conversions_never_panic(text in "\\PC{0,40}") {
        let _ = parse::gauge_u64(&text);
        let _ = parse::limit_u64(&text);
        let _ = parse::integer(&text);
        let _ = parse::unix_timestamp(&text);
        let _ = parse::monotonic_usec(&text);
        let _ = parse::timespan_seconds(&text);
        let _ = parse::status_values(&text);
    }
}
