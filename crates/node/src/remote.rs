//! The node's links to lower nodes: their cameras adopted as remote cameras (through the same
//! registry as its own, never recorded), kept current by each link's sync, and admitted across
//! each link's budget when someone watches.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use api::remote_access::{RemoteAccess, RemoteBody, RemoteError, RemoteRequest};
use api::{CameraInfo, RemoteState};
use futures::future::BoxFuture;
use hierarchy::cache::Cache;
use hierarchy::catalog::RemoteCamera;
use hierarchy::client::LowerClient;
use hierarchy::client::{Call, ClientError};
use hierarchy::config::{Dial, LowerConfig};
use hierarchy::recorded::{Recorded, RecordedError, RecordedRequest};
use hierarchy::remote::RemoteSource;
use hierarchy::sync::CatalogSink;
use hierarchy::{Link, LinkState};
use ingest::rtsp::PullSettings;
use media::{StreamId, StreamKind};
use serde_json::Value;
use tracing::{info, warn};

use crate::cameras::{CameraRegistry, NewCamera};
use crate::sources::Source;

/// How often a lower node's whole listing is read again.
const RESYNC: Duration = Duration::from_secs(30);
/// How soon an unreachable lower node is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The node's links and the cameras behind them.
pub struct RemoteCameras {
    links: HashMap<String, Arc<Link>>,
    /// Camera id → the link it comes through.
    by_camera: RwLock<HashMap<String, Arc<Link>>>,
    registry: OnceLock<Arc<CameraRegistry>>,
    pull: PullSettings,
    /// The temporary cache of recorded video fetched from below.
    cache: Option<Arc<Cache>>,
    /// Where the signed audit heads of lower nodes are kept (`<node>.jsonl`).
    heads: std::path::PathBuf,
    /// Links whose heads are being fetched now (one fetch at a time per link).
    fetching: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Itself, for the tasks it starts.
    me: std::sync::Weak<RemoteCameras>,
}

/// The API's error for a failed request to a lower node.
fn lower_error(e: ClientError) -> RemoteError {
    match e {
        ClientError::Unreachable { .. } => RemoteError::Unreachable(e.to_string()),
        ClientError::Status {
            ref link,
            status,
            ref code,
            ref message,
        } => RemoteError::Lower {
            status,
            code: code.clone(),
            message: format!("lower node {link}: {message}"),
        },
        ClientError::BadAnswer { .. } => RemoteError::Lower {
            status: 502,
            code: "lower_error".into(),
            message: e.to_string(),
        },
    }
}

impl RemoteCameras {
    /// The links of `lower`; remote streams are pulled with `pull`'s watchdog, delays and
    /// frame limit; recorded video goes through `cache`.
    pub fn new(
        lower: &[LowerConfig],
        pull: PullSettings,
        cache: Option<Arc<Cache>>,
        heads: std::path::PathBuf,
    ) -> Arc<RemoteCameras> {
        let links = lower
            .iter()
            .map(|l| {
                let client = match (l.dial, &l.url) {
                    (Dial::Down, Some(url)) => LowerClient::direct(&l.id, url.clone(), &l.token),
                    _ => LowerClient::tunnel(&l.id, &l.token),
                };
                (l.id.clone(), Link::new(l.clone(), client.shared()))
            })
            .collect();
        Arc::new_cyclic(|me| RemoteCameras {
            me: me.clone(),
            links,
            by_camera: RwLock::default(),
            registry: OnceLock::new(),
            pull,
            cache,
            heads,
            fetching: std::sync::Mutex::default(),
        })
    }

    /// One link.
    pub fn link(&self, id: &str) -> Option<&Arc<Link>> {
        self.links.get(id)
    }

