//! Keeping an upper node's picture of a lower node current: its cameras (a full listing at
//! connect and every `resync`), their state from its event stream between listings, and the
//! link itself (down the moment the event stream breaks, back as soon as it answers).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::{info, warn};

use crate::catalog::{RemoteCamera, parse_listing};
use crate::client::{Call, next_chunk};
use crate::link::Link;
use crate::sse::SseParser;

/// What the node does with a link's catalog and state.
pub trait CatalogSink: Send + Sync + 'static {
    /// Cameras the lower node shares that it did not share before.
    fn added(&self, link: &Arc<Link>, cameras: Vec<RemoteCamera>);
    /// Cameras it no longer shares.
    fn removed(&self, link: &Arc<Link>, ids: Vec<String>);
    /// A camera's state: `status` as the lower node reports it, or `offline` with the reason
    /// while the link is down.
    fn status(&self, link: &Arc<Link>, camera: &str, status: &str, reason: Option<String>);
    /// A camera's video as the lower node judges it: `None` usable, else the cause
    /// ([`crate::catalog::cause_of`]).
    fn intact(&self, link: &Arc<Link>, camera: &str, cause: Option<String>);
    /// Called when the lower node signed a new audit head, and at least once a minute while
    /// the link is up: for what else rides on it (fetching the heads).
    fn periodic(&self, _link: &Arc<Link>) {}
}

/// How often an up link's event stream is checked for silence (the lower node sends a comment
/// every 15 s).
const EVENT_SILENCE: Duration = Duration::from_secs(20);

/// Keeps `link`'s catalog current through `sink`, until the task is aborted: a full listing
/// every `resync`, events between, and the link marked down (every camera offline, with why)
/// when the lower node stops answering, retried every `retry`.
pub fn spawn_sync(
    link: Arc<Link>,
    sink: Arc<dyn CatalogSink>,
    resync: Duration,
    retry: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_periodic = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            match session(&link, sink.as_ref(), resync, &mut last_periodic).await {
                Ok(()) => continue,
                Err(reason) => {
                    if link.mark_down(&reason) {
                        warn!(link = link.id(), "lower node {} unreachable: {reason}", link.id());
                        let why = link.down_reason();
                        for c in link.cameras() {
                            sink.status(&link, &c.id, "offline", why.clone());
                        }
                    }
                    tokio::time::sleep(retry).await;
                }
            }
        }
    })
}

/// One connection's worth: a listing, then events until `resync` is due (`Ok`) or the lower
/// node fails (`Err` with why).
async fn session(
    link: &Arc<Link>,
    sink: &dyn CatalogSink,
    resync: Duration,
    last_periodic: &mut std::time::Instant,
) -> Result<(), String> {
    let client = link.client();
    if !client.connected() {
        return Err("it has not dialed up yet (dial = \"up\")".into());
    }
    // The event stream first, then the listing: a camera the lower node adopts between the two
    // (a street that has just restarted, still adopting its communities' cameras) is announced
    // on a stream already open, instead of waiting for the next full listing.
    let events = client
        .send(Call::get("/api/v1/events", None))
        .await
        .map_err(|e| e.to_string())?;
    let listing = client
        .json(Call::get("/api/v1/cameras", None))
        .await
        .map_err(|e| e.to_string())?;
    let (cameras, bad) = parse_listing(&listing, link.id()).map_err(|e| format!("bad camera listing: {e}"))?;
    for b in bad.iter().take(5) {
        warn!(link = link.id(), "lower node {}: camera left out: {b}", link.id());
    }
    if link.mark_up() {
        info!(
            link = link.id(),
            cameras = cameras.len(),
            "lower node {} is up",
            link.id()
        );
    }
    let statuses: Vec<(String, String, Option<String>, Option<String>)> = cameras
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                c.status.clone(),
                c.status_reason.clone(),
                c.intact_cause.clone(),
            )
        })
        .collect();
    let (added, removed, absent) = link.set_cameras(cameras);
    if !removed.is_empty() {
        sink.removed(link, removed);
    }
    if !added.is_empty() {
        sink.added(link, added);
    }
    for (id, status, reason, fault) in statuses {
        sink.status(link, &id, &status, reason);
        sink.intact(link, &id, fault);
    }
    for id in absent {
        let why = format!("lower node {} does not list it now", link.id());
        sink.status(link, &id, "offline", Some(why));
    }
    if last_periodic.elapsed() >= Duration::from_secs(60) {
        sink.periodic(link);
        *last_periodic = std::time::Instant::now();
    }
    // Events until the next full listing.
    let mut body = events.into_body();
    let mut parser = SseParser::default();
    let deadline = tokio::time::Instant::now() + resync;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let chunk = match tokio::time::timeout(left, next_chunk(&mut body, EVENT_SILENCE)).await {
            Err(_) => return Ok(()),
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return Err("it closed its event stream".into()),
            Ok(Err(e)) => return Err(format!("its event stream broke: {e}")),
        };
        parser.push(&chunk)?;
        while let Some(e) = parser.poll() {
            let data: Value = serde_json::from_str(&e.data).unwrap_or_default();
            let camera = data["camera"].as_str().unwrap_or_default();
            match e.event.as_str() {
                "camera.online" | "camera.offline" if link.camera(camera).is_some() => {
                    let status = data["status"].as_str().unwrap_or("offline");
                    let reason = data["status_reason"].as_str().map(|r| r.chars().take(300).collect());
                    sink.status(link, camera, status, reason);
                }
                "camera.intact" if link.camera(camera).is_some() => sink.intact(link, camera, None),
                "camera.not_intact" if link.camera(camera).is_some() => {
                    sink.intact(link, camera, Some(crate::catalog::cause_of(&data["cause"])));
                }
                // A camera shared or withdrawn: list again now.
                "camera.added" | "camera.removed" => return Ok(()),
                "audit.head" => sink.periodic(link),
                _ => {}
            }
        }
    }
}
