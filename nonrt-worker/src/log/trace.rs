//! W3C trace context (`traceparent`) parsing and id generation.
//!
//! Format (W3C Trace Context, level 1): `<version>-<trace-id>-<parent-id>-<flags>`
//! with 2, 32, 16 and 2 lowercase hex digits. All-zero ids are invalid.
//! Only version `00` is accepted, like in the other MXRC binaries, although
//! the W3C text lets a parser read the known fields of a later version.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};

/// Source of random bytes for new trace and span ids.
const RANDOM_SOURCE: &str = "/dev/urandom";

/// 16-byte trace id, printed as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 16]);

/// 8-byte span id, printed as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanId([u8; 8]);

/// Parsed `traceparent` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

/// Reason a `traceparent` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTraceParent {
    pub value: String,
    pub reason: &'static str,
}

/// Accepted `traceparent` format, for error messages.
pub const TRACEPARENT_FORMAT: &str =
    "00-<32 hex trace id>-<16 hex span id>-<2 hex flags> with lowercase hex and non-zero ids";

impl fmt::Display for InvalidTraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid traceparent {:?}: {}; expected {TRACEPARENT_FORMAT}",
            self.value, self.reason
        )
    }
}

impl std::error::Error for InvalidTraceParent {}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

impl TraceId {
    /// Generates a random, non-zero trace id.
    pub fn generate() -> io::Result<TraceId> {
        let mut bytes = [0u8; 16];
        fill_random_nonzero(&mut bytes)?;
        Ok(TraceId(bytes))
    }
}

impl SpanId {
    /// Generates a random, non-zero span id.
    pub fn generate() -> io::Result<SpanId> {
        let mut bytes = [0u8; 8];
        fill_random_nonzero(&mut bytes)?;
        Ok(SpanId(bytes))
    }
}

/// Fills `bytes` from /dev/urandom and retries while the result is all zero,
/// because an all-zero id is invalid.
fn fill_random_nonzero(bytes: &mut [u8]) -> io::Result<()> {
    let mut source = File::open(RANDOM_SOURCE)
        .map_err(|e| io::Error::new(e.kind(), format!("failed to open {RANDOM_SOURCE}: {e}")))?;
    loop {
        source.read_exact(bytes).map_err(|e| {
            io::Error::new(e.kind(), format!("failed to read {RANDOM_SOURCE}: {e}"))
        })?;
        if bytes.iter().any(|&b| b != 0) {
            return Ok(());
        }
    }
}

impl TraceParent {
    /// Parses and validates a `traceparent` header value.
    pub fn parse(value: &str) -> Result<TraceParent, InvalidTraceParent> {
        let reject = |reason| InvalidTraceParent {
            value: value.to_owned(),
            reason,
        };

        let fields: Vec<&str> = value.split('-').collect();
        let [version, trace_id, parent_id, flags] = fields[..] else {
            return Err(reject("expected 4 fields separated by '-'"));
        };

        if parse_hex_byte(version).is_none() {
            return Err(reject("version is not 2 lowercase hex digits"));
        }
        if version == "ff" {
            return Err(reject("version ff is invalid"));
        }
        if version != "00" {
            return Err(reject("unsupported version, only 00 is accepted"));
        }

        let mut trace_bytes = [0u8; 16];
        decode_hex(trace_id, &mut trace_bytes)
            .ok_or_else(|| reject("trace id is not 32 lowercase hex digits"))?;
        if trace_bytes.iter().all(|&b| b == 0) {
            return Err(reject("trace id is all zeros"));
        }

        let mut parent_bytes = [0u8; 8];
        decode_hex(parent_id, &mut parent_bytes)
            .ok_or_else(|| reject("parent span id is not 16 lowercase hex digits"))?;
        if parent_bytes.iter().all(|&b| b == 0) {
            return Err(reject("parent span id is all zeros"));
        }

        let flags =
            parse_hex_byte(flags).ok_or_else(|| reject("flags are not 2 lowercase hex digits"))?;

        Ok(TraceParent {
            trace_id: TraceId(trace_bytes),
            parent_id: SpanId(parent_bytes),
            flags,
        })
    }
}

