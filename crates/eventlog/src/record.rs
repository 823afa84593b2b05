//! One event as the log keeps it: `{"seq":N,"at_us":T,"kind":"...","camera":...,"data":{...}}`
//! on one line. The line is kept beside the parsed event so that SSE and webhooks send it
//! without serializing it again for every listener.

use serde_json::Value;

use crate::EventLogError;

/// Longest line accepted when reading the log back (an event is a few hundred bytes; a damaged
/// file must not make the node read gigabytes into one string).
pub const MAX_LINE: usize = 256 * 1024;

/// A numbered event.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// Its sequence number: 1, 2, 3, ... for the node's whole life, across restarts.
    pub seq: u64,
    /// When it happened (microseconds since the epoch).
    pub at_us: i64,
    /// `camera.offline`, `hold.placed`, ...
    pub kind: String,
    /// The camera concerned, if any.
    pub camera: Option<String>,
    /// Its fields.
    pub data: Value,
    /// The JSON line (without its newline).
    pub line: String,
}

impl Stored {
    /// The event `seq`, with its line.
    pub fn new(seq: u64, at_us: i64, kind: &str, camera: Option<&str>, data: Value) -> Stored {
        let line = serde_json::json!({
            "seq": seq,
            "at_us": at_us,
            "kind": kind,
            "camera": camera,
            "data": data,
        })
        .to_string();
        Stored {
            seq,
            at_us,
            kind: kind.to_owned(),
            camera: camera.map(str::to_owned),
            data,
            line,
        }
    }

    /// Reads a line of the log; every field is checked.
    pub fn parse(line: &str) -> Result<Stored, EventLogError> {
        if line.len() > MAX_LINE {
            return Err(EventLogError::Line(format!(
                "{} bytes, more than {MAX_LINE}",
                line.len()
            )));
        }
        let v: Value = serde_json::from_str(line).map_err(|e| EventLogError::Line(format!("not JSON: {e}")))?;
        let seq = v["seq"]
            .as_u64()
            .filter(|s| *s > 0 && *s < 1 << 62)
            .ok_or_else(|| EventLogError::Line("seq: expected a positive integer".into()))?;
        let at_us = v["at_us"]
            .as_i64()
            .ok_or_else(|| EventLogError::Line("at_us: expected an integer".into()))?;
        let kind = v["kind"]
            .as_str()
            .filter(|k| !k.is_empty() && k.len() <= 64)
            .ok_or_else(|| EventLogError::Line("kind: expected a name".into()))?
            .to_owned();
        let camera = match &v["camera"] {
            Value::Null => None,
            Value::String(c) => Some(c.clone()),
            _ => return Err(EventLogError::Line("camera: expected a string or null".into())),
        };
        Ok(Stored {
            seq,
            at_us,
            kind,
            camera,
            data: v["data"].clone(),
            line: line.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_bad_ones_are_refused() {
        let e = Stored::new(
            7,
            1_700_000_000_000_000,
            "hold.placed",
            Some("cam0"),
            serde_json::json!({"hold": "h1"}),
        );
        assert_eq!(Stored::parse(&e.line).unwrap(), e);
        let none = Stored::new(8, 1, "disk.alarm", None, Value::Null);
        assert_eq!(Stored::parse(&none.line).unwrap(), none);
        for bad in [
            "",
            "{",
            "[]",
            r#"{"seq":0,"at_us":1,"kind":"x"}"#,
            r#"{"seq":-1,"at_us":1,"kind":"x"}"#,
            r#"{"seq":1,"at_us":"x","kind":"x"}"#,
            r#"{"seq":1,"at_us":1,"kind":""}"#,
            r#"{"seq":1,"at_us":1,"kind":"x","camera":5}"#,
        ] {
            assert!(Stored::parse(bad).is_err(), "{bad}");
        }
        assert!(Stored::parse(&"x".repeat(MAX_LINE + 1)).is_err());
    }
}
