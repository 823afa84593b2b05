//! Device-side functions of GB/T 28181 channels: the recordings a device (an NVR or a camera's
//! SD card) holds, PTZ control, and the registered devices. The API knows no GB28181: the node
//! gives it a [`DeviceAccess`] that does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use media::WallTime;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::device_access::{DeviceAccess, DeviceError, DevicePace, PtzMove};
use crate::error::ApiError;
use crate::fragmented::{FrameSource, fragmented_mp4};
use crate::request::{QueryMap, json_body, query, window};
use crate::state::AppState;
use crate::time;

fn access(state: &AppState, camera: &str) -> Result<Arc<dyn DeviceAccess>, ApiError> {
    state
        .devices
        .clone()
        .ok_or_else(|| DeviceError::NotDevice(camera.to_owned()).into())
}

/// Longest window asked of a device at once (devices answer large ranges slowly or not at all).
const MAX_DEVICE_WINDOW_US: i64 = 31 * 86_400 * 1_000_000;

/// `GET /api/v1/cameras/{id}/device-recordings?start=&end=`: RecordInfo of the channel.
pub async fn recordings(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    q: QueryMap,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    caller.require(&state, auth::Action::Playback, Some(&id))?;
    let (start, end) = window(&q, MAX_DEVICE_WINDOW_US)?;
    let list = access(&state, &id)?.recordings(&id, start, end).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|r| {
            json!({
                "start": time::format(r.start),
                "end": time::format(r.end),
                "name": r.name,
                "type": r.kind,
                "file_size": r.file_size,
            })
        })
        .collect();
    Ok(Json(json!({ "camera": id, "recordings": items })))
}

/// `POST /api/v1/cameras/{id}/ptz` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtzRequest {
    #[serde(default)]
    pan: i8,
    #[serde(default)]
    tilt: i8,
    #[serde(default)]
    zoom: i8,
    #[serde(default = "default_speed")]
    speed: u8,
}

fn default_speed() -> u8 {
    128
}

/// `POST /api/v1/cameras/{id}/ptz`: `{pan, tilt, zoom}` each -1, 0 or 1 (all 0 stops), `speed`
/// 0-255. Audited.
pub async fn ptz(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
    body: Result<Json<PtzRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let req = json_body(body, "{\"pan\", \"tilt\", \"zoom\": -1, 0 or 1, \"speed\": 0-255}")?;
    caller.require(&state, auth::Action::Ptz, Some(&id))?;
    for (name, v) in [("pan", req.pan), ("tilt", req.tilt), ("zoom", req.zoom)] {
        if !(-1..=1).contains(&v) {
            return Err(ApiError::bad_request(format!("{name} must be -1, 0 or 1")));
        }
    }
    let movement = PtzMove {
        pan: req.pan,
        tilt: req.tilt,
        zoom: req.zoom,
        speed: req.speed,
    };
    let mut e = caller.event("ptz", Some(&id));
    e.detail = json!({ "pan": req.pan, "tilt": req.tilt, "zoom": req.zoom, "speed": req.speed });
    let device = access(&state, &id)?;
    // Audited first: nothing is done that is not in the log.
    state.audit(e).await?;
    device.ptz(&id, movement).await?;
    Ok(Json(json!({ "camera": id, "sent": true })))
}

/// How long a device may take from INVITE to the first key frame of a recording.
const DEVICE_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `playback.mp4?source=device[&download=N]`: the device's recording of the range, streamed
/// as a fragmented MP4 while the device sends it (at its pace, or `download` × faster).
/// Audited as a playback with `source: device`.
pub(crate) async fn device_playback(
    state: &AppState,
    caller: &Caller,
    camera: &str,
    q: &HashMap<String, String>,
    start: WallTime,
    end: WallTime,
) -> Result<axum::response::Response, ApiError> {
    let pace = match (q.get("download"), q.get("scale")) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("download and scale exclude each other")),
        (Some(s), None) => match s.parse::<u32>() {
            Ok(speed @ 1..=32) => DevicePace::Download { speed },
            _ => return Err(ApiError::bad_request("download: a speed from 1 to 32")),
        },
        (None, Some(s)) => match s.parse::<f64>() {
            Ok(scale) if (0.25..=16.0).contains(&scale) => DevicePace::Playback { scale },
            _ => return Err(ApiError::bad_request("scale: a playback speed from 0.25 to 16")),
        },
        (None, None) => DevicePace::Playback { scale: 1.0 },
    };
    let device = access(state, camera)?;
    let mut e = caller.event("playback", Some(camera));
    e.detail = json!({
        "source": "device",
        "start": time::format(start),
        "end": time::format(end),
        "pace": match pace {
            DevicePace::Playback { scale } => format!("playback x{scale}"),
            DevicePace::Download { speed } => format!("download x{speed}"),
        },
    });
    state.audit(e).await?;
    let mut playback = device.playback(camera, start, end, pace).await?;
    let first = tokio::time::timeout(DEVICE_START_TIMEOUT, async {
        while let Some(f) = playback.frames.recv().await {
            if f.key {
                return Some(f);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_video",
            format!(
                "the device of camera {camera} sent no key frame of that recording within {} s",
                DEVICE_START_TIMEOUT.as_secs()
            ),
        )
    })?;
    fragmented_mp4(FrameSource::Device(playback), first, Box::new(()))
}

/// `GET /api/v1/gb28181/devices`: registered devices (administrators).
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&state, auth::Action::Admin, None)?;
    let devices = match &state.devices {
        Some(d) => d.devices().await,
        None => Vec::new(),
    };
    Ok(Json(json!({ "devices": devices })))
}

/// `GET /api/v1/gb28181/uppers`: the upper platforms this node registers to (administrators).
pub async fn uppers(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&state, auth::Action::Admin, None)?;
    let uppers = match state.uppers.get() {
        Some(u) => u.uppers().await,
        None => Vec::new(),
    };
    Ok(Json(json!({ "uppers": uppers })))
}
