//! Serving a file assembled from pieces (`media::progressive::VirtualMp4`, or a plain file) with
//! HTTP range semantics: exact `Content-Length`, single and suffix `Range`, `If-Range`, strong
//! `ETag`, `HEAD` without touching the disk, 416 with `Content-Range: bytes */len`.
//!
//! Multiple ranges in one request are answered with the whole file (RFC 9110 allows it; players
//! never ask for them). The body is produced by a blocking thread reading the source files in
//! 256 KiB chunks into a small bounded channel, so memory per download stays constant whatever
//! the file's size and a slow client slows only its own reader.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use media::progressive::{Piece, VirtualMp4};

use crate::error::ApiError;

const CHUNK: u64 = 256 << 10;
/// Range headers longer than this are refused: no player sends them, attackers do.
const MAX_RANGE_HEADER: usize = 1024;

/// Something servable: a virtual file and the source files its parts refer to.
#[derive(Clone)]
pub struct Servable {
    /// The layout.
    pub file: Arc<VirtualMp4>,
    /// Source files indexed by `Part::source`.
    pub sources: Arc<Vec<PathBuf>>,
    /// Strong validator (without quotes).
    pub etag: String,
    /// Content type.
    pub content_type: &'static str,
}

/// The byte range a request asks for, after `If-Range` and validation.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// All of it (no Range, a stale If-Range, several ranges, or an unparseable header).
    Full,
    /// `[start, end)`.
    Partial(u64, u64),
    /// Nothing of it can be served.
    Unsatisfiable,
}

/// Interprets `Range` and `If-Range` for a file of `len` bytes with validator `etag`.
pub fn wanted(headers: &HeaderMap, len: u64, etag: &str) -> Result<Wanted, ApiError> {
    let Some(range) = headers.get(header::RANGE) else {
        return Ok(Wanted::Full);
    };
    if range.len() > MAX_RANGE_HEADER {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("Range header longer than {MAX_RANGE_HEADER} bytes"),
        ));
    }
    if let Some(cond) = headers.get(header::IF_RANGE) {
        let fresh = cond.to_str().is_ok_and(|c| c.trim() == format!("\"{etag}\""));
        if !fresh {
            return Ok(Wanted::Full);
        }
    }
    let Some(spec) = range.to_str().ok().and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Ok(Wanted::Full);
    };
    if spec.contains(',') {
        return Ok(Wanted::Full);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(Wanted::Full);
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let w = match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(b) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) if len > 0 => Wanted::Partial(len.saturating_sub(n), len),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Full,
        },
        // bytes=A-
        (false, true) => match parse(a) {
            Some(s) if s < len => Wanted::Partial(s, len),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Full,
        },
        // bytes=A-B (inclusive)
        (false, false) => match (parse(a), parse(b)) {
            (Some(s), Some(e)) if s > e => Wanted::Full,
            (Some(s), Some(_)) if s >= len => Wanted::Unsatisfiable,
            (Some(s), Some(e)) => Wanted::Partial(s, e.saturating_add(1).min(len)),
            _ => Wanted::Full,
        },
        (true, true) => Wanted::Full,
    };
    Ok(w)
}

/// The response for `method` and `headers` over `s`, with `extra` headers added.
pub fn respond(
    s: Servable,
    method: &Method,
    headers: &HeaderMap,
    extra: Vec<(&'static str, String)>,
) -> Result<Response, ApiError> {
    let len = s.file.len;
    let w = wanted(headers, len, &s.etag)?;
    let (status, start, end) = match w {
        Wanted::Full => (StatusCode::OK, 0, len),
        Wanted::Partial(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
        Wanted::Unsatisfiable => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file is {len} bytes long"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        stream(s.file.clone(), s.sources.clone(), start, end)
    };
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, s.content_type)
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{}\"", s.etag))
        .header(header::CACHE_CONTROL, "private, max-age=3600");
    if status == StatusCode::PARTIAL_CONTENT {
        r = r.header(header::CONTENT_RANGE, format!("bytes {}-{}/{len}", start, end - 1));
    }
    for (k, v) in extra {
        r = r.header(k, v);
    }
    r.body(body).map_err(ApiError::internal)
}

/// Streams bytes `[start, end)` of the file from a blocking reader thread.
fn stream(file: Arc<VirtualMp4>, sources: Arc<Vec<PathBuf>>, start: u64, end: u64) -> Body {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut open: Option<(u32, File)> = None;
        for piece in file.pieces(start, end) {
            match piece {
                Piece::Head(b) => {
                    if tx.blocking_send(Ok(b)).is_err() {
                        return;
                    }
                }
                Piece::File(p) => {
                    if open.as_ref().is_none_or(|(s, _)| *s != p.source) {
                        let path = sources.get(p.source as usize).cloned().unwrap_or_default();
                        match File::open(&path) {
                            Ok(f) => open = Some((p.source, f)),
                            Err(e) => {
                                tracing::error!(file = %path.display(), "cannot read for playback: {e}");
                                let _ = tx.blocking_send(Err(e));
                                return;
                            }
                        }
                    }
                    let Some((_, f)) = open.as_ref() else { return };
                    let mut done = 0;
                    while done < p.len {
                        let n = CHUNK.min(p.len - done) as usize;
                        let mut buf = vec![0u8; n];
                        if let Err(e) = f.read_exact_at(&mut buf, p.offset + done) {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                        done += n as u64;
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(range: &str, if_range: Option<&str>) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(v) = if_range {
            m.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn range_forms() {
        let w = |r: &str| wanted(&h(r, None), 1000, "e").unwrap();
        assert_eq!(w("bytes=0-99"), Wanted::Partial(0, 100));
        assert_eq!(w("bytes=900-"), Wanted::Partial(900, 1000));
        assert_eq!(w("bytes=-100"), Wanted::Partial(900, 1000));
        assert_eq!(w("bytes=-5000"), Wanted::Partial(0, 1000));
        assert_eq!(w("bytes=990-5000"), Wanted::Partial(990, 1000));
        assert_eq!(w("bytes=1000-"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=-0"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=5-1"), Wanted::Full);
        assert_eq!(w("bytes=0-1,5-9"), Wanted::Full);
        assert_eq!(w("items=0-1"), Wanted::Full);
        assert_eq!(w("bytes=x-y"), Wanted::Full);
        assert_eq!(wanted(&HeaderMap::new(), 1000, "e").unwrap(), Wanted::Full);
        let long = format!("bytes={}", "0-1,".repeat(400));
        assert_eq!(
            wanted(&h(&long, None), 1000, "e").unwrap_err().status,
            StatusCode::RANGE_NOT_SATISFIABLE
        );
    }

    #[test]
    fn if_range_with_a_stale_etag_gets_everything() {
        assert_eq!(
            wanted(&h("bytes=0-9", Some("\"e\"")), 1000, "e").unwrap(),
            Wanted::Partial(0, 10)
        );
        assert_eq!(
            wanted(&h("bytes=0-9", Some("\"old\"")), 1000, "e").unwrap(),
            Wanted::Full
        );
    }
}
