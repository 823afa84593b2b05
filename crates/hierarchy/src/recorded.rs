//! Recorded video of a lower node's camera, fetched across the link when someone plays it back:
//! from the temporary cache when it holds the answer, else from the lower node (counted against
//! the link's budget at the recording's bitrate × speed) and streamed through while it is
//! written into the cache for the next viewer.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use tracing::warn;

use crate::cache::{Cache, Cached};
use crate::client::{BODY_SILENCE, Call, ClientError, next_chunk};
use crate::link::Link;

/// Headers of a lower node's recorded answer that are passed on (and kept with a cache entry).
const PASSED_HEADERS: [&str; 12] = [
    "content-type",
    "content-length",
    "content-range",
    "etag",
    "accept-ranges",
    "content-disposition",
    "x-sharpeye-first-frame",
    "x-sharpeye-end",
    "x-sharpeye-gaps",
    "x-sharpeye-truncated",
    "x-sharpeye-plays-for-ms",
    "x-sharpeye-frame-time",
];

/// A request for recorded video.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Path and query on the lower node (`/api/v1/cameras/{id}/playback.mp4?...`).
    pub path: String,
    /// The client's `Range`, if any.
    pub range: Option<String>,
    /// A `HEAD` (headers only; never cached).
    pub head: bool,
    /// The user it is for.
    pub who: String,
    /// The answer will not change (a range wholly in the past): it may be cached.
    pub cacheable: bool,
    /// What the transfer needs of the link, kbit/s, when its length is not known in advance.
    pub kbps: u64,
    /// How long the answer plays, at its speed (a playback's range ÷ speed), when known: the
    /// transfer then needs the answer's length over this, once the lower node says its length.
    pub plays_for: Option<std::time::Duration>,
}

/// An answer.
pub enum Recorded {
    /// A cached entry: a whole file (`status` 200) the caller serves any range of, or one
    /// range's answer (`status` 206) replayed as it came.
    Cached {
        /// The entry.
        entry: Cached,
        /// 200 or 206.
        status: u16,
    },
    /// Streamed from the lower node as it arrives.
    Streamed {
        /// Its status.
        status: u16,
        /// Its headers.
        headers: Vec<(String, String)>,
        /// Its body.
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

/// Why recorded video could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    /// The link has no room.
    #[error(transparent)]
    Budget(#[from] crate::budget::LinkRefusal),
    /// The lower node failed or refused.
    #[error(transparent)]
    Lower(#[from] ClientError),
}

fn status_of(meta: &crate::cache::EntryMeta) -> u16 {
    if meta.headers.iter().any(|(k, _)| k == "content-range") {
        206
    } else {
        200
    }
}

/// Fetches `req` of `link`'s lower node through `cache`.
pub async fn fetch(
    link: &Arc<Link>,
    cache: Option<&Arc<Cache>>,
    req: RecordedRequest,
) -> Result<Recorded, RecordedError> {
    let whole_key = crate::cache::key(&[link.id(), &req.path]);
    let range_key = req
        .range
        .as_deref()
        .map(|r| crate::cache::key(&[link.id(), &req.path, r]));
    if let (Some(cache), false) = (cache, req.head) {
        // A whole file serves any range of it; else an earlier answer to this very range.
        for k in std::iter::once(&whole_key).chain(range_key.as_ref()) {
            if let Some(entry) = cache.get(k) {
                let status = status_of(&entry.meta);
                return Ok(Recorded::Cached { entry, status });
            }
        }
    }
    let mut call = Call::get(req.path.clone(), Some(&req.who));
    if req.head {
        call.method = Method::HEAD;
    }
    // A range from the start is fetched whole: it is what a player asks first, and a whole
    // file in the cache answers every later range.
    let from_start = req
        .range
        .as_deref()
        .is_none_or(|r| r.trim().trim_start_matches("bytes=").starts_with("0-"));
    if let (Some(r), false) = (&req.range, from_start)
        && let Ok(v) = HeaderValue::from_str(r)
    {
        call.headers.push((HeaderName::from_static("range"), v));
    }
    let resp = link.client().send(call).await?;
    let status = resp.status().as_u16();
    // The recording's own bitrate × speed, from its length, when both are known; else the
    // estimate. Admitted before any of the body crosses.
    let length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // An answer that says how long it plays (an HLS segment) is its own measure.
    let plays_for = req.plays_for.or_else(|| {
        resp.headers()
            .get("x-sharpeye-plays-for-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis)
    });
    let kbps = match (length, plays_for) {
        (Some(len), Some(d)) if !d.is_zero() => (len * 8 / 1000).saturating_mul(1000) / (d.as_millis().max(1) as u64),
        _ => req.kbps,
    };
    let transfer = link.admit_transfer(kbps.max(1))?;
    let headers: Vec<(String, String)> = PASSED_HEADERS
        .iter()
        .filter_map(|h| {
            resp.headers().get(*h).and_then(|v| v.to_str().ok()).map(|v| {
                (
                    (*h).to_owned(),
                    v.chars().filter(|c| !c.is_control()).take(2000).collect(),
                )
            })
        })
        .collect();
    let mut body = resp.into_body();
    if req.head {
        link.transfer_done(&transfer);
        return Ok(Recorded::Streamed {
            status,
            headers,
            body: Box::pin(futures::stream::empty()),
        });
    }
    let key = if from_start {
        whole_key
    } else {
        range_key.unwrap_or(whole_key)
    };
    let cache = cache.filter(|_| req.cacheable).cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let link = link.clone();
    let kept = headers.clone();
    tokio::spawn(async move {
        let mut fill = cache.as_ref().and_then(|c| c.fill(&key).ok());
        let mut complete = false;
        let mut client_gone = false;
        let mut pacer = crate::pacer::Pacer::new(std::time::Instant::now());
        loop {
            match next_chunk(&mut body, BODY_SILENCE).await {
                Ok(Some(chunk)) => {
                    link.crossed(&transfer, chunk.len() as u64);
                    // Not reading on holds the lower node back through TCP: the transfer uses
                    // its admitted rate plus what the budget has spare, never more.
                    let wait = pacer.sent(
                        std::time::Instant::now(),
                        chunk.len() as u64,
                        link.transfer_kbps(&transfer),
                    );
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    if let Some(f) = fill.as_mut()
                        && let Err(e) = f.write(&chunk)
                    {
                        warn!("{e}");
                        fill = None;
                    }
                    if !client_gone && tx.send(Ok(chunk)).await.is_err() {
                        client_gone = true;
                        // Only worth fetching on for the cache.
                        if fill.is_none() {
                            break;
                        }
                    }
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(std::io::Error::other(format!("lower node {}: {e}", link.id()))))
                        .await;
                    break;
                }
            }
        }
        link.transfer_done(&transfer);
        if let (true, Some(f)) = (complete, fill) {
            let expected = kept
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse::<u64>().ok());
            if expected.is_none_or(|n| n == f.len())
                && let Err(e) = f.finish(kept)
            {
                warn!("{e}");
            }
        }
    });
    Ok(Recorded::Streamed {
        status,
        headers,
        body: Box::pin(tokio_stream_from(rx)),
    })
}

/// The receiving end of a channel as a stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
