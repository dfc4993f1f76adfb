//! Unit name validation and the `role` label.

use std::sync::OnceLock;

use regex::Regex;

/// Maximum unit name length accepted by systemd (`UNIT_NAME_MAX` minus the NUL).
pub const UNIT_NAME_MAX: usize = 255;

/// Units polled when `--collector.units` is not given.
pub const DEFAULT_UNITS: &str = "mxrc-rt.service,mxrc-nonrt.service,mxrc-monitor.service";

fn unit_name_regex() -> &'static Regex {
    static REGEX: OnceLock<Regex> = OnceLock::new();
    REGEX.get_or_init(|| {
        Regex::new(
            r"^[A-Za-z0-9:_.\\@][A-Za-z0-9:_.\\@-]*\.(service|socket|device|mount|automount|swap|target|path|timer|slice|scope)$",
        )
        .expect("the unit name pattern is a valid regex")
    })
}

/// Validates a unit name before it reaches a `systemctl` command line.
///
/// Accepts the characters systemd allows in unit names, a known unit type
/// suffix, at most [`UNIT_NAME_MAX`] characters and no leading `-`, so a name
/// can never be read as an option.
pub fn validate_unit_name(name: &str) -> Result<String, String> {
    if name.len() > UNIT_NAME_MAX {
        return Err(format!(
            "invalid unit name {name:?}: longer than {UNIT_NAME_MAX} characters"
        ));
    }
    if !unit_name_regex().is_match(name) {
        return Err(format!(
            "invalid unit name {name:?}: use characters [A-Za-z0-9:_.\\@-], no leading '-', \
             and a unit type suffix such as .service, .target, .socket or .timer"
        ));
    }
    Ok(name.to_owned())
}

/// Returns the `role` label value for a unit id.
pub fn role_of(unit: &str) -> &'static str {
    match unit {
        "mxrc-rt.service" => "rt",
        "mxrc-nonrt.service" => "nonrt",
        "mxrc-monitor.service" => "monitor",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_accepted() {
        for name in [
            "mxrc-rt.service",
            "mxrc.target",
            "getty@tty1.service",
            "sys-devices-foo\\x2dbar.device",
            "a:b_c.timer",
        ] {
            assert_eq!(validate_unit_name(name), Ok(name.to_owned()), "{name}");
        }
    }

    #[test]
    fn invalid_names_rejected() {
        let too_long = format!("{}.service", "a".repeat(250));
        for name in [
            "",
            "-p.service",
            "mxrc-rt",
            "mxrc rt.service",
            "mxrc;rm.service",
            "mxrc-rt.servic",
            ".service",
            "a/b.service",
            too_long.as_str(),
        ] {
            let result = validate_unit_name(name);
            assert!(result.is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn rejection_message_quotes_value() {
        let message = validate_unit_name("bad name").unwrap_err();
        assert!(message.contains("\"bad name\""), "{message}");
    }

    #[test]
    fn roles_by_unit() {
        assert_eq!(role_of("mxrc-rt.service"), "rt");
        assert_eq!(role_of("mxrc-nonrt.service"), "nonrt");
        assert_eq!(role_of("mxrc-monitor.service"), "monitor");
        assert_eq!(role_of("ssh.service"), "other");
    }
}