    /// Starts keeping every link's catalog current and its budget measured, adding cameras
    /// through `registry`; the tasks end when aborted.
    pub fn start(self: &Arc<Self>, registry: Arc<CameraRegistry>) -> Vec<tokio::task::JoinHandle<()>> {
        let _ = self.registry.set(registry);
        let mut tasks: Vec<_> = self
            .links
            .values()
            .map(|l| hierarchy::sync::spawn_sync(l.clone(), self.clone() as Arc<dyn CatalogSink>, RESYNC, RETRY))
            .collect();
        let links: Vec<Arc<Link>> = self.links.values().cloned().collect();
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                for l in &links {
                    for stream in l.tick() {
                        me.shed(l, &stream);
                    }
                }
            }
        }));
        tasks
    }

    /// `stream` was shed to bring `link` back within its budget: its viewers here are
    /// disconnected (a stalled view would look like a fault), and the pull stops once idle.
    fn shed(&self, link: &Link, stream: &media::StreamId) {
        let viewers = self
            .registry
            .get()
            .and_then(|r| r.hub.channel(stream))
            .map_or(0, |c| c.close_viewers());
        warn!(
            link = link.id(),
            "link {} over its budget for {:?}: shed {stream}, disconnecting its {viewers} viewer(s); raise link_mbps if its cameras need more",
            link.id(),
            hierarchy::link::OVER_BUDGET_GRACE
        );
    }

    fn link_of(&self, camera: &str) -> Option<Arc<Link>> {
        self.by_camera
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(camera)
            .cloned()
    }

    fn source(&self, link: &Arc<Link>, stream: StreamId) -> Source {
        Source::Remote(RemoteSource {
            link: link.clone(),
            stream,
            // The lower node starts its own pull on demand: give it longer than a camera.
            watchdog: self.pull.watchdog.max(Duration::from_secs(6)),
            retry: self.pull.retry,
            max_frame_bytes: self.pull.max_frame_bytes,
        })
    }

    fn camera(&self, link: &Arc<Link>, c: RemoteCamera) -> NewCamera {
        let mut streams = vec![(StreamKind::Main, self.source(link, StreamId::main(c.id.as_str())))];
        if c.has_sub {
            streams.push((
                StreamKind::Sub,
                self.source(link, StreamId::new(c.id.as_str(), StreamKind::Sub)),
            ));
        }
        // Its place in this node's tree: under the link's org. A lower node that names its
        // cameras in the same tree (their org already under the link's) keeps its names.
        let base = &link.config().org;
        let org = match c.org.trim_matches('/') {
            "" => base.clone(),
            o if o == base || o.starts_with(&format!("{base}/")) => o.to_owned(),
            o => format!("{base}/{o}"),
        };
        let remote = Arc::new(RemoteState::new(link.id(), &c.status));
        NewCamera {
            info: CameraInfo {
                path: c.path_from_here(link.id()),
                id: c.id,
                name: c.name,
                tier: c.tier,
                org,
                location: c.location,
                view: None,
                record: false,
                has_sub: c.has_sub,
                h264: false,
                node: c.node,
            },
            streams,
            device: None,
            remote: Some(remote),
        }
    }
}

/// A node id fit to name a file.
fn node_file(id: &str) -> Option<String> {
    (!id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    .then(|| format!("{id}.jsonl"))
}

/// Keeps the heads a lower node sent (its own and those it holds for the nodes below it) that
/// are new and correctly signed, each node's in its own file under `dir`; returns how many.
fn keep_heads(dir: &std::path::Path, answer: &Value, link: &str) -> usize {
    use auth::audit::heads::{SignedHead, append, read};
    let mut kept = 0;
    let mut groups: Vec<(String, &Value)> =
        vec![(answer["node"].as_str().unwrap_or(link).to_owned(), &answer["heads"])];
    if let Some(held) = answer["held"].as_object() {
        groups.extend(held.iter().map(|(k, v)| (k.clone(), v)));
    }
    for (node, list) in groups {
        let Some(file) = node_file(&node) else { continue };
        let path = dir.join(file);
        let known = read(&path);
        let key = known.first().map(|h| h.key.clone());
        let last = known.iter().map(|h| h.seq).max();
        for v in list.as_array().into_iter().flatten().take(2000) {
            let Ok(h) = serde_json::from_value::<SignedHead>(v.clone()) else {
                continue;
            };
            if h.node != node || last.is_some_and(|l| h.seq <= l) {
                continue;
            }
            if let Err(e) = h.verify(key.as_deref()) {
                warn!(link, "audit head from lower node refused: {e}");
                continue;
            }
            if append(&path, &h).is_ok() {
                kept += 1;
            }
        }
    }
    kept
}

/// The last head kept of `link`'s own, and `node:seq` of every other node's kept under `dir`
/// (which of them come through `link` is for it to say): what to ask `link` for after.
fn heads_held(dir: &std::path::Path, link: &str) -> (u64, String) {
    let last = |f: &std::path::Path| auth::audit::heads::last(f).map_or(0, |h| h.seq);
    let own = node_file(link).map_or(0, |f| last(&dir.join(f)));
    let mut others = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_suffix(".jsonl")
            && n != link
        {
            others.push(format!("{n}:{}", last(&e.path())));
        }
    }
    (own, others.join(","))
}

