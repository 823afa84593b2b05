//! HTTP to a lower node's API: over a connection this node opens (`dial = "down"`), or over the
//! HTTP/2 connection the lower node opened to this one (`dial = "up"`, see [`crate::tunnel`]).
//! Every request carries the token the lower node issued for this one and, when there is one,
//! the end user it is made for. Answers are bounded in size and in how long the lower node may
//! go silent, so a broken or hostile lower node costs a clear error, never a stuck task.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use url::Url;

/// The header an upper node names its end user in.
pub const ON_BEHALF_OF: &str = "x-sharpeye-on-behalf-of";

/// How long a lower node may take to answer a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lower node may go silent in the middle of a body.
pub const BODY_SILENCE: Duration = Duration::from_secs(10);
/// Largest JSON answer read (a catalog of 25,000 cameras is about 10 MB).
pub const MAX_JSON: usize = 64 << 20;

/// Why a request to a lower node failed. Messages name the link.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No connection, or it broke.
    #[error("lower node {link} unreachable: {detail}")]
    Unreachable {
        /// The link.
        link: String,
        /// What failed.
        detail: String,
    },
    /// The lower node answered with an error.
    #[error("lower node {link} answered {status}: {message}")]
    Status {
        /// The link.
        link: String,
        /// HTTP status.
        status: u16,
        /// Its error code (`not_found`, ...), if it sent the API's error form.
        code: String,
        /// Its message.
        message: String,
    },
    /// The answer is not what the API promises (malformed JSON, wrong fields, too large).
    #[error("lower node {link} sent a bad answer: {detail}")]
    BadAnswer {
        /// The link.
        link: String,
        /// What is wrong.
        detail: String,
    },
}

/// The HTTP/2 connection a lower node dialed up with, when it is up.
pub type TunnelSender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

enum Route {
    Direct(Box<(Url, Client<HttpConnector, Full<Bytes>>)>),
    Tunnel(RwLock<Option<TunnelSender>>),
}

/// A lower node's API, as this node reaches it.
pub struct LowerClient {
    link: String,
    token: String,
    route: Route,
}

impl std::fmt::Debug for LowerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LowerClient")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// A request to send: method, path with query, body, and the end user.
#[derive(Clone, Debug, Default)]
pub struct Call {
    /// `GET`, `HEAD`, `POST`, `DELETE`.
    pub method: Method,
    /// Path and query, starting with `/api/v1/`.
    pub path: String,
    /// JSON body, if any.
    pub json: Option<serde_json::Value>,
    /// The user on this node the request is made for.
    pub on_behalf_of: Option<String>,
    /// Extra headers (`Range`, `If-Range`).
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl Call {
    /// A GET of `path` for `who`.
    pub fn get(path: impl Into<String>, who: Option<&str>) -> Call {
        Call {
            method: Method::GET,
            path: path.into(),
            on_behalf_of: who.map(str::to_owned),
            ..Call::default()
        }
    }
}

impl LowerClient {
    /// A client of link `link` that connects to `base` itself.
    pub fn direct(link: &str, base: Url, token: &str) -> LowerClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        LowerClient {
            link: link.to_owned(),
            token: token.to_owned(),
            route: Route::Direct(Box::new((base, client))),
        }
    }

    /// A client of link `link` whose requests go over the connection the lower node dials up
    /// with (none until it does).
    pub fn tunnel(link: &str, token: &str) -> LowerClient {
        LowerClient {
            link: link.to_owned(),
            token: token.to_owned(),
            route: Route::Tunnel(RwLock::new(None)),
        }
    }

    /// The link's id.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// Hands over (or, with `None`, forgets) the connection a lower node dialed up with.
    pub fn set_tunnel(&self, sender: Option<TunnelSender>) {
        if let Route::Tunnel(t) = &self.route {
            *t.write().unwrap_or_else(|p| p.into_inner()) = sender;
        }
    }

    /// True when requests can be sent now (always for a direct route; for a tunnel, while the
    /// lower node's connection is up).
    pub fn connected(&self) -> bool {
        match &self.route {
            Route::Direct(_) => true,
            Route::Tunnel(t) => t
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_some_and(|s| !s.is_closed()),
        }
    }

