//! Webhooks: `/api/v1/webhooks` to manage subscriptions (administrators), and the delivery
//! loop: one task per live subscription reads the event log after its cursor, keeps what its
//! filter wants, POSTs them as one signed JSON body, and moves the cursor only on a 2xx. The
//! rules (filters, backoff, body, signature, the file) are `eventlog::webhook`'s; this is the
//! HTTP side.

use std::sync::Arc;
use std::time::Duration;

use auth::Action;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use eventlog::webhook::{self, CameraFacts, NewSubscription, State as HookState, Subscription};
use eventlog::{EventLogError, Stored};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use media::WallTime;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::events::NodeEvent;
use crate::request::json_body;
use crate::state::AppState;
use crate::time;

/// How long a receiver may take to answer a delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How deliveries are retried: `[events] retry_min` doubling to `retry_max`.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// After the first failure.
    pub min: Duration,
    /// At most.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            min: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

fn refused(e: EventLogError) -> ApiError {
    match e {
        EventLogError::Invalid { .. } => ApiError::bad_request(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// A subscription as the API shows it: never its secret.
fn hook_json(state: &AppState, s: &Subscription) -> Value {
    let last = state.events.log().last_seq();
    json!({
        "id": s.id,
        "url": s.url,
        "kinds": s.filter.kinds,
        "cameras": s.filter.cameras,
        "org": s.filter.org,
        "grid": s.filter.grid,
        "max_failures": s.max_failures,
        "created_by": s.created_by,
        "created": time::format(WallTime::from_micros(s.created_us)),
        "state": s.state,
        "cursor": s.cursor,
        "lag": last.saturating_sub(s.cursor),
        "failures": s.failures,
        "last_error": s.last_error,
        "delivered": s.delivered,
        "missed": s.missed,
    })
}

fn no_hook(id: &str) -> ApiError {
    ApiError::not_found(format!("no webhook {:?}", id.chars().take(40).collect::<String>()))
}

/// `GET /api/v1/webhooks`.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Action::Admin, None)?;
    Ok(Json(Value::Array(
        state.webhooks.list().iter().map(|s| hook_json(&state, s)).collect(),
    )))
}

/// `GET /api/v1/webhooks/{id}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Action::Admin, None)?;
    let s = state.webhooks.get(&id).ok_or_else(|| no_hook(&id))?;
    Ok(Json(hook_json(&state, &s)))
}

/// `POST /api/v1/webhooks`: 201 and the subscription (without its secret). Audited.
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<NewSubscription>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&state, Action::Admin, None)?;
    let req = json_body(
        body,
        "{\"url\": \"http://...\", \"secret\", \"kinds\"?, \"cameras\"?, \"org\"?, \"grid\"?, \"max_failures\"?, \"from\"?}",
    )?;
    let log = state.events.log();
    let id = format!("wh-{:012x}", rand::random::<u64>() >> 16);
    let sub = req
        .check(
            id,
            &caller.who.actor(),
            WallTime::now().as_micros(),
            log.last_seq(),
            log.first_seq(),
        )
        .map_err(refused)?;
    let st = state.clone();
    let s2 = sub.clone();
    tokio::task::spawn_blocking(move || st.webhooks.add(s2))
        .await
        .map_err(ApiError::internal)?
        .map_err(refused)?;
    let mut e = caller.event("webhook.create", None);
    e.target = Some(sub.id.clone());
    e.detail = json!({ "url": sub.url, "kinds": sub.filter.kinds });
    state.audit(e).await?;
    spawn_delivery(Deliveries::of(&state), sub.id.clone());
    Ok((StatusCode::CREATED, Json(hook_json(&state, &sub))).into_response())
}

/// `DELETE /api/v1/webhooks/{id}`. Audited.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Action::Admin, None)?;
    let st = state.clone();
    let id2 = id.clone();
    let removed = tokio::task::spawn_blocking(move || st.webhooks.remove(&id2))
        .await
        .map_err(ApiError::internal)?
        .map_err(refused)?
        .ok_or_else(|| no_hook(&id))?;
    let mut e = caller.event("webhook.delete", None);
    e.target = Some(removed.id.clone());
    state.audit(e).await?;
    Ok(Json(json!({ "deleted": removed.id })))
}

