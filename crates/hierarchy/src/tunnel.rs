//! `dial = "up"`: the link's connection opened by the lower node (behind NAT, a one-way
//! gateway), with the roles then turned around. The lower node asks the upper's API for an
//! upgrade (`GET /api/v1/links/{lower id}/tunnel`, `Upgrade: sharpeye-tunnel/1`, its link
//! token as the bearer); once upgraded, the upper speaks HTTP/2 as the client over that one
//! connection and the lower serves its API on it, so the upper's requests and the media flow
//! back as they would on a connection the upper opened. HTTP/2 keep-alive pings notice a dead
//! tunnel within seconds on both sides.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::client::LowerClient;
use crate::config::UpperConfig;

/// The upgrade protocol's name.
pub const PROTOCOL: &str = "sharpeye-tunnel/1";
/// How often each side pings the other over an idle tunnel.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Why a tunnel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The upper node cannot be reached.
    #[error("upper node {upper} at {addr}: {detail}")]
    Connect {
        /// Its id.
        upper: String,
        /// host:port.
        addr: String,
        /// What failed.
        detail: String,
    },
    /// It refused the tunnel.
    #[error("upper node {upper} refused the tunnel ({status}): {message}")]
    Refused {
        /// Its id.
        upper: String,
        /// HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
}

/// True when `given` is the link's token (compared through hashes, so timing says nothing of
/// how much of it matched).
pub fn token_matches(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// The lower side: connects to `upper` as node `own_id` and returns the upgraded connection, on
/// which the caller serves its API with HTTP/2.
pub async fn dial(upper: &UpperConfig, own_id: &str) -> Result<Upgraded, TunnelError> {
    let host = upper.url.host_str().unwrap_or_default().to_owned();
    let port = upper.url.port_or_known_default().unwrap_or(80);
    let addr = format!("{host}:{port}");
    let err = |detail: String| TunnelError::Connect {
        upper: upper.id.clone(),
        addr: addr.clone(),
        detail,
    };
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| err("no connection within 5 s".into()))?
        .map_err(|e| err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| err(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let req = Request::builder()
        .method("GET")
        .uri(format!("/api/v1/links/{own_id}/tunnel"))
        .header(hyper::header::HOST, &addr)
        .header(hyper::header::CONNECTION, "upgrade")
        .header(hyper::header::UPGRADE, PROTOCOL)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {}", upper.token))
        .body(Empty::<Bytes>::new())
        .map_err(|e| err(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| err("no answer to the tunnel request within 10 s".into()))?
        .map_err(|e| err(e.to_string()))?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status().as_u16();
        let body = crate::client::read_limited(resp.into_body(), 16 << 10)
            .await
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        return Err(TunnelError::Refused {
            upper: upper.id.clone(),
            status,
            message: v["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
                .chars()
                .take(300)
                .collect(),
        });
    }
    hyper::upgrade::on(resp).await.map_err(|e| err(e.to_string()))
}

/// The upper side: speaks HTTP/2 as the client over `upgraded` and hands the connection to
/// `client` until it ends (the lower node went away, or a newer tunnel replaced it).
pub async fn accept(upgraded: Upgraded, client: std::sync::Arc<LowerClient>) {
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE * 2)
        .keep_alive_while_idle(true);
    let (sender, conn) = match builder.handshake(upgraded).await {
        Ok(x) => x,
        Err(e) => {
            warn!(
                link = client.link(),
                "tunnel from lower node {}: HTTP/2 failed: {e}",
                client.link()
            );
            return;
        }
    };
    info!(link = client.link(), "lower node {} dialed up", client.link());
    client.set_tunnel(Some(sender));
    // When it ends its sender is closed, which the client sees as not connected (a newer
    // tunnel may already have replaced it).
    if let Err(e) = conn.await {
        warn!(
            link = client.link(),
            "tunnel from lower node {} ended: {e}",
            client.link()
        );
    }
}