impl CatalogSink for RemoteCameras {
    fn periodic(&self, link: &Arc<Link>) {
        let id = link.id().to_owned();
        if !self
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
        {
            return;
        }
        let (link, dir, me) = (link.clone(), self.heads.clone(), self.me.clone());
        tokio::spawn(async move {
            let (since, held_since) = {
                let dir = dir.clone();
                let id = id.clone();
                tokio::task::spawn_blocking(move || heads_held(&dir, &id))
                    .await
                    .unwrap_or_default()
            };
            match link
                .client()
                .json(Call::get(
                    format!("/api/v1/audit/heads?since={since}&held_since={held_since}"),
                    None,
                ))
                .await
            {
                Ok(answer) => {
                    let (d, l) = (dir, id.clone());
                    let n = tokio::task::spawn_blocking(move || keep_heads(&d, &answer, &l))
                        .await
                        .unwrap_or(0);
                    tracing::debug!(link = %id, heads = n, "audit heads of lower nodes kept");
                    // Passed on up at once: this node's upper fetches heads when told of new
                    // ones, and its own head may not change for a long while.
                    if let (true, Some(me)) = (n > 0, me.upgrade())
                        && let Some(r) = me.registry.get()
                    {
                        r.state.events.publish(api::events::NodeEvent {
                            kind: "audit.head",
                            camera: None,
                            data: serde_json::json!({ "held_from": id, "kept": n }),
                        });
                    }
                }
                Err(e) => warn!(link = %id, "audit heads not fetched: {e}"),
            }
            if let Some(me) = me.upgrade() {
                me.fetching.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            }
        });
    }

    fn added(&self, link: &Arc<Link>, cameras: Vec<RemoteCamera>) {
        let Some(registry) = self.registry.get() else { return };
        let known = registry.state.cameras.snapshot();
        let mut batch = Vec::new();
        {
            let mut by = self.by_camera.write().unwrap_or_else(|p| p.into_inner());
            for c in cameras {
                if known.contains_key(&c.id) {
                    warn!(
                        link = link.id(),
                        camera = %c.id,
                        "lower node {} shares camera {} but this node already has a camera with that id; left out",
                        link.id(),
                        c.id
                    );
                    continue;
                }
                by.insert(c.id.clone(), link.clone());
                batch.push(self.camera(link, c));
            }
        }
        let n = registry.add(batch);
        if n > 0 {
            info!(
                link = link.id(),
                cameras = n,
                "cameras of lower node {} adopted",
                link.id()
            );
        }
    }

    fn removed(&self, link: &Arc<Link>, ids: Vec<String>) {
        let Some(registry) = self.registry.get() else { return };
        let ids: Vec<String> = {
            let mut by = self.by_camera.write().unwrap_or_else(|p| p.into_inner());
            let ours: Vec<String> = ids
                .into_iter()
                .filter(|id| by.get(id).is_some_and(|l| Arc::ptr_eq(l, link)))
                .collect();
            for id in &ours {
                by.remove(id);
            }
            ours
        };
        let n = registry.remove(&ids);
        if n > 0 {
            info!(
                link = link.id(),
                cameras = n,
                "lower node {} no longer shares {n} cameras",
                link.id()
            );
        }
    }

    fn status(&self, link: &Arc<Link>, camera: &str, status: &str, reason: Option<String>) {
        let Some(registry) = self.registry.get() else { return };
        if let Some(c) = registry.state.cameras.get(camera)
            && let Some(r) = &c.remote
            && r.link == link.id()
        {
            r.set(status, reason);
        }
    }

    fn intact(&self, link: &Arc<Link>, camera: &str, cause: Option<String>) {
        let Some(registry) = self.registry.get() else { return };
        if let Some(c) = registry.state.cameras.get(camera)
            && let Some(r) = &c.remote
            && r.link == link.id()
        {
            // A cause this node does not know (a newer lower node's) still means the video
            // is not usable: counted as no video, the plainest of them.
            r.set_fault(cause.map(|c| rates::Cause::parse(&c).unwrap_or(rates::Cause::NoVideo)));
        }
    }
}