/// `POST /api/v1/webhooks/{id}/retry`: a dead-lettered subscription delivers again from its
/// cursor. Audited.
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&state, Action::Admin, None)?;
    let st = state.clone();
    let id2 = id.clone();
    let was_dead = state.webhooks.get(&id).is_some_and(|s| s.state == HookState::Dead);
    let s = tokio::task::spawn_blocking(move || {
        st.webhooks.update(&id2, true, |s| {
            s.state = HookState::Active;
            s.failures = 0;
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(refused)?
    .ok_or_else(|| no_hook(&id))?;
    let mut e = caller.event("webhook.retry", None);
    e.target = Some(s.id.clone());
    state.audit(e).await?;
    if was_dead {
        spawn_delivery(Deliveries::of(&state), s.id.clone());
    }
    Ok(Json(hook_json(&state, &s)))
}

/// What filters ask about cameras, from the node's camera map and grid cells (held weakly:
/// the delivery tasks must not keep the node's state alive).
struct StateFacts(std::sync::Weak<AppState>);

impl CameraFacts for StateFacts {
    fn org(&self, camera: &str) -> Option<String> {
        self.0.upgrade()?.cameras.get(camera).map(|c| c.info.org.clone())
    }

    fn in_grid(&self, camera: &str, grid: &str) -> bool {
        let Some(state) = self.0.upgrade() else { return false };
        let (Some(c), Some(g)) = (state.cameras.get(camera), state.grids.get(grid)) else {
            return false;
        };
        c.info
            .location
            .is_some_and(|(lat, lon)| g.contains(places::Point { lat, lon }))
    }
}

/// What delivery tasks work from: the events, the subscriptions, this node's id, the retry
/// policy and what filters ask about cameras. Built from the node's state, or by hand (the
/// webhook benchmark drives the same loop without a node).
pub struct Deliveries {
    /// The events and their log.
    pub events: Arc<crate::events::Events>,
    /// The subscriptions.
    pub webhooks: Arc<eventlog::webhook::Subscriptions>,
    /// This node's id, in every body.
    pub node: String,
    /// How failures are retried.
    pub retry: Retry,
    /// What filters ask about cameras.
    pub facts: Arc<dyn CameraFacts + Send + Sync>,
}

impl Deliveries {
    /// The deliveries of `state`.
    pub fn of(state: &Arc<AppState>) -> Arc<Deliveries> {
        Arc::new(Deliveries {
            events: state.events.clone(),
            webhooks: state.webhooks.clone(),
            node: state.node.id.clone(),
            retry: state.webhook_retry,
            facts: Arc::new(StateFacts(Arc::downgrade(state))),
        })
    }
}

/// Starts a delivery task for every active subscription (at start-up).
pub fn spawn_all(d: &Arc<Deliveries>) {
    for s in d.webhooks.list() {
        if s.state == HookState::Active {
            spawn_delivery(d.clone(), s.id);
        }
    }
}

/// Writes moved cursors and syncs the event log every `every`, until the node stops.
pub fn spawn_durability(state: Arc<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let st = state.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = st.events.log().sync() {
                    tracing::error!(%e, "event log not synced");
                }
                if let Err(e) = st.webhooks.flush() {
                    tracing::error!(%e, "webhook cursors not written");
                }
            })
            .await;
        }
    })
}

/// The delivery task of subscription `id`: runs until it is deleted, dead-lettered or the
/// node stops.
pub fn spawn_delivery(d: Arc<Deliveries>, id: String) -> tokio::task::JoinHandle<()> {
    let span = tracing::info_span!("webhook", id = %id);
    tokio::spawn(tracing::Instrument::instrument(deliver(d, id), span))
}