fn parse_hex_byte(text: &str) -> Option<u8> {
    let mut byte = [0u8; 1];
    decode_hex(text, &mut byte)?;
    Some(byte[0])
}

/// Decodes exactly `2 * out.len()` lowercase hex digits into `out`.
fn decode_hex(text: &str, out: &mut [u8]) -> Option<()> {
    let digits = text.as_bytes();
    if digits.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(())
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn reason(value: &str) -> &'static str {
        TraceParent::parse(value).unwrap_err().reason
    }

    #[test]
    fn valid_traceparent_parses() {
        let parsed = TraceParent::parse(VALID).unwrap();
        assert_eq!(
            parsed.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parsed.flags, 0x01);
    }

    #[test]
    fn unsampled_flags_parse() {
        let parsed =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert_eq!(parsed.flags, 0);
    }

    #[test]
    fn all_zero_trace_id_rejected() {
        assert_eq!(
            reason("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            "trace id is all zeros"
        );
    }

    #[test]
    fn all_zero_parent_id_rejected() {
        assert_eq!(
            reason("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            "parent span id is all zeros"
        );
    }

    #[test]
    fn uppercase_hex_rejected() {
        assert_eq!(
            reason("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            "trace id is not 32 lowercase hex digits"
        );
    }

    #[test]
    fn short_trace_id_rejected() {
        assert_eq!(
            reason("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"),
            "trace id is not 32 lowercase hex digits"
        );
    }

    #[test]
    fn short_parent_id_rejected() {
        assert_eq!(
            reason("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01"),
            "parent span id is not 16 lowercase hex digits"
        );
    }

    #[test]
    fn version_ff_rejected() {
        assert_eq!(
            reason("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "version ff is invalid"
        );
    }

    #[test]
    fn non_hex_version_rejected() {
        assert_eq!(
            reason("0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "version is not 2 lowercase hex digits"
        );
    }

    #[test]
    fn bad_flags_rejected() {
        assert_eq!(
            reason("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
            "flags are not 2 lowercase hex digits"
        );
    }

    #[test]
    fn extra_field_rejected() {
        assert_eq!(
            reason("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            "expected 4 fields separated by '-'"
        );
    }

    #[test]
    fn later_version_rejected() {
        assert_eq!(
            reason("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "unsupported version, only 00 is accepted"
        );
    }

    #[test]
    fn empty_value_rejected() {
        assert_eq!(reason(""), "expected 4 fields separated by '-'");
    }

    #[test]
    fn missing_flags_rejected() {
        assert_eq!(
            reason("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
            "expected 4 fields separated by '-'"
        );
    }

    #[test]
    fn error_message_quotes_value() {
        let err = TraceParent::parse("garbage").unwrap_err().to_string();
        assert!(err.contains("\"garbage\""), "{err}");
    }

    #[test]
    fn generated_ids_have_expected_length() {
        let trace_id = TraceId::generate().unwrap().to_string();
        let span_id = SpanId::generate().unwrap().to_string();
        assert_eq!(trace_id.len(), 32);
        assert_eq!(span_id.len(), 16);
        assert!(trace_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(span_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(TraceId::generate().unwrap(), TraceId::generate().unwrap());
        assert_ne!(SpanId::generate().unwrap(), SpanId::generate().unwrap());
    }

    #[test]
    fn generated_trace_roundtrips_through_parser() {
        let trace_id = TraceId::generate().unwrap();
        let span_id = SpanId::generate().unwrap();
        let header = format!("00-{trace_id}-{span_id}-01");
        let parsed = TraceParent::parse(&header).unwrap();
        assert_eq!(parsed.trace_id, trace_id);
        assert_eq!(parsed.parent_id, span_id);
    }
}
