//! `[[upper]]`: this node dials up to an upper node that cannot reach it (NAT, a one-way
//! gateway) and serves its API over that connection (see `hierarchy::tunnel`), keeping it open
//! and dialing again whenever it drops.

use std::time::Duration;

use hierarchy::config::UpperConfig;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tracing::{info, warn};

/// Keeps a tunnel to `upper` open as node `own_id`, serving `router` on it, until aborted.
pub fn spawn(upper: UpperConfig, own_id: String, router: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(500);
        let mut last_error: Option<String> = None;
        loop {
            match hierarchy::tunnel::dial(&upper, &own_id).await {
                Ok(upgraded) => {
                    info!(upper = %upper.id, "dialed up to upper node {}", upper.id);
                    last_error = None;
                    delay = Duration::from_millis(500);
                    let mut server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    server
                        .timer(TokioTimer::new())
                        .keep_alive_interval(hierarchy::tunnel::KEEP_ALIVE)
                        .keep_alive_timeout(hierarchy::tunnel::KEEP_ALIVE * 2);
                    let served = server
                        .serve_connection(upgraded, TowerToHyperService::new(router.clone()))
                        .await;
                    warn!(upper = %upper.id, "tunnel to upper node {} closed: {}; dialing again", upper.id, match served {
                        Ok(()) => "by the upper node".to_owned(),
                        Err(e) => e.to_string(),
                    });
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(&text) {
                        warn!(upper = %upper.id, "cannot dial up: {text}; trying again");
                        last_error = Some(text);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    })
}
