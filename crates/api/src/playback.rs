//! Recorded video out: `playback.mp4` (progressive MP4 of any range, at any speed), HLS
//! (`playback.m3u8` + segment byte ranges) and media tokens for clients that cannot send
//! headers.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use auth::MediaAction;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::WallTime;
use media::progressive::{Part, VirtualMp4};
use serde::Deserialize;
use serde_json::{Value, json};
use store::playback::{PlanError, PlaybackPlan, PlaybackRequest, plan_hls};

use crate::access::{Caller, ClientIp, media_caller};
use crate::error::ApiError;
use crate::movies::Movie;
use crate::ranged::{Servable, respond};
use crate::request::{QueryMap, json_body, query, speed_of, stream_of, window};
use crate::state::AppState;
use crate::time;

/// A playback request's query, its caller, and the media token it came with.
type Authorized = (HashMap<String, String>, Caller, Option<String>);

/// The common start of every playback handler: the query, and authorization for playback of
/// this camera (returning the caller and the media token used, if any). Authorization comes
/// first so that unauthenticated callers cannot probe which cameras exist.
fn playback_request(
    state: &AppState,
    headers: &HeaderMap,
    q: QueryMap,
    ip: ClientIp,
    camera: &str,
) -> Result<Authorized, ApiError> {
    let q = query(q)?;
    let (caller, token) = media_caller(state, headers, &q, ip, camera, MediaAction::Playback)?;
    Ok((q, caller, token))
}

fn nothing_recorded() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "nothing_recorded",
        "nothing is recorded in this range",
    )
}

/// Plans the movie for a request; in a cluster (unless `local`), over what every member
/// recorded of the range where this one's own recordings do not cover it: the other members'
/// segments are fetched first (`ClusterAccess::segments`), so a camera recorded by one member
/// until a failover and by another after plays as one file.
async fn plan_movie(state: &Arc<AppState>, req: PlaybackRequest, local: bool) -> Result<PlaybackPlan, ApiError> {
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let cluster = st.cluster.get().filter(|_| !local).map(|c| &**c);
        match crate::cluster::plan_over_members(cluster, &st.store, &st.samples, &req) {
            Ok((p, _)) => Ok(p),
            Err(PlanError::NothingRecorded) => Err(nothing_recorded()),
            Err(PlanError::Store(e)) => Err(ApiError::internal(e)),
        }
    })
    .await
    .map_err(ApiError::internal)?
}

/// Builds the movie of a plan, or takes it from the cache.
async fn build_movie(state: &Arc<AppState>, plan: PlaybackPlan) -> Result<Arc<Movie>, ApiError> {
    if let Some(m) = state.movies.get(&plan.etag) {
        return Ok(m);
    }
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let file = media::progressive::build(&plan.spec).map_err(ApiError::internal)?;
        let m = Arc::new(Movie {
            plan,
            file: Arc::new(file),
        });
        st.movies.put(m.clone());
        Ok(m)
    })
    .await
    .map_err(ApiError::internal)?
}

