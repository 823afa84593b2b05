//! Device-side functions of GB/T 28181 channels: the recordings a device (an NVR or a camera's
//! SD card) holds, PTZ control, and the registered devices. The API knows no GB28181: the node
//! gives it a [`DeviceAccess`] that does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use media::WallTime;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::handlers::window;
use crate::state::AppState;
use crate::{ApiError, time};

/// A boxed future, as trait objects need.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// One recording a device holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecording {
    /// Start.
    pub start: WallTime,
    /// End.
    pub end: WallTime,
    /// Name the device gives it.
    pub name: String,
    /// `time`, `alarm`, `manual`, ... as the device says.
    pub kind: String,
    /// Size in bytes, when the device says.
    pub file_size: Option<u64>,
}

/// A PTZ movement: directions -1, 0 or 1, speed 0-255 (zoom uses the top four bits' worth).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PtzMove {
    /// -1 left, 1 right.
    pub pan: i8,
    /// -1 down, 1 up.
    pub tilt: i8,
    /// -1 out, 1 in.
    pub zoom: i8,
    /// Speed 0-255.
    pub speed: u8,
}

/// Why a device function failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The camera is not a device channel.
    #[error("camera {0} is not a GB/T 28181 channel: device functions need one")]
    NotDevice(String),
    /// Its device is not registered now.
    #[error("the device of camera {0} is not registered now; try again when it is online")]
    Offline(String),
    /// The device did not answer in time.
    #[error("the device of camera {camera} did not answer within {secs} s")]
    Timeout {
        /// Camera id.
        camera: String,
        /// Seconds waited.
        secs: u64,
    },
    /// The device refused.
    #[error("the device of camera {camera} refused: {detail}")]
    Refused {
        /// Camera id.
        camera: String,
        /// What it said.
        detail: String,
    },
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        let (status, code) = match &e {
            DeviceError::NotDevice(_) => (StatusCode::CONFLICT, "not_a_device_channel"),
            DeviceError::Offline(_) => (StatusCode::SERVICE_UNAVAILABLE, "device_offline"),
            DeviceError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "device_timeout"),
            DeviceError::Refused { .. } => (StatusCode::BAD_GATEWAY, "device_refused"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// A recording being sent by a device: its frames, in order, until it ends. Dropping it hangs
/// the session up.
pub struct DevicePlayback {
    /// The frames.
    pub frames: tokio::sync::mpsc::Receiver<media::Frame>,
    /// Ends the session when dropped.
    pub guard: Box<dyn Send + Sync>,
}

/// How fast a device sends a recording.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DevicePace {
    /// Playback at `scale` × (1.0: real time), asked with MANSRTSP once playing.
    Playback {
        /// Speed.
        scale: f64,
    },
    /// Download at `speed` × (`downloadspeed` in the offer).
    Download {
        /// Speed.
        speed: u32,
    },
}

/// What the node does for device functions.
pub trait DeviceAccess: Send + Sync {
    /// Plays back (or, with `download_speed`, downloads) the device's recording of `camera`
    /// between `start` and `end`.
    fn playback(
        &self,
        camera: &str,
        start: WallTime,
        end: WallTime,
        pace: DevicePace,
    ) -> BoxFuture<Result<DevicePlayback, DeviceError>>;
    /// The recordings the device of `camera` holds between `start` and `end`.
    fn recordings(
        &self,
        camera: &str,
        start: WallTime,
        end: WallTime,
    ) -> BoxFuture<Result<Vec<DeviceRecording>, DeviceError>>;
    /// Moves (or, all zero, stops) the camera.
    fn ptz(&self, camera: &str, movement: PtzMove) -> BoxFuture<Result<(), DeviceError>>;
    /// The registered devices, as JSON objects.
    fn devices(&self) -> BoxFuture<Vec<Value>>;
}

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
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
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
    let Json(req) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"pan\", \"tilt\", \"zoom\": -1, 0 or 1, \"speed\": 0-255}} as JSON: {}",
            e.body_text()
        ))
    })?;
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
    crate::live::fragmented_mp4(crate::live::FrameSource::Device(playback), first, Box::new(()))
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