impl RemoteAccess for RemoteCameras {
    fn is_remote(&self, camera: &str) -> bool {
        self.link_of(camera).is_some()
    }

    fn recorded(&self, camera: &str, req: RemoteRequest) -> BoxFuture<'static, Result<RemoteBody, RemoteError>> {
        let link = self.link_of(camera);
        let cache = self.cache.clone();
        let camera = camera.to_owned();
        Box::pin(async move {
            let link =
                link.ok_or_else(|| RemoteError::Unreachable(format!("camera {camera} is not a lower node's")))?;
            let kind = if req.path.contains("stream=sub") {
                StreamKind::Sub
            } else {
                StreamKind::Main
            };
            let kbps = link
                .recorded_kbps(&camera, kind)
                .saturating_mul(u64::from(req.speed.max(1)));
            let r = hierarchy::recorded::fetch(
                &link,
                cache.as_ref(),
                RecordedRequest {
                    path: req.path,
                    range: req.range,
                    head: req.head,
                    who: req.who,
                    cacheable: req.cacheable,
                    kbps,
                    plays_for: req.plays_for,
                },
            )
            .await;
            match r {
                Ok(Recorded::Cached { entry, status }) => Ok(RemoteBody::File {
                    path: entry.path,
                    len: entry.meta.len,
                    headers: entry.meta.headers,
                    whole: status == 200,
                }),
                Ok(Recorded::Streamed { status, headers, body }) => Ok(RemoteBody::Stream { status, headers, body }),
                Err(RecordedError::Budget(r)) => Err(RemoteError::Budget(r.message)),
                Err(RecordedError::Lower(e)) => Err(lower_error(e)),
            }
        })
    }

    fn call(
        &self,
        camera: &str,
        method: &str,
        path: String,
        body: Option<Value>,
        who: String,
    ) -> BoxFuture<'static, Result<Value, RemoteError>> {
        let link = self.link_of(camera);
        let camera = camera.to_owned();
        let method = hyper::Method::from_bytes(method.as_bytes()).unwrap_or(hyper::Method::GET);
        Box::pin(async move {
            let link =
                link.ok_or_else(|| RemoteError::Unreachable(format!("camera {camera} is not a lower node's")))?;
            let call = Call {
                method,
                path,
                json: body,
                on_behalf_of: Some(who),
                headers: Vec::new(),
            };
            link.client().json(call).await.map_err(lower_error)
        })
    }

    fn admit_live(&self, camera: &str, kind: StreamKind, who: &str) -> Option<Result<StreamKind, RemoteError>> {
        let link = self.link_of(camera)?;
        if let LinkState::Down { .. } = link.state() {
            return Some(Err(RemoteError::Unreachable(
                link.down_reason()
                    .unwrap_or_else(|| format!("lower node {} is unreachable", link.id())),
            )));
        }
        Some(
            link.admit_live(camera, kind, who)
                .map_err(|e| RemoteError::Budget(e.to_string())),
        )
    }

    fn served(&self, stream: &media::StreamId) -> Option<StreamKind> {
        self.link_of(stream.camera())?.served(stream)
    }

    fn tunnel(
        &self,
        link: &str,
        token: &str,
    ) -> Option<Box<dyn FnOnce(hyper::upgrade::Upgraded) -> BoxFuture<'static, ()> + Send>> {
        let l = self.links.get(link)?;
        if l.config().dial != Dial::Up || !hierarchy::tunnel::token_matches(token, &l.config().token) {
            return None;
        }
        let client = l.client().clone();
        Some(Box::new(move |upgraded| {
            Box::pin(hierarchy::tunnel::accept(upgraded, client))
        }))
    }

    fn cache(&self) -> Value {
        let Some(c) = &self.cache else { return Value::Null };
        let s = c.stats();
        serde_json::json!({
            "bytes": s.bytes,
            "max_bytes": s.max_bytes,
            "entries": s.entries,
            "hits": s.hits,
            "misses": s.misses,
            "hit_rate": (s.hit_rate() * 1000.0).round() / 1000.0,
            "evicted": s.evicted,
            "damaged": s.damaged,
        })
    }

    fn links(&self) -> Vec<Value> {
        let mut v: Vec<&Arc<Link>> = self.links.values().collect();
        v.sort_by(|a, b| a.id().cmp(b.id()));
        v.into_iter().map(|l| l.to_json()).collect()
    }
}
