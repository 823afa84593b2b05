//! Serving what a lower node answered for one of its cameras: from the temporary cache (any
//! range of a whole answer, with the lower node's headers) or streamed through as it arrives.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use media::progressive::{Part, VirtualMp4};

use crate::error::ApiError;
use crate::ranged::{Servable, respond};
use crate::remote_access::RemoteBody;

/// How long a recorded answer plays, in milliseconds (an HLS segment's duration): the upper
/// node fetching it admits it against its link at its length over this.
pub const PLAYS_FOR_HEADER: &str = "x-sharpeye-plays-for-ms";

/// Headers of the lower node's answer passed on to the client (beyond type, length, range and
/// validator, which are the answer's own).
const EXTRA: [&str; 7] = [
    "content-disposition",
    "x-sharpeye-frame-time",
    "x-sharpeye-first-frame",
    "x-sharpeye-end",
    "x-sharpeye-gaps",
    "x-sharpeye-truncated",
    PLAYS_FOR_HEADER,
];

/// Content types a relayed answer may have; anything else is sent as `fallback`.
fn content_type(headers: &[(String, String)], fallback: &'static str) -> &'static str {
    let given = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    [
        "video/mp4",
        "application/zip",
        "application/vnd.apple.mpegurl",
        "application/json",
        "image/jpeg",
    ]
    .into_iter()
    .find(|t| given.is_some_and(|g| g.starts_with(t)))
    .unwrap_or(fallback)
}

fn extra(headers: &[(String, String)]) -> Vec<(&'static str, String)> {
    EXTRA
        .into_iter()
        .filter_map(|name| headers.iter().find(|(k, _)| k == name).map(|(_, v)| (name, v.clone())))
        .collect()
}

/// The response to `method` with the client's `request` headers, from `body`.
pub fn serve(
    body: RemoteBody,
    method: &Method,
    request: &HeaderMap,
    fallback: &'static str,
) -> Result<Response, ApiError> {
    match body {
        RemoteBody::File {
            path,
            len,
            headers,
            whole: true,
        } => {
            let etag = headers
                .iter()
                .find(|(k, _)| k == "etag")
                .map(|(_, v)| v.trim_matches('"').to_owned())
                .unwrap_or_else(|| format!("cached-{len}"));
            respond(
                Servable {
                    file: Arc::new(VirtualMp4 {
                        head: bytes::Bytes::new(),
                        parts: vec![Part {
                            source: 0,
                            offset: 0,
                            len,
                        }],
                        len,
                        samples: 0,
                    }),
                    sources: Arc::new(vec![path]),
                    etag,
                    content_type: content_type(&headers, fallback),
                },
                method,
                request,
                extra(&headers),
            )
        }
        RemoteBody::File { path, headers, .. } => {
            // One range's answer, replayed as the lower node sent it.
            let data = std::fs::read(&path).map_err(ApiError::internal)?;
            answer(StatusCode::PARTIAL_CONTENT, &headers, fallback, Body::from(data))
        }
        RemoteBody::Stream { status, headers, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from_stream(body)
            };
            answer(status, &headers, fallback, body)
        }
    }
}

fn answer(
    status: StatusCode,
    headers: &[(String, String)],
    fallback: &'static str,
    body: Body,
) -> Result<Response, ApiError> {
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(headers, fallback))
        .header(header::CACHE_CONTROL, "private, max-age=3600");
    for name in ["content-length", "content-range", "etag", "accept-ranges"]
        .into_iter()
        .chain(EXTRA)
    {
        if let Some((_, v)) = headers.iter().find(|(k, _)| k == name)
            && let Ok(v) = HeaderValue::from_str(v)
        {
            r = r.header(name, v);
        }
    }
    r.body(body).map_err(ApiError::internal)
}

/// The whole of a short answer (a playlist), at most `max` bytes, as text.
pub async fn text(body: RemoteBody, max: usize) -> Result<String, ApiError> {
    use futures::StreamExt;
    let bytes = match body {
        RemoteBody::File { path, .. } => std::fs::read(path).map_err(ApiError::internal)?,
        RemoteBody::Stream { mut body, .. } => {
            let mut out = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "lower_error", e.to_string()))?;
                if out.len() + chunk.len() > max {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "lower_error",
                        format!("the lower node's answer is larger than {max} bytes"),
                    ));
                }
                out.extend_from_slice(&chunk);
            }
            out
        }
    };
    String::from_utf8(bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "lower_error",
            "the lower node's playlist is not UTF-8",
        )
    })
}

/// A lower node's playlist with every `token=` parameter replaced by `token` (this node's).
pub fn retoken(playlist: &str, token: &str) -> String {
    let mut out = String::with_capacity(playlist.len());
    for line in playlist.lines() {
        let mut rest = line;
        while let Some(i) = rest.find("token=") {
            out.push_str(&rest[..i]);
            out.push_str("token=");
            out.push_str(token);
            let after = &rest[i + 6..];
            let end = after.find(['&', '"']).unwrap_or(after.len());
            rest = &after[end..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_tokens_are_replaced_everywhere() {
        let lower = "#EXTM3U\n#EXT-X-MAP:URI=\"segments/1.mp4?t=5&stream=main&token=LOWER\",BYTERANGE=\"10@0\"\n#EXTINF:4.000,\nsegments/1.mp4?t=5&stream=main&token=LOWER\n";
        let upper = retoken(lower, "UP");
        assert!(!upper.contains("LOWER"));
        assert_eq!(upper.matches("token=UP").count(), 2);
        assert!(upper.contains("token=UP\",BYTERANGE"));
    }
}
