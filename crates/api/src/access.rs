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

use auth::audit::Event;
use auth::{Action, Decision, MediaAction, Principal};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use crate::error::ApiError;
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

/// The header an upper node names its end user in (`alice@district-1`).
pub const ON_BEHALF_OF: &str = "x-sharpeye-on-behalf-of";

/// A verified caller and where they call from.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who.
    pub who: Principal,
    /// From where.
    pub ip: Option<IpAddr>,
    /// For an upper node calling with its API token: the user it calls for.
    pub on_behalf_of: Option<String>,
}

/// The end user an upper node names in [`ON_BEHALF_OF`]: honoured only for API tokens (a
/// person's session speaks for itself), and only when it is a short printable name.
fn on_behalf_of(headers: &HeaderMap, who: &Principal) -> Option<String> {
    if !matches!(who.via, auth::Via::ApiToken(_)) {
        return None;
    }
    let v = headers.get(ON_BEHALF_OF)?.to_str().ok()?.trim();
    (!v.is_empty() && v.len() <= 200 && v.chars().all(|c| !c.is_control())).then(|| v.to_owned())
}

impl Caller {
    /// A caller `who` from `ip`, calling for the user `headers` name if `who` is an upper node.
    pub fn new(who: Principal, ip: Option<IpAddr>, headers: &HeaderMap) -> Caller {
        let on_behalf_of = on_behalf_of(headers, &who);
        Caller { who, ip, on_behalf_of }
    }

    /// Who a lower node should audit this caller's requests as: the end user an upper node
    /// named, else the caller on this node (`alice@xigang-street`).
    pub fn end_user(&self, node: &str) -> String {
        self.on_behalf_of
            .clone()
            .unwrap_or_else(|| format!("{}@{node}", self.who.actor()))
    }
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
        if let Some(member) = node_member(state, token, Some(&parts.headers)) {
            return Ok(Caller::new(member, ip, &parts.headers));
        }
        let who = state
            .auth
            .verify(token)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        Ok(Caller::new(who, ip, &parts.headers))
    }
}

/// Another member of this node's cluster, when `token` is the cluster's node credential: it
/// acts as administrator (asking for what this member recorded) and is audited as
/// `node:<name>` (the name it gives in `x-sharpeye-node`).
fn node_member(state: &AppState, token: &str, headers: Option<&HeaderMap>) -> Option<auth::Principal> {
    let named = headers
        .and_then(|h| h.get(crate::cluster::NODE_HEADER))
        .and_then(|v| v.to_str().ok());
    let member = state.cluster.get()?.node_caller(token, named)?;
    Some(auth::Principal {
        user: format!("node:{member}"),
        role: auth::Role::Admin,
        department: None,
        via: auth::Via::Session,
    })
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// The 404 for a camera that does not exist or that the caller may not see: the same answer,
/// so that one cannot be told from the other.
pub fn no_camera(id: &str) -> ApiError {
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
            on_behalf_of: self.on_behalf_of.clone(),
        }
    }
}

/// The credentials a media request came with.
#[derive(Clone, Copy, Debug)]
pub enum MediaCredentials<'a> {
    /// A session or API token (`Authorization: Bearer`).
    Bearer(&'a str),
    /// A signed media token for one camera and action (`?token=`).
    MediaToken(&'a str),
    /// A user's name and password (RTSP Basic), throttled like logins.
    Password {
        /// Login name.
        user: &'a str,
        /// Password.
        password: &'a str,
    },
}

/// The one check of every media request, whatever carries it (`live.mp4`, WHEP, playback, HLS,
/// export downloads, the RTSP re-serve): who the credentials name, then their grant for
/// `action` on `camera`. A failed password is audited as a failed login `via` the protocol.
pub fn authorize_media(
    state: &AppState,
    credentials: MediaCredentials<'_>,
    ip: Option<IpAddr>,
    headers: Option<&HeaderMap>,
    camera: &str,
    action: MediaAction,
    via: &str,
) -> Result<Caller, ApiError> {
    let who = match credentials {
        MediaCredentials::Bearer(t) => match node_member(state, t, headers) {
            Some(member) => member,
            None => state
                .auth
                .verify(t)
                .map_err(|e| ApiError::unauthorized(e.to_string()))?,
        },
        MediaCredentials::MediaToken(t) => state.auth.verify_media(t, camera, action).map_err(|_| {
            ApiError::unauthorized("the media token is invalid, expired, or for another camera or action")
        })?,
        MediaCredentials::Password { user, password } => {
            match state.auth.check_password_throttled(user, password, ip) {
                Ok(who) => who,
                Err(e) => {
                    state.audit.record(Event {
                        actor: user.chars().take(128).collect(),
                        ip: ip.map(|i| i.to_string()),
                        action: "login".into(),
                        outcome: if matches!(e, auth::AuthError::Throttled { .. }) {
                            "throttled"
                        } else {
                            "failed"
                        }
                        .into(),
                        camera: Some(camera.to_owned()),
                        target: None,
                        reason: None,
                        detail: serde_json::json!({ "via": via }),
                        on_behalf_of: None,
                    });
                    return Err(ApiError::unauthorized(e.to_string()));
                }
            }
        }
    };
    let caller = match headers {
        Some(h) => Caller::new(who, ip, h),
        None => Caller {
            who,
            ip,
            on_behalf_of: None,
        },
    };
    caller.require(state, media_action(action), Some(camera))?;
    Ok(caller)
}

/// Authorizes an HTTP media request: a bearer token, or a media token for this camera and
/// action in `?token=`; then the grant. Returns the caller and the media token used, if any (to
/// put into URLs the response hands out).
pub(crate) fn media_caller(
    state: &AppState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    ip: ClientIp,
    camera: &str,
    action: MediaAction,
) -> Result<(Caller, Option<String>), ApiError> {
    let (credentials, token) = match (bearer(headers), q.get("token")) {
        (Some(t), _) => (MediaCredentials::Bearer(t), None),
        (None, Some(t)) => (MediaCredentials::MediaToken(t), Some(t.clone())),
        (None, None) => {
            return Err(ApiError::unauthorized(
                "missing credentials: send Authorization: Bearer <token>, or ?token= from POST /api/v1/cameras/{id}/media-token",
            ));
        }
    };
    let caller = authorize_media(state, credentials, ip.0, Some(headers), camera, action, "http")?;
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