fn gaps_header(plan: &PlaybackPlan) -> String {
    plan.gaps
        .iter()
        .map(|(a, b)| format!("{}/{}", time::format(*a), time::format(*b)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET|HEAD /api/v1/cameras/{id}/playback.mp4?start=&end=[&speed=][&stream=]`.
pub async fn playback_mp4(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    ip: ClientIp,
    q: QueryMap,
) -> Result<Response, ApiError> {
    let (q, caller, _) = playback_request(&state, &headers, q, ip, &id)?;
    let (start, end) = window(&q, state.max_playback_us)?;
    if let Some(remote) = state.remote_for(&id) {
        return remote_playback(&state, remote, &caller, &id, &q, (start, end), &method, &headers).await;
    }
    match q.get("source").map(String::as_str) {
        None | Some("node") => {}
        Some("device") => return crate::devices::device_playback(&state, &caller, &id, &q, start, end).await,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "source {other:?}: expected \"node\" (this node's recordings, the default) or \"device\" (the GB/T 28181 device's)"
            )));
        }
    }
    let req = PlaybackRequest {
        stream: stream_of(&q, &id)?,
        start,
        end,
        speed: speed_of(&q)?,
    };
    let detail = json!({
        "stream": req.stream.kind().as_str(),
        "start": time::format(start),
        "end": time::format(end),
        "speed": req.speed,
    });
    let plan = plan_movie(&state, req, q.contains_key("local")).await?;
    // The audit entry is made durable while the movie is built: both must be done before the
    // first byte, and neither needs the other.
    let (m, audited) = tokio::join!(
        build_movie(&state, plan),
        state.audit_playback(&caller, &id, "mp4", detail)
    );
    audited?;
    let m = m?;
    let mut extra = vec![
        ("x-sharpeye-first-frame", time::format(m.plan.first)),
        ("x-sharpeye-end", time::format(m.plan.last)),
        (
            "content-disposition",
            format!("inline; filename=\"{id}_{}.mp4\"", start.as_micros() / 1_000_000),
        ),
    ];
    if !m.plan.gaps.is_empty() {
        extra.push(("x-sharpeye-gaps", gaps_header(&m.plan)));
    }
    if let Some(t) = &m.plan.truncated {
        extra.push(("x-sharpeye-truncated", t.clone()));
    }
    respond(
        Servable {
            file: m.file.clone(),
            sources: Arc::new(m.plan.sources.clone()),
            etag: m.plan.etag.clone(),
            content_type: "video/mp4",
        },
        &method,
        &headers,
        extra,
    )
}

/// How long after its end a range of a lower node's recording is taken as final (its last
/// fragments durable and indexed down there) and may be kept in the temporary cache.
pub(crate) const SETTLED_US: i64 = 60_000_000;

/// `playback.mp4` of a lower node's camera: audited here as a playback, fetched from below
/// (or the temporary cache) for the caller, served with Range as if it were recorded here.
#[allow(clippy::too_many_arguments, reason = "one call site; the handler's parts, passed on")]
async fn remote_playback(
    state: &AppState,
    remote: Arc<dyn crate::remote_access::RemoteAccess>,
    caller: &Caller,
    id: &str,
    q: &HashMap<String, String>,
    (start, end): (WallTime, WallTime),
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let stream = stream_of(q, id)?;
    let speed = speed_of(q)?;
    let mut path = format!(
        "/api/v1/cameras/{id}/playback.mp4?start={}&end={}&speed={speed}&stream={}",
        crate::time::query_time(start),
        crate::time::query_time(end),
        stream.kind().as_str()
    );
    let from_device = q.get("source").is_some_and(|s| s != "node");
    for k in ["source", "download", "scale"] {
        if let Some(v) = q.get(k) {
            // Passed on only when it is a plain word or number (the lower node checks it).
            if !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
                let _ = write!(path, "&{k}={v}");
            } else {
                return Err(ApiError::bad_request(format!("{k}: not a valid value")));
            }
        }
    }
    let detail = json!({
        "stream": stream.kind().as_str(),
        "start": time::format(start),
        "end": time::format(end),
        "speed": speed,
        "source": if from_device { "device" } else { "node" },
    });
    state.audit_playback(caller, id, "mp4", detail).await?;
    let body = remote
        .recorded(
            id,
            crate::remote_access::RemoteRequest {
                cacheable: !from_device && WallTime::now().micros_since(end) > SETTLED_US,
                speed,
                plays_for: Some(Duration::from_micros(
                    (end.micros_since(start).max(0) as u64) / u64::from(speed.max(1)),
                )),
                ..crate::remote_access::RemoteRequest::for_client(
                    path,
                    method,
                    headers,
                    caller.end_user(&state.node.id),
                )
            },
        )
        .await?;
    crate::relayed::serve(body, method, headers, "video/mp4")
}

/// Target length of an HLS segment: several fragments of one file.
const HLS_TARGET_TICKS: u64 = 4 * 90_000;

/// `GET /api/v1/cameras/{id}/playback.m3u8?start=&end=[&stream=]`: an HLS (fMP4) VOD playlist
/// whose segments are byte ranges of the segment files. Each file is its own timeline (it
/// starts at zero), so a discontinuity and a new map separate files.
pub async fn playback_m3u8(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ip: ClientIp,
    q: QueryMap,
) -> Result<Response, ApiError> {
    let (q, caller, token) = playback_request(&state, &headers, q, ip, &id)?;
    let (start, end) = window(&q, state.max_playback_us)?;
    let stream = stream_of(&q, &id)?;
    let ttl = Duration::from_secs((end.micros_since(start) / 1_000_000).max(0) as u64 + 3600);
    if let Some(remote) = state.remote_for(&id) {
        // The lower node's playlist, its segment URLs carrying a token of this node's: the
        // segments are fetched through here too.
        let token = token.unwrap_or_else(|| state.auth.sign_media(&caller.who, &id, MediaAction::Playback, ttl).0);
        let path = format!(
            "/api/v1/cameras/{id}/playback.m3u8?start={}&end={}&stream={}",
            crate::time::query_time(start),
            crate::time::query_time(end),
            stream.kind().as_str()
        );
        let detail =
            json!({ "stream": stream.kind().as_str(), "start": time::format(start), "end": time::format(end) });
        state.audit_playback(&caller, &id, "hls", detail).await?;
        let body = remote
            .recorded(
                &id,
                crate::remote_access::RemoteRequest {
                    path,
                    range: None,
                    head: false,
                    who: caller.end_user(&state.node.id),
                    cacheable: false,
                    speed: 1,
                    plays_for: None,
                },
            )
            .await?;
        let text = crate::relayed::text(body, 1 << 20).await?;
        let body = crate::relayed::retoken(&text, &token);
        return Ok((
            [
                (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                (header::CACHE_CONTROL, "private, no-cache"),
            ],
            body,
        )
            .into_response());
    }
    let st = state.clone();
    let s2 = stream.clone();
    let segments = tokio::task::spawn_blocking(move || st.store.segments_with_gops(&s2, start, end))
        .await
        .map_err(ApiError::internal)??;
    let records: Vec<store::SegmentRecord> = segments.into_iter().map(|(_, r)| r).collect();
    let files = plan_hls(&records, start, end, HLS_TARGET_TICKS);
    if files.is_empty() {
        return Err(nothing_recorded());
    }
    let token = token.unwrap_or_else(|| state.auth.sign_media(&caller.who, &id, MediaAction::Playback, ttl).0);

    let mut body = String::new();
    let mut entries = String::new();
    let mut max_secs: f64 = 1.0;
    for f in &files {
        let url = format!(
            "segments/{}.mp4?t={}&stream={}&token={token}",
            f.seq,
            f.start.as_micros(),
            stream.kind().as_str()
        );
        if f.discontinuity {
            entries.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(entries, "#EXT-X-MAP:URI=\"{url}\",BYTERANGE=\"{}@0\"", f.init_len);
        let _ = writeln!(entries, "#EXT-X-PROGRAM-DATE-TIME:{}", program_date_time(f.first_wall));
        for p in &f.parts {
            max_secs = max_secs.max(p.secs);
            let _ = writeln!(
                entries,
                "#EXTINF:{:.3},\n#EXT-X-BYTERANGE:{}@{}\n{url}",
                p.secs, p.len, p.offset
            );
        }
    }
    let detail = json!({
        "stream": stream.kind().as_str(),
        "start": time::format(start),
        "end": time::format(end),
    });
    state.audit_playback(&caller, &id, "hls", detail).await?;
    let _ = write!(
        body,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n{entries}#EXT-X-ENDLIST\n",
        max_secs.ceil() as u64
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "private, no-cache"),
        ],
        body,
    )
        .into_response())
}

fn program_date_time(t: WallTime) -> String {
    // HLS wants millisecond precision with an offset.
    let s = time::format(WallTime::from_micros(t.as_micros() / 1000 * 1000));
    s.replacen('+', ".000+", usize::from(!s.contains('.')))
}

/// `GET|HEAD /api/v1/cameras/{id}/segments/{seq}.mp4?t=<start µs>[&stream=]`: the bytes of one
/// segment file (its indexed, durable part), for HLS byte-range requests.
pub async fn segment_file(
    State(state): State<Arc<AppState>>,
    Path((id, file)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    ip: ClientIp,
    q: QueryMap,
) -> Result<Response, ApiError> {
    // Segments are what an audited playlist points at: checked, not audited again.
    let (q, caller, _) = playback_request(&state, &headers, q, ip, &id)?;
    let seq: u64 = file
        .strip_suffix(".mp4")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::not_found("segment names are <seq>.mp4"))?;
    let t: i64 = q
        .get("t")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ApiError::bad_request("t: expected the segment's start in microseconds"))?;
    let stream = stream_of(&q, &id)?;
    if let Some(remote) = state.remote_for(&id) {
        let path = format!(
            "/api/v1/cameras/{id}/segments/{seq}.mp4?t={t}&stream={}",
            stream.kind().as_str()
        );
        let body = remote
            .recorded(
                &id,
                crate::remote_access::RemoteRequest {
                    // The indexed part of a segment never changes once written.
                    cacheable: true,
                    ..crate::remote_access::RemoteRequest::for_client(
                        path,
                        &method,
                        &headers,
                        caller.end_user(&state.node.id),
                    )
                },
            )
            .await?;
        return crate::relayed::serve(body, &method, &headers, "video/mp4");
    }
    let st = state.clone();
    let found = tokio::task::spawn_blocking(move || st.store.find_segment(&stream, WallTime::from_micros(t), seq))
        .await
        .map_err(ApiError::internal)??;
    let Some((path, r)) = found else {
        return Err(ApiError::not_found(
            "no such segment (it may have been deleted by retention)",
        ));
    };
    let file = VirtualMp4 {
        head: bytes::Bytes::new(),
        parts: vec![Part {
            source: 0,
            offset: 0,
            len: r.bytes,
        }],
        len: r.bytes,
        samples: r.frames,
    };
    respond(
        Servable {
            file: Arc::new(file),
            sources: Arc::new(vec![path]),
            etag: format!("seg-{}-{}-{}", r.seq, r.start.as_micros(), r.bytes),
            content_type: "video/mp4",
        },
        &method,
        &headers,
        // How long the segment plays: an upper node fetching it counts it against its link at
        // its own bitrate, not the camera's live one.
        vec![(
            crate::relayed::PLAYS_FOR_HEADER,
            (r.end.micros_since(r.start).max(0) / 1000).to_string(),
        )],
    )
}

/// `POST /api/v1/cameras/{id}/media-token` body.
#[derive(Deserialize)]
pub struct MediaTokenRequest {
    action: String,
    #[serde(default)]
    ttl_s: Option<u64>,
}

/// Longest media token lifetime: a day.
const MAX_MEDIA_TTL: u64 = 86_400;

/// `POST /api/v1/cameras/{id}/media-token` `{action, ttl_s?}`: a signed token for `?token=`.
pub async fn media_token(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
    body: Result<Json<MediaTokenRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = json_body(
        body,
        "{\"action\": \"playback\"|\"live\"|\"export\", \"ttl_s\": seconds}",
    )?;
    let action = MediaAction::parse(&req.action)
        .ok_or_else(|| ApiError::bad_request("action: expected playback, live or export"))?;
    // A media token can only carry what its holder may do.
    caller.require(&state, crate::access::media_action(action), Some(&id))?;
    let max = state.media_token_ttl.as_secs().clamp(1, MAX_MEDIA_TTL);
    let ttl = req.ttl_s.unwrap_or(600.min(max));
    if ttl == 0 || ttl > max {
        return Err(ApiError::bad_request(format!(
            "ttl_s: expected 1 to {max} ([auth] media_token_ttl)"
        )));
    }
    let (token, expires) = state
        .auth
        .sign_media(&caller.who, &id, action, Duration::from_secs(ttl));
    Ok(Json(json!({ "token": token, "expires_at": time::format(expires) })))
}
