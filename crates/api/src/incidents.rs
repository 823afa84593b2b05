//! `POST /api/v1/incidents`: what a dispatch module asks when something happens somewhere —
//! "open everything around this point (or in this grid cell) for the minutes around it, and
//! keep it". One request finds the cameras the caller may see there, answers for each the
//! live URLs (WHEP, live.mp4, RTSP) and the playback URLs (MP4, HLS) of the incident's window
//! with media tokens, places holds on that window when asked, can put the cameras on a wall
//! screen, and is audited as one `incident` entry listing the cameras. Lower nodes' cameras are
//! found and served the same way (their holds are placed where they are recorded).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use auth::{Action, MediaAction};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::WallTime;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::events::NodeEvent;
use crate::request::json_body;
use crate::state::{AppState, query_escape};
use crate::time;

/// Default minutes before `at` an incident's window opens.
const DEFAULT_BEFORE_S: u32 = 300;
/// Default seconds after `at` it closes.
const DEFAULT_AFTER_S: u32 = 60;
/// Longest `before` or `after`: a day each way.
const MAX_SIDE_S: u32 = 86_400;
/// Most cameras one incident opens (the nearest first): more is a search, not an incident.
const MAX_CAMERAS: usize = 100;

/// The point of an incident.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatLon {
    lat: f64,
    lon: f64,
}

/// `POST /api/v1/incidents` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRequest {
    /// Where it happened (or `grid`).
    point: Option<LatLon>,
    /// The grid cell it happened in (or `point`).
    grid: Option<String>,
    /// When (RFC 3339; absent: now).
    at: Option<String>,
    /// Metres around `point` (default 300).
    radius: Option<f64>,
    /// Seconds before `at` (default 300).
    before: Option<u32>,
    /// Seconds after `at` (default 60).
    after: Option<u32>,
    /// Place holds on the window.
    #[serde(default)]
    hold: bool,
    /// Only the cameras whose field of view holds `point`.
    #[serde(default)]
    sees: bool,
    /// Put the cameras on this wall screen (上墙).
    wall: Option<String>,
    /// Why (the case): required, kept in the audit log and on the holds.
    reason: String,
}

