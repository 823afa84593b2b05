//! The audit entries requests leave: written durably before anything is served (a request
//! whose entry cannot be written gets 503), once per viewing for the many Range requests of a
//! player, and a start/stop pair around every live viewing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use auth::audit::{AuditLog, Event};
use axum::http::StatusCode;
use media::StreamId;
use serde_json::Value;

use crate::access::Caller;
use crate::error::ApiError;
use crate::state::AppState;

fn unavailable(e: impl std::fmt::Display, what: &str) -> ApiError {
    tracing::error!("audit log: {e}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        format!("the audit log cannot be written, so {what}; see the server log"),
    )
}

impl AppState {
    /// Writes `event` to the audit log and waits until it is durable. If the log cannot be
    /// written the request fails (503): nothing is served that is not audited.
    pub async fn audit(&self, event: Event) -> Result<(), ApiError> {
        self.audit
            .append(event)
            .await
            .map(|_| ())
            .map_err(|e| unavailable(e, "the request is refused"))
    }

    /// Audits `action` once per caller, camera and detail within a few minutes (a player's or
    /// downloader's many Range requests are one access).
    pub async fn audit_once(&self, caller: &Caller, camera: &str, action: &str, detail: Value) -> Result<(), ApiError> {
        let key = format!("{}|{camera}|{action}|{detail}", caller.who.actor());
        if self.recent_playbacks.seen(key, Instant::now()) {
            return Ok(());
        }
        let mut e = caller.event(action, Some(camera));
        e.detail = detail;
        self.audit(e).await
    }

    /// Audits a playback (`what`: its format) once per caller, camera and request.
    pub async fn audit_playback(
        &self,
        caller: &Caller,
        camera: &str,
        what: &str,
        detail: Value,
    ) -> Result<(), ApiError> {
        self.audit_once(
            caller,
            camera,
            "playback",
            serde_json::json!({ "format": what, "request": detail }),
        )
        .await
    }
}

/// A live viewing in progress: its start is audited when it is made, its stop (with how long
/// it lasted) when it is dropped, which happens however the viewing ends.
pub struct Viewing {
    audit: Arc<AuditLog>,
    event: Option<Event>,
    started: Instant,
}

impl Viewing {
    /// Audits the start of `event` (a `live.start`) durably and returns the guard that will
    /// audit its stop.
    pub async fn start(audit: Arc<AuditLog>, event: Event) -> Result<Viewing, auth::audit::AuditError> {
        audit.append(event.clone()).await?;
        Ok(Viewing {
            audit,
            event: Some(event),
            started: Instant::now(),
        })
    }
}

impl Drop for Viewing {
    fn drop(&mut self) {
        if let Some(mut e) = self.event.take() {
            e.action = "live.stop".to_owned();
            let mut detail = match e.detail.take() {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            detail.insert(
                "seconds".into(),
                Value::from((self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0),
            );
            e.detail = Value::Object(detail);
            self.audit.record(e);
        }
    }
}

/// Audits the start of `actor`'s live viewing of `stream` through `output` (`mp4`, `webrtc`,
/// `rtsp`; for an upper node, `on_behalf_of` its user) durably, and returns the guard that audits its end; a 503 if it cannot be audited
/// (then it is not served).
pub async fn start_viewing(
    state: &AppState,
    actor: &str,
    ip: Option<IpAddr>,
    on_behalf_of: Option<String>,
    stream: &StreamId,
    output: &str,
) -> Result<Viewing, ApiError> {
    let event = Event {
        actor: actor.to_owned(),
        ip: ip.map(|i| i.to_string()),
        action: "live.start".into(),
        outcome: "ok".into(),
        camera: Some(stream.camera().to_owned()),
        target: None,
        reason: None,
        detail: serde_json::json!({ "stream": stream.kind().as_str(), "output": output }),
        on_behalf_of,
    };
    Viewing::start(state.audit.clone(), event)
        .await
        .map_err(|e| unavailable(e, "live view is refused"))
}