    fn unreachable(&self, detail: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            link: self.link.clone(),
            detail: detail.to_string(),
        }
    }

    fn bad(&self, detail: impl std::fmt::Display) -> ClientError {
        ClientError::BadAnswer {
            link: self.link.clone(),
            detail: detail.to_string(),
        }
    }

    /// Sends `call` and returns the answer's head and streaming body; an error status is turned
    /// into [`ClientError::Status`] with the lower node's message.
    pub async fn send(&self, call: Call) -> Result<Response<Incoming>, ClientError> {
        if !call.path.starts_with("/api/v1/") {
            return Err(self.bad(format!("refusing to request {:?}", call.path)));
        }
        let body = match &call.json {
            Some(v) => Full::new(Bytes::from(v.to_string())),
            None => Full::new(Bytes::new()),
        };
        let (uri, host) = match &self.route {
            Route::Direct(d) => {
                let url = d.0.join(&call.path).map_err(|e| self.bad(e))?;
                let host = match url.port() {
                    Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_owned(),
                };
                (url.to_string(), host)
            }
            Route::Tunnel(_) => (format!("http://{}{}", self.link, call.path), self.link.clone()),
        };
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(uri)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token));
        if matches!(self.route, Route::Direct(_)) {
            req = req.header(hyper::header::HOST, host);
        }
        if call.json.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(who) = &call.on_behalf_of {
            req = req.header(ON_BEHALF_OF, who.as_str());
        }
        for (k, v) in &call.headers {
            req = req.header(k, v);
        }
        let req = req.body(body).map_err(|e| self.bad(e))?;
        let sent = async {
            match &self.route {
                Route::Direct(d) => d.1.request(req).await.map_err(|e| self.unreachable(e)),
                Route::Tunnel(t) => {
                    let sender = t.read().unwrap_or_else(|p| p.into_inner()).clone();
                    let Some(mut sender) = sender else {
                        return Err(self.unreachable("it has not dialed up (dial = \"up\")"));
                    };
                    sender.send_request(req).await.map_err(|e| self.unreachable(e))
                }
            }
        };
        let resp = tokio::time::timeout(HEAD_TIMEOUT, sent)
            .await
            .map_err(|_| self.unreachable(format!("no answer within {} s", HEAD_TIMEOUT.as_secs())))??;
        if resp.status().is_success() || resp.status() == StatusCode::PARTIAL_CONTENT {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = read_limited(resp.into_body(), 64 << 10).await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let text = |k: &str| {
            v["error"][k]
                .as_str()
                .map(|s| s.chars().filter(|c| !c.is_control()).take(500).collect::<String>())
        };
        Err(ClientError::Status {
            link: self.link.clone(),
            status,
            code: text("code").unwrap_or_else(|| "lower_error".into()),
            message: text("message").unwrap_or_else(|| format!("HTTP {status}")),
        })
    }

    /// Sends `call` and reads its JSON answer (at most [`MAX_JSON`] bytes).
    pub async fn json(&self, call: Call) -> Result<serde_json::Value, ClientError> {
        let resp = self.send(call).await?;
        let body = read_limited(resp.into_body(), MAX_JSON)
            .await
            .map_err(|e| self.bad(e))?;
        serde_json::from_slice(&body).map_err(|e| self.bad(format!("not JSON: {e}")))
    }

    /// A shared handle for tasks.
    pub fn shared(self) -> Arc<LowerClient> {
        Arc::new(self)
    }
}

/// Reads a whole body of at most `max` bytes, each piece within [`BODY_SILENCE`].
pub async fn read_limited(mut body: Incoming, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let frame = tokio::time::timeout(BODY_SILENCE, body.frame())
            .await
            .map_err(|_| format!("silent for {} s in the middle of an answer", BODY_SILENCE.as_secs()))?;
        match frame {
            None => return Ok(out),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    if out.len() + data.len() > max {
                        return Err(format!("an answer larger than {max} bytes"));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// The next piece of a streaming body: `Ok(None)` at its end, an error after [`BODY_SILENCE`]
/// without data.
pub async fn next_chunk(body: &mut Incoming, silence: Duration) -> Result<Option<Bytes>, String> {
    loop {
        let frame = tokio::time::timeout(silence, body.frame())
            .await
            .map_err(|_| format!("no data for {} s", silence.as_secs()))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}