async fn deliver(d: Arc<Deliveries>, id: String) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut rx = d.events.subscribe();
    let mut closed = Box::pin(d.events.closed());
    loop {
        let Some(sub) = d.webhooks.get(&id) else { return };
        if sub.state == HookState::Dead {
            return;
        }
        // The recent tail is in memory: read it here; only a subscriber far behind reads files,
        // off the runtime's threads.
        let read = if sub.cursor + 1 >= d.events.log().tail_first() {
            d.events.log().read_after(sub.cursor, webhook::MAX_BATCH)
        } else {
            let (d2, after) = (d.clone(), sub.cursor);
            match tokio::task::spawn_blocking(move || d2.events.log().read_after(after, webhook::MAX_BATCH)).await {
                Ok(r) => r,
                Err(_) => return,
            }
        };
        let batch = match read {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%e, "webhook: the event log could not be read; retrying");
                Vec::new()
            }
        };
        if batch.is_empty() {
            // Caught up: wait for the next event (or a second, in case one was missed).
            tokio::select! {
                _ = rx.recv() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = &mut closed => return,
            }
            continue;
        }
        let missed = batch[0].seq.saturating_sub(sub.cursor + 1);
        let last = batch.last().map_or(sub.cursor, |e| e.seq);
        let wanted: Vec<Arc<Stored>> = batch
            .into_iter()
            .filter(|e| sub.filter.matches(e, d.facts.as_ref()))
            .collect();
        let outcome = if wanted.is_empty() {
            Ok(())
        } else {
            post(&client, &d.node, &sub, &wanted).await
        };
        match outcome {
            Ok(()) => {
                let n = wanted.len() as u64;
                let _ = d.webhooks.update(&id, false, |s| {
                    s.cursor = last;
                    s.delivered += n;
                    s.missed += missed;
                    s.failures = 0;
                    s.last_error = None;
                });
                if n > 0 {
                    tracing::debug!(events = n, cursor = last, "webhook delivered");
                }
            }
            Err(why) => {
                let dead = sub.failures + 1 >= sub.max_failures;
                let updated = d.webhooks.update(&id, dead, |s| {
                    s.failures += 1;
                    s.last_error = Some(why.clone());
                    if dead {
                        s.state = HookState::Dead;
                    }
                });
                if let Err(e) = updated {
                    tracing::error!(%e, "webhook state not written");
                }
                if dead {
                    tracing::warn!(url = %sub.url, failures = sub.failures + 1, %why, "webhook dead-lettered; POST /api/v1/webhooks/{id}/retry revives it");
                    d.events.publish(NodeEvent {
                        kind: "webhook.dead",
                        camera: None,
                        data: json!({ "webhook": id, "url": sub.url, "error": why, "cursor": sub.cursor }),
                    });
                    return;
                }
                let wait = webhook::backoff(sub.failures + 1, d.retry.min, d.retry.max, rand::random());
                tracing::info!(url = %sub.url, failures = sub.failures + 1, ?wait, %why, "webhook delivery failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut closed => return,
                }
            }
        }
    }
}

/// One delivery: 2xx within [`DELIVERY_TIMEOUT`] or the reason it failed.
async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    node: &str,
    sub: &Subscription,
    events: &[Arc<Stored>],
) -> Result<(), String> {
    let body = webhook::body(node, &sub.id, events);
    let ts = WallTime::now().as_micros() / 1_000_000;
    let signature = webhook::sign(&sub.secret, ts, &body);
    let first = events.first().map_or(0, |e| e.seq);
    let last = events.last().map_or(0, |e| e.seq);
    let req = hyper::Request::post(sub.url.as_str())
        .header("content-type", "application/json")
        .header("user-agent", concat!("sharpeye/", env!("CARGO_PKG_VERSION")))
        .header("x-sharpeye-webhook", sub.id.as_str())
        .header("x-sharpeye-timestamp", ts.to_string())
        .header("x-sharpeye-signature", signature)
        .header("x-sharpeye-sequence", format!("{first}-{last}"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request to {}: {e}", sub.url))?;
    match tokio::time::timeout(DELIVERY_TIMEOUT, client.request(req)).await {
        Err(_) => Err(format!("{} did not answer within {DELIVERY_TIMEOUT:?}", sub.url)),
        Ok(Err(e)) => Err(format!("{}: {e}", sub.url)),
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("{} answered {}", sub.url, resp.status())),
    }
}