/// `POST /api/v1/incidents`: 201 with the incident and its cameras.
pub async fn open(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<IncidentRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(
        body,
        "{\"point\": {\"lat\", \"lon\"} or \"grid\", \"at\"?, \"radius\"?, \"before\"?, \"after\"?, \"hold\"?, \"sees\"?, \"wall\"?, \"reason\"}",
    )?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "reason: say what happened (the case), 1 to 1000 characters",
        ));
    }
    let at = match &req.at {
        Some(s) => time::parse("at", s)?,
        None => WallTime::now(),
    };
    let side = |v: Option<u32>, default: u32, name: &str| -> Result<i64, ApiError> {
        let s = v.unwrap_or(default);
        if s > MAX_SIDE_S {
            return Err(ApiError::bad_request(format!("{name}: at most {MAX_SIDE_S} seconds")));
        }
        Ok(i64::from(s) * 1_000_000)
    };
    let start = WallTime::from_micros(at.as_micros() - side(req.before, DEFAULT_BEFORE_S, "before")?);
    let end = WallTime::from_micros(at.as_micros() + side(req.after, DEFAULT_AFTER_S, "after")?.max(1_000_000));
    if let Some(w) = &req.wall {
        crate::walls::check_id(w, "wall")?;
    }

    // Where: a point (with a radius, or what sees it) or a grid cell.
    let mut q = HashMap::new();
    let place = match (&req.point, &req.grid) {
        (Some(p), None) => {
            let pt = places::Point::new(p.lat, p.lon, "point").map_err(|e| ApiError::bad_request(e.to_string()))?;
            let spot = format!("{},{}", pt.lat, pt.lon);
            let radius_m = if req.sees {
                None
            } else {
                Some(match req.radius {
                    None => crate::spatial::DEFAULT_RADIUS_M,
                    Some(r) => crate::spatial::in_range(r).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "radius: {r} is not a distance of 0 to {} metres",
                            crate::spatial::MAX_RADIUS_M
                        ))
                    })?,
                })
            };
            if req.sees {
                if req.radius.is_some() {
                    return Err(ApiError::bad_request(
                        "radius: not with sees (a camera's own range applies)",
                    ));
                }
                q.insert("sees".to_owned(), spot);
            } else {
                q.insert("near".to_owned(), spot);
                q.insert("radius".to_owned(), radius_m.unwrap_or_default().to_string());
            }
            json!({ "point": { "lat": pt.lat, "lon": pt.lon }, "radius_m": radius_m, "sees": req.sees })
        }
        (None, Some(g)) => {
            if req.sees || req.radius.is_some() {
                return Err(ApiError::bad_request("radius and sees: only with a point"));
            }
            q.insert("grid".to_owned(), g.clone());
            json!({ "grid": g })
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either point {lat, lon} or grid (a grid cell id)",
            ));
        }
    };
    let found = crate::spatial::select(&state, &q)?.unwrap_or_default();
    let snap = state.auth.snapshot();
    let visible: Vec<(String, Option<f64>, auth::Actions)> = found
        .into_iter()
        .filter_map(|(id, d)| {
            let a = snap.policy.camera_actions(&caller.who, &id);
            (!a.is_empty()).then_some((id, d, a))
        })
        .take(MAX_CAMERAS)
        .collect();
    drop(snap);

    let id = incident_id(at);
    let ttl = state.media_token_ttl.min(Duration::from_secs(24 * 3600));
    let rtsp_host = rtsp_base(&state, &headers);
    let window = json!({ "start": time::format(start), "end": time::format(end) });
    let mut cameras = Vec::with_capacity(visible.len());
    let mut held = Vec::new();
    for (cam, distance, actions) in &visible {
        let c = state.cameras.get(cam);
        let mut v = json!({
            "id": cam,
            "name": c.as_ref().map(|c| c.info.name.clone()),
            "status": c.as_ref().map(|c| c.status()),
            "distance_m": distance,
        });
        let base = format!("/api/v1/cameras/{cam}");
        if actions.contains(Action::Live) {
            let (token, _) = state.auth.sign_media(&caller.who, cam, MediaAction::Live, ttl);
            let t = query_escape(&token);
            v["live"] = json!({
                "whep": format!("{base}/whep?token={t}"),
                "live_mp4": format!("{base}/live.mp4?token={t}"),
                "rtsp": rtsp_host.as_ref().map(|h| format!("{h}/cameras/{cam}?token={t}")),
            });
        }
        if actions.contains(Action::Playback) {
            let (token, _) = state.auth.sign_media(&caller.who, cam, MediaAction::Playback, ttl);
            let range = format!(
                "start={}&end={}&token={}",
                time::query_time(start),
                time::query_time(end),
                query_escape(&token)
            );
            v["playback"] = json!({
                "mp4": format!("{base}/playback.mp4?{range}"),
                "hls": format!("{base}/playback.m3u8?{range}"),
            });
        }
        if req.hold {
            if actions.contains(Action::Hold) {
                match crate::holds::place(&state, &caller, cam, start, end, reason, Some(&id)).await {
                    Ok(h) => {
                        held.push(h["id"].clone());
                        v["hold"] = h;
                    }
                    // One camera's lower node being unreachable must not lose the others' holds.
                    Err(e) => v["hold_error"] = json!({ "code": e.code, "message": e.message }),
                }
            } else {
                v["hold_error"] = json!({ "code": "forbidden", "message": format!("{} may not hold camera {cam}", caller.who.actor()) });
            }
        }
        cameras.push(v);
    }

    let mut wall = Value::Null;
    if let Some(w) = &req.wall {
        let live: Vec<crate::walls::Tile> = visible
            .iter()
            .filter(|(_, _, a)| a.contains(Action::Live))
            .take(36)
            .map(|(c, _, _)| crate::walls::Tile {
                camera: c.clone(),
                stream: None,
            })
            .collect();
        let layout = crate::walls::LAYOUTS
            .iter()
            .filter(|(n, _)| !n.contains('+'))
            .find(|(_, cap)| *cap >= live.len())
            .map_or("6x6", |(n, _)| *n)
            .to_owned();
        let layout = crate::walls::Layout {
            layout,
            tiles: live,
            tour: None,
        };
        crate::walls::check_layout(&state, &caller, &layout)?;
        wall = crate::walls::wall_json(&crate::walls::push(&state, &caller, w, layout, Some(&id)).await?);
    }

    let ids: Vec<&String> = visible.iter().map(|(c, _, _)| c).collect();
    let mut e = caller.event("incident", None);
    e.target = Some(id.clone());
    e.reason = Some(reason.to_owned());
    e.detail = json!({ "place": place, "at": time::format(at), "window": window, "cameras": ids, "holds": held, "wall": req.wall });
    state.audit(e).await?;
    state.events.publish(NodeEvent {
        kind: "incident.opened",
        camera: None,
        data: json!({ "incident": id, "at": time::format(at), "cameras": ids, "reason": reason, "by": caller.who.actor() }),
    });
    tracing::info!(
        incident = id,
        cameras = ids.len(),
        holds = held.len(),
        by = caller.who.actor(),
        "incident opened"
    );
    let mut out = json!({
        "id": id,
        "at": time::format(at),
        "window": window,
        "reason": reason,
        "opened_by": caller.who.actor(),
        "tokens_expire": time::format(WallTime::from_micros(WallTime::now().as_micros() + ttl.as_micros() as i64)),
        "cameras": cameras,
        "wall": wall,
    });
    if let (Some(o), Value::Object(p)) = (out.as_object_mut(), place) {
        o.extend(p);
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `inc-<UTC time>-<random>`: sortable, and unique without a counter to keep.
fn incident_id(at: WallTime) -> String {
    let t = time::format(at).replace([':', '-'], "");
    let t: String = t.chars().take(15).collect();
    format!("inc-{t}-{:08x}", rand::random::<u32>())
}

/// `rtsp://HOST:PORT` of the RTSP re-serve as the caller reaches this node (its `Host`), when
/// the node serves RTSP.
fn rtsp_base(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let port = state.rtsp_port?;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    // Host is `name`, `name:port`, `[v6]` or `[v6]:port`.
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'@'))
        .then(|| format!("rtsp://{name}:{port}"))
}
