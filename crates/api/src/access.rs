//! Who is calling, whether they may, and the audit entry that says they did.
//!
//! Every `/api/v1` handler but login starts here: [`Caller`] (a bearer token: session or API
//! token) or [`media_caller`] (the same, or a signed media token in `?token=`), then
//! [`Caller::require`] with the action and camera. Cameras the caller may not see at all are
//! answered exactly like unknown ones (404), so ids do not leak across departments; cameras
//! they see but may not act on get 403.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use auth::audit::{AuditLog, Event};
use auth::{Action, Decision, MediaAction, Principal};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use crate::ApiError;
use crate::state::AppState;

/// The client's address, when the server was started with connection info.
#[derive(Copy, Clone, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
        ))
    }
}

/// A verified caller and where they call from.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub who: Principal,
    /// From where.
    pub ip: Option<IpAddr>,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state)
            .await
            .unwrap_or(ClientIp(None));
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing bearer token: log in with POST /api/v1/login and send Authorization: Bearer <token>",
            )
        })?;
        let who = state
            .auth
            .verify(token)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        Ok(Caller { who, ip })
    }
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// The 404 for a camera that does not exist or that the caller may not see: the same answer,
/// so that one cannot be told from the other.
pub(crate) fn no_camera(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no camera with id {:?}",
        id.chars().take(64).collect::<String>()
    ))
}

impl Caller {
    /// Ok if the caller may do `action` (to `camera`); 404 for cameras they may not see (or
    /// that do not exist), 403 otherwise.
    pub fn require(&self, state: &AppState, action: Action, camera: Option<&str>) -> Result<(), ApiError> {
        if let Some(id) = camera
            && !state.cameras.contains_key(id)
        {
            return Err(no_camera(id));
        }
        match state.auth.decide(&self.who, action, camera) {
            Decision::Allow => Ok(()),
            Decision::Hidden => Err(no_camera(camera.unwrap_or_default())),
            Decision::Forbidden => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                match camera {
                    Some(c) => format!(
                        "{} may not {action} camera {c}; an administrator can grant it",
                        self.who.actor()
                    ),
                    None => format!("{} may not {action} on this node", self.who.actor()),
                },
            )),
        }
    }

    /// An audit event by this caller.
    pub fn event(&self, action: &str, camera: Option<&str>) -> Event {
        Event {
            actor: self.who.actor(),
            ip: self.ip.map(|i| i.to_string()),
            action: action.to_owned(),
            outcome: "ok".to_owned(),
            camera: camera.map(str::to_owned),
            target: None,
            reason: None,
            detail: Value::Null,
        }
    }
}

/// Authorizes a media request: a bearer token, or a media token for this camera and action in
/// `?token=`; then the grant. Returns the caller and the media token used, if any (to put into
/// URLs the response hands out).
pub(crate) fn media_caller(
    state: &AppState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    ip: ClientIp,
    camera: &str,
    action: MediaAction,
) -> Result<(Caller, Option<String>), ApiError> {
    let (who, token) = if let Some(t) = bearer(headers) {
        let who = state
            .auth
            .verify(t)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        (who, None)
    } else {
        let Some(t) = q.get("token") else {
            return Err(ApiError::unauthorized(
                "missing credentials: send Authorization: Bearer <token>, or ?token= from POST /api/v1/cameras/{id}/media-token",
            ));
        };
        let who = state.auth.verify_media(t, camera, action).map_err(|_| {
            ApiError::unauthorized("the media token is invalid, expired, or for another camera or action")
        })?;
        (who, Some(t.clone()))
    };
    let caller = Caller { who, ip: ip.0 };
    caller.require(state, media_action(action), Some(camera))?;
    Ok((caller, token))
}

/// The permission a media token's action stands for.
pub(crate) fn media_action(a: MediaAction) -> Action {
    match a {
        MediaAction::Live => Action::Live,
        MediaAction::Playback => Action::Playback,
        MediaAction::Export => Action::Export,
    }
}

impl AppState {
    /// Writes `event` to the audit log and waits until it is durable. If the log cannot be
    /// written the request fails (503): nothing is served that is not audited.
    pub async fn audit(&self, event: Event) -> Result<(), ApiError> {
        self.audit.append(event).await.map(|_| ()).map_err(|e| {
            tracing::error!("audit log: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be written, so the request is refused; see the server log",
            )
        })
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
