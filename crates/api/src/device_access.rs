//! What the API needs of GB/T 28181 devices, as a trait the node implements: the API knows no
//! GB28181, and `devices` (the handlers) only call this.

use axum::http::StatusCode;
use futures::future::BoxFuture;
use media::WallTime;
use serde_json::Value;

use crate::error::ApiError;

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
    ) -> BoxFuture<'static, Result<DevicePlayback, DeviceError>>;
    /// The recordings the device of `camera` holds between `start` and `end`.
    fn recordings(
        &self,
        camera: &str,
        start: WallTime,
        end: WallTime,
    ) -> BoxFuture<'static, Result<Vec<DeviceRecording>, DeviceError>>;
    /// Moves (or, all zero, stops) the camera.
    fn ptz(&self, camera: &str, movement: PtzMove) -> BoxFuture<'static, Result<(), DeviceError>>;
    /// The registered devices, as JSON objects.
    fn devices(&self) -> BoxFuture<'static, Vec<Value>>;
}

/// What the node says of its links toward GB/T 28181 upper platforms (cascade).
pub trait UpperAccess: Send + Sync {
    /// Each upper: `id, address, transport, registered, state, reason, last_keepalive,
    /// sessions, shared`.
    fn uppers(&self) -> BoxFuture<'static, Vec<Value>>;
}
