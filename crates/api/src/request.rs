//! What handlers read from a request, checked the same way everywhere: the query string, a
//! time window, the stream, the speed, and a JSON body.

use std::collections::HashMap;

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use media::{StreamId, StreamKind, WallTime};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::time;

/// Largest request body the API accepts (JSON requests are small).
pub const MAX_BODY: usize = 64 * 1024;

/// A query string as the handler extracted it.
pub type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The query's parameters, or a 400 saying what is malformed.
pub fn query(q: QueryMap) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(e.body_text()))
}

/// A required time parameter.
pub fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    q.get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("missing query parameter {name} (an RFC 3339 time)")))
}

/// A validated `start`/`end` window no longer than `max_us`.
pub fn window(q: &HashMap<String, String>, max_us: i64) -> Result<(WallTime, WallTime), ApiError> {
    let start = time::parse("start", param(q, "start")?)?;
    let end = time::parse("end", param(q, "end")?)?;
    if end <= start {
        return Err(ApiError::bad_request("end must be after start"));
    }
    if end.micros_since(start) > max_us {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "range_too_long",
            format!(
                "the range is longer than the maximum of {} hours; split it",
                max_us / 3_600_000_000
            ),
        ));
    }
    Ok((start, end))
}

/// A `start`/`end` window given as strings in a JSON body.
pub fn window_of(start: &str, end: &str, max_us: i64) -> Result<(WallTime, WallTime), ApiError> {
    let q = HashMap::from([
        ("start".to_owned(), start.to_owned()),
        ("end".to_owned(), end.to_owned()),
    ]);
    window(&q, max_us)
}

/// `stream` (`main`, the default, or `sub`) of `camera`.
pub fn stream_of(q: &HashMap<String, String>, camera: &str) -> Result<StreamId, ApiError> {
    kind_of(q.get("stream").map(String::as_str)).map(|kind| StreamId::new(camera, kind))
}

/// A stream kind as a request names it (absent: main).
pub fn kind_of(name: Option<&str>) -> Result<StreamKind, ApiError> {
    match name {
        None => Ok(StreamKind::Main),
        Some(s) => StreamKind::parse(s).ok_or_else(|| ApiError::bad_request("stream: expected main, sub or h264")),
    }
}

/// `speed`: 1 (the default), 2, 4, 8 or 16.
pub fn speed_of(q: &HashMap<String, String>) -> Result<u32, ApiError> {
    match q.get("speed").map(String::as_str) {
        None | Some("1") => Ok(1),
        Some("2") => Ok(2),
        Some("4") => Ok(4),
        Some("8") => Ok(8),
        Some("16") => Ok(16),
        Some(other) => Err(ApiError::bad_request(format!(
            "speed: {other:?} is not one of 1, 2, 4, 8, 16"
        ))),
    }
}

/// A JSON body, or the error that says what was wrong: 413 for a body over [`MAX_BODY`], 415
/// for a wrong content type, 400 naming `expected` (the body's shape) otherwise.
pub fn json_body<T: DeserializeOwned>(body: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, ApiError> {
    body.map(|Json(t)| t).map_err(|e| match e.status().as_u16() {
        413 => ApiError::new(
            e.status(),
            "payload_too_large",
            format!("the body is larger than {MAX_BODY} bytes"),
        ),
        415 => ApiError::new(
            e.status(),
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ),
        _ => ApiError::bad_request(format!("expected a JSON body {expected}: {}", e.body_text())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn windows_are_checked() {
        let day = 86_400_000_000;
        let ok = window(
            &q(&[("start", "2026-01-01T00:00:00Z"), ("end", "2026-01-01T01:00:00Z")]),
            day,
        )
        .unwrap();
        assert_eq!(ok.1.micros_since(ok.0), 3_600_000_000);
        let e = window(
            &q(&[("start", "2026-01-01T01:00:00Z"), ("end", "2026-01-01T00:00:00Z")]),
            day,
        )
        .unwrap_err();
        assert_eq!(e.message, "end must be after start");
        let e = window(
            &q(&[("start", "2026-01-01T00:00:00Z"), ("end", "2026-01-03T00:00:00Z")]),
            day,
        )
        .unwrap_err();
        assert_eq!(e.code, "range_too_long");
        let e = window(&q(&[("end", "2026-01-01T00:00:00Z")]), day).unwrap_err();
        assert!(e.message.starts_with("missing query parameter start"), "{}", e.message);
        assert!(window_of("yesterday", "2026-01-01T00:00:00Z", day).is_err());
    }

    #[test]
    fn streams_and_speeds() {
        assert_eq!(stream_of(&q(&[]), "c").unwrap(), StreamId::main("c"));
        assert_eq!(
            stream_of(&q(&[("stream", "sub")]), "c").unwrap(),
            StreamId::new("c", StreamKind::Sub)
        );
        assert!(stream_of(&q(&[("stream", "third")]), "c").is_err());
        assert_eq!(speed_of(&q(&[("speed", "8")])).unwrap(), 8);
        assert!(speed_of(&q(&[("speed", "3")])).is_err());
        assert!(speed_of(&q(&[("speed", "-1")])).is_err());
    }
}
