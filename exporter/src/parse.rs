//! Parser for `systemctl show` output and conversions of its property values.
//!
//! All functions here are pure so that they can be tested on captured output.

use std::collections::BTreeMap;

/// Properties of one unit as printed by `systemctl show`, keyed by property name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnitProperties {
    /// Value of the `Id=` property, the unit's primary name.
    pub id: String,
    pub properties: BTreeMap<String, String>,
}

impl UnitProperties {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}

/// Parses `systemctl show` output for one or more units.
///
/// Blocks of `key=value` lines are separated by blank lines. Each block is
/// identified by its `Id=` key, never by its position. Returns the units in
/// output order and the number of lines or blocks that did not parse: a line
/// without `=`, a block without `Id=`, or a second block with an `Id` already
/// seen (the first block is kept).
pub fn parse_show(text: &str) -> (Vec<UnitProperties>, u64) {
    let mut units: Vec<UnitProperties> = Vec::new();
    let mut parse_errors = 0;

    for block in split_blocks(text) {
        let mut properties = BTreeMap::new();
        for line in block {
            match line.split_once('=') {
                Some((key, value)) if !key.is_empty() => {
                    properties.insert(key.to_owned(), value.to_owned());
                }
                _ => parse_errors += 1,
            }
        }
        let Some(id) = properties.get("Id").filter(|id| !id.is_empty()).cloned() else {
            parse_errors += 1;
            continue;
        };
        if units.iter().any(|unit| unit.id == id) {
            parse_errors += 1;
            continue;
        }
        units.push(UnitProperties { id, properties });
    }
    (units, parse_errors)
}

/// Parses the manager properties printed by `systemctl show` without unit arguments.
pub fn parse_manager(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn split_blocks(text: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// Result of converting one property value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// systemd has no value: `[not set]`, `[no data]`, empty, or a sentinel.
    Absent,
    Number(f64),
    /// The text is not in any format the property can have.
    Invalid,
}

impl Value {
    pub fn number(self) -> Option<f64> {
        match self {
            Value::Number(number) => Some(number),
            _ => None,
        }
    }
}

fn is_unset(text: &str) -> bool {
    matches!(text, "" | "[not set]" | "[no data]" | "n/a")
}

/// Converts a counter or current value where `infinity` and `u64::MAX` mean "no data".
///
/// Used for MemoryCurrent, TasksCurrent, CPUUsageNSec, IO and IP accounting.
pub fn gauge_u64(text: &str) -> Value {
    if is_unset(text) || text == "infinity" {
        return Value::Absent;
    }
    match text.parse::<u64>() {
        Ok(u64::MAX) => Value::Absent,
        Ok(number) => Value::Number(number as f64),
        Err(_) => Value::Invalid,
    }
}

/// Converts a limit where `infinity` and `u64::MAX` mean "no limit" (+Inf).
///
/// Used for MemoryMax, MemoryHigh and TasksMax.
pub fn limit_u64(text: &str) -> Value {
    if is_unset(text) {
        return Value::Absent;
    }
    if text == "infinity" {
        return Value::Number(f64::INFINITY);
    }
    match text.parse::<u64>() {
        Ok(u64::MAX) => Value::Number(f64::INFINITY),
        Ok(number) => Value::Number(number as f64),
        Err(_) => Value::Invalid,
    }
}

/// Converts a signed integer such as ExecMainStatus, MainPID or StatusErrno.
pub fn integer(text: &str) -> Value {
    if is_unset(text) {
        return Value::Absent;
    }
    match text.parse::<i64>() {
        Ok(number) => Value::Number(number as f64),
        Err(_) => Value::Invalid,
    }
}

/// Converts a `--timestamp=unix` timestamp (`@1733340000`) to Unix seconds.
///
/// An empty value or `@0` means systemd has no timestamp.
pub fn unix_timestamp(text: &str) -> Value {
    if is_unset(text) {
        return Value::Absent;
    }
    let Some(seconds) = text.strip_prefix('@') else {
        return Value::Invalid;
    };
    match seconds.parse::<u64>() {
        Ok(0) => Value::Absent,
        Ok(seconds) => Value::Number(seconds as f64),
        Err(_) => Value::Invalid,
    }
}

/// Converts a `*Monotonic` timestamp in microseconds; 0 means absent.
pub fn monotonic_usec(text: &str) -> Value {
    match gauge_u64(text) {
        Value::Number(0.0) => Value::Absent,
        other => other,
    }
}

/// Converts a systemd time span as printed by `systemctl show` to seconds.
///
/// systemctl prints `*USec` properties in the `format_timespan()` form, e.g.
/// `1min 30s`, `500ms`, `1.500s` or `infinity`. Returns +Inf for `infinity`.
pub fn timespan_seconds(text: &str) -> Value {
    if is_unset(text) {
        return Value::Absent;
    }
    if text == "infinity" {
        return Value::Number(f64::INFINITY);
    }
    let mut total = 0.0;
    for token in text.split_whitespace() {
        match timespan_token_seconds(token) {
            Some(seconds) => total += seconds,
            None => return Value::Invalid,
        }
    }
    Value::Number(total)
}

fn timespan_token_seconds(token: &str) -> Option<f64> {
    let unit_start = token
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(token.len());
    let (number, unit) = token.split_at(unit_start);
    if number.is_empty() {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    // Suffixes and factors of systemd format_timespan(), from src/basic/time-util.h
    // (a month is 2629800 s and a year 31557600 s there).
    let seconds_per_unit = match unit {
        "" | "s" | "sec" => 1.0,
        "us" | "usec" => 1e-6,
        "ms" | "msec" => 1e-3,
        "min" | "m" => 60.0,
        "h" | "hr" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        "month" => 2_629_800.0,
        "y" => 31_557_600.0,
        _ => return None,
    };
    Some(value * seconds_per_unit)
}

/// Maximum number of `key=value` pairs taken from one unit's StatusText.
pub const STATUS_KEYS_MAX: usize = 32;

/// Extracts numeric `key=value` pairs from a unit's StatusText (the `STATUS=` string).
///
/// Keys must match `[a-z][a-z0-9_]{0,63}` and values must be finite numbers.
/// Other words are ignored, the first occurrence of a key wins, and at most
/// [`STATUS_KEYS_MAX`] keys are returned in text order.
pub fn status_values(text: &str) -> Vec<(String, f64)> {
    let mut values: Vec<(String, f64)> = Vec::new();
    for word in text.split_whitespace() {
        if values.len() == STATUS_KEYS_MAX {
            break;
        }
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        if !is_status_key(key) || values.iter().any(|(seen, _)| seen == key) {
            continue;
        }
        let Ok(number) = value.parse::<f64>() else {
            continue;
        };
        if number.is_finite() {
            values.push((key.to_owned(), number));
        }
    }
    values
}

fn is_status_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_identified_by_id() {
        let text = "Type=notify\nId=b.service\n\nId=a.service\nType=simple\n";
        let (units, errors) = parse_show(text);
        assert_eq!(errors, 0);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].id, "b.service");
        assert_eq!(units[0].get("Type"), Some("notify"));
        assert_eq!(units[1].id, "a.service");
        assert_eq!(units[1].get("Type"), Some("simple"));
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        let (units, _) = parse_show("Id=a.service\nStatusText=cycles=5 overruns=0\n");
        assert_eq!(units[0].get("StatusText"), Some("cycles=5 overruns=0"));
    }

    #[test]
    fn bad_lines_and_blocks_counted() {
        let text = "garbage\nId=a.service\n\nType=simple\n\nId=a.service\n";
        let (units, errors) = parse_show(text);
        assert_eq!(units.len(), 1);
        assert_eq!(errors, 3, "bad line, block without Id, duplicate Id");
    }

    #[test]
    fn empty_output_parses_to_nothing() {
        assert_eq!(parse_show(""), (Vec::new(), 0));
        assert_eq!(parse_show("\n\n\n"), (Vec::new(), 0));
    }

    #[test]
    fn gauge_sentinels_absent() {
        for text in [
            "",
            "[not set]",
            "[no data]",
            "infinity",
            "18446744073709551615",
        ] {
            assert_eq!(gauge_u64(text), Value::Absent, "{text:?}");
        }
        assert_eq!(gauge_u64("4096"), Value::Number(4096.0));
        assert_eq!(gauge_u64("-1"), Value::Invalid);
    }

    #[test]
    fn limit_infinity_is_inf() {
        assert_eq!(limit_u64("infinity"), Value::Number(f64::INFINITY));
        assert_eq!(
            limit_u64("18446744073709551615"),
            Value::Number(f64::INFINITY)
        );
        assert_eq!(limit_u64("[not set]"), Value::Absent);
        assert_eq!(limit_u64("1048576"), Value::Number(1048576.0));
    }

    #[test]
    fn unix_timestamps_convert() {
        assert_eq!(unix_timestamp("@1733340000"), Value::Number(1733340000.0));
        assert_eq!(unix_timestamp(""), Value::Absent);
        assert_eq!(unix_timestamp("@0"), Value::Absent);
        assert_eq!(unix_timestamp("n/a"), Value::Absent);
        assert_eq!(
            unix_timestamp("Thu 2024-12-04 19:20:00 UTC"),
            Value::Invalid
        );
    }

    #[test]
    fn monotonic_zero_absent() {
        assert_eq!(monotonic_usec("0"), Value::Absent);
        assert_eq!(monotonic_usec("123456"), Value::Number(123456.0));
    }

    #[test]
    fn timespans_convert() {
        assert_eq!(timespan_seconds("5s"), Value::Number(5.0));
        assert_eq!(timespan_seconds("500ms"), Value::Number(0.5));
        assert_eq!(timespan_seconds("1min 30s"), Value::Number(90.0));
        assert_eq!(timespan_seconds("1.500s"), Value::Number(1.5));
        assert_eq!(timespan_seconds("0"), Value::Number(0.0));
        assert_eq!(timespan_seconds("infinity"), Value::Number(f64::INFINITY));
        assert_eq!(timespan_seconds("5 parsecs"), Value::Invalid);
    }

    #[test]
    fn status_numeric_pairs_extracted() {
        let values = status_values("cycles=123 overruns=0 lat_p99_us=12.5 mode=run Bad=1 x=nan");
        let expected = vec![
            ("cycles".to_owned(), 123.0),
            ("overruns".to_owned(), 0.0),
            ("lat_p99_us".to_owned(), 12.5),
        ];
        assert_eq!(values, expected);
    }

    #[test]
    fn status_keys_capped() {
        let text: String = (0..40).map(|i| format!("k{i}={i} ")).collect();
        assert_eq!(status_values(&text).len(), STATUS_KEYS_MAX);
    }

    #[test]
    fn status_duplicate_key_first_wins() {
        assert_eq!(status_values("a=1 a=2"), vec![("a".to_owned(), 1.0)]);
    }
}
