//! GB/T 28181 cascade upward (`[[gb28181.upper]]`): this node registers to upper platforms as
//! their lower platform and answers what they ask: its catalog (the cameras `share` covers,
//! placed under org nodes), DeviceInfo/DeviceStatus, RecordInfo from its recordings, PTZ for the
//! cameras `ptz` covers, and INVITEs for live video (one hub viewer: one upstream whatever the
//! number of local viewers and uppers), playback and download of its recordings, as PS over
//! RTP (`gbout`). Every INVITE, RecordInfo and PTZ is audited as the upper (and its end user
//! when it says one in `Monitor-User-Identity`).
//!
//! The signalling is `gb28181::upper` (sans-IO, inside the SIP server's task); this module is
//! the node's side: what to answer, and the media sessions.

pub mod catalog;
mod queries;
mod sessions;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use api::AppState;
use gb28181::platform::Event;
use gb28181::server::SipServer;
use gb28181::upper::{UpperConfig, UpperEvent};
use tracing::{info, warn};

use crate::config::{Gb28181Config, GbUpperConfig};
use crate::gb::GbDevices;
use catalog::{CatalogBuilder, Ids, SharedCamera};

/// One upper platform's side: its configuration, the ids of the catalog it was last given,
/// its link budget.
struct Upper {
    cfg: GbUpperConfig,
    ids: RwLock<Ids>,
    /// The catalog it was last sent (for the changes to NOTIFY).
    last: Mutex<Vec<gb28181::manscdp_out::CatalogEntry>>,
    budget: Mutex<hierarchy::budget::Budget>,
}

/// The node's cascade toward its upper platforms.
pub struct Cascade {
    sip: Arc<SipServer>,
    state: Arc<AppState>,
    devices: Option<Arc<GbDevices>>,
    own_id: String,
    node_name: String,
    media_ip: IpAddr,
    utc_offset: i64,
    uppers: HashMap<String, Upper>,
    ssrc: Mutex<gb28181::sdp::SsrcAllocator>,
    sessions: sessions::Sessions,
    /// SNs of the notifies we start (alarms).
    sn: std::sync::atomic::AtomicU64,
}

impl Cascade {
    /// The cascade of `[gb28181]`'s uppers, answering from `state`.
    pub fn new(
        sip: Arc<SipServer>,
        state: Arc<AppState>,
        devices: Option<Arc<GbDevices>>,
        g: &Gb28181Config,
        node_name: &str,
        utc_offset: i64,
    ) -> Arc<Cascade> {
        let uppers = g
            .uppers
            .iter()
            .map(|u| {
                (
                    u.id.clone(),
                    Upper {
                        budget: Mutex::new(hierarchy::budget::Budget::new(
                            &format!("gb28181 upper {}", u.id),
                            u.link_kbps,
                        )),
                        cfg: u.clone(),
                        ids: RwLock::default(),
                        last: Mutex::default(),
                    },
                )
            })
            .collect();
        Arc::new(Cascade {
            sip,
            state,
            devices,
            own_id: g.id.clone(),
            node_name: node_name.to_owned(),
            media_ip: g.media_ip(),
            utc_offset,
            uppers,
            ssrc: Mutex::new(gb28181::sdp::SsrcAllocator::new(&g.domain)),
            sessions: sessions::Sessions::default(),
            sn: std::sync::atomic::AtomicU64::new(1),
        })
    }

    fn own_id_for(&self, u: &GbUpperConfig) -> String {
        u.own_id.clone().unwrap_or_else(|| self.own_id.clone())
    }

    /// Registers to every upper and answers them until the SIP server stops.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut events = me.sip.subscribe();
            for u in me.uppers.values() {
                let c = &u.cfg;
                let mut cfg = UpperConfig::new(
                    &c.id,
                    &c.domain,
                    c.address,
                    &me.own_id_for(c),
                    me.sip.local_addr(),
                    &c.password,
                );
                cfg.transport = c.transport;
                cfg.username = c.username.clone();
                cfg.keepalive = c.keepalive;
                cfg.expires = c.expires;
                cfg.charset = c.charset;
                cfg.utc_offset_secs = me.utc_offset;
                cfg.reuse_call_id = c.reuse_call_id;
                cfg.ack_timeout = c.ack_timeout;
                // Over TCP a message can be as large as it needs.
                if c.transport == gb28181::platform::Transport::Tcp {
                    cfg.max_message = 60_000;
                }
                if let Err(e) = me.sip.add_upper(cfg).await {
                    warn!(upper = %c.id, "GB28181 cascade: {e}");
                }
            }
            me.spawn_change_notifier();
            loop {
                match events.recv().await {
                    Ok(Event::Upper { upper, event }) => me.clone().handle(upper, event),
                    Ok(Event::Document { doc, .. }) if doc.is("Notify", "Alarm") => {
                        let me = me.clone();
                        tokio::spawn(async move { me.forward_alarm(&doc).await });
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!(
                            "GB28181 cascade fell {n} events behind; some upper requests go unanswered (they will ask again)"
                        )
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    fn handle(self: Arc<Self>, upper: String, event: UpperEvent) {
        if !self.uppers.contains_key(&upper) {
            return;
        }
        match event {
            UpperEvent::Registered => info!(upper = %upper, "GB28181 cascade: registered to upper platform"),
            UpperEvent::Failed { status, reason } => {
                warn!(upper = %upper, ?status, "GB28181 cascade: registration failed: {reason}")
            }
            UpperEvent::Lost { reason } => warn!(upper = %upper, "GB28181 cascade: {reason}; registering again"),
            UpperEvent::Query { sn, query, user } => {
                tokio::spawn(async move { self.answer(&upper, sn, query, user).await });
            }
            UpperEvent::Control { sn, channel, ptz, user } => {
                tokio::spawn(async move { self.control(&upper, sn, &channel, ptz, user).await });
            }
            UpperEvent::CatalogSubscribed { expires } => {
                info!(upper = %upper, ?expires, "GB28181 cascade: catalog subscription")
            }
            UpperEvent::Invite {
                dialog,
                channel,
                invitation,
                user,
            } => {
                tokio::spawn(async move { self.invite(&upper, dialog, &channel, *invitation, user).await });
            }
            UpperEvent::Acked { dialog } => self.acked(&upper, dialog),
            UpperEvent::Info { dialog, body } => self.sessions.control(&upper, dialog, &body),
            UpperEvent::Ended { dialog, reason } => {
                info!(upper = %upper, dialog, "GB28181 cascade: session ended: {reason}");
                self.end_session(&upper, dialog);
            }
        }
    }

    /// The cameras `u` may see now, as the catalog needs them.
    fn shared(&self, u: &Upper) -> Vec<SharedCamera> {
        let snap = self.state.auth.snapshot();
        let cameras = self.state.cameras.snapshot();
        snap.policy
            .cameras_covered(&u.cfg.share)
            .into_iter()
            .filter_map(|id| {
                let c = cameras.get(&id)?;
                Some(SharedCamera {
                    name: c.info.name.clone(),
                    org: c.info.org.clone(),
                    online: c.status() == "online" || c.status() == "idle",
                    location: c.info.location,
                    ptz: snap.policy.covered(&u.cfg.ptz, &id),
                    id,
                })
            })
            .collect()
    }

    /// Builds `u`'s catalog now (remembering its ids).
    fn catalog(&self, u: &Upper) -> Vec<gb28181::manscdp_out::CatalogEntry> {
        let own = self.own_id_for(&u.cfg);
        let (entries, ids) = CatalogBuilder {
            own_id: &own,
            node_name: &self.node_name,
        }
        .build(&self.shared(u));
        *u.ids.write().unwrap_or_else(|p| p.into_inner()) = ids;
        entries
    }

    fn next_sn(&self) -> u64 {
        self.sn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// `camera`'s channel id in `u`'s catalog, if it is shared with it.
    fn channel_for(&self, u: &Upper, camera: &str) -> Option<String> {
        if !self.state.auth.snapshot().policy.covered(&u.cfg.share, camera) {
            return None;
        }
        let known = u
            .ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .channel_of
            .get(camera)
            .cloned();
        known.or_else(|| {
            self.catalog(u);
            u.ids
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .channel_of
                .get(camera)
                .cloned()
        })
    }

    /// Passes a device channel's alarm up, as an Alarm notify under the channel's id there,
    /// to every upper the camera is shared with.
    async fn forward_alarm(&self, doc: &gb28181::manscdp::Document) {
        let camera = doc.device_id.as_str();
        if !self.state.cameras.contains_key(camera) {
            return;
        }
        let el = &doc.element;
        let priority = el.number_of::<u8>("AlarmPriority").unwrap_or(4).clamp(1, 4);
        let method = el.number_of::<u8>("AlarmMethod").unwrap_or(5).clamp(1, 7);
        let time = el
            .text_of("AlarmTime")
            .unwrap_or_default()
            .chars()
            .take(32)
            .collect::<String>();
        let description: String = el
            .text_of("AlarmDescription")
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect();
        for (id, u) in &self.uppers {
            let Some(channel) = self.channel_for(u, camera) else {
                continue;
            };
            let body = gb28181::manscdp_out::alarm_notify(
                self.next_sn(),
                &channel,
                priority,
                method,
                &time,
                &description,
                u.cfg.charset,
            );
            info!(upper = %id, camera, channel = %channel, "GB28181 cascade: alarm passed up");
            self.sip.upper_answer(id, body).await;
        }
    }

    /// Our camera behind channel `channel` of `upper`'s catalog, if it is shared with it.
    fn camera_of(&self, upper: &str, channel: &str) -> Option<String> {
        let u = self.uppers.get(upper)?;
        let known = u
            .ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .camera_of
            .get(channel)
            .cloned();
        // Asked before any catalog (an upper that remembers channels): build one.
        let camera = match known {
            Some(c) => c,
            None => {
                self.catalog(u);
                u.ids
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .camera_of
                    .get(channel)?
                    .clone()
            }
        };
        self.state
            .auth
            .snapshot()
            .policy
            .covered(&u.cfg.share, &camera)
            .then_some(camera)
    }

    /// Every few seconds, tells subscribed uppers what changed in their catalogs.
    fn spawn_change_notifier(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                for (id, u) in &me.uppers {
                    let now = me.catalog(u);
                    let changes = {
                        let mut last = u.last.lock().unwrap_or_else(|p| p.into_inner());
                        let changes = queries::changes(&last, &now);
                        *last = now;
                        changes
                    };
                    if !changes.is_empty() {
                        me.sip.upper_notify(id, changes).await;
                    }
                }
            }
        });
    }
}

impl api::device_access::UpperAccess for Cascade {
    fn uppers(&self) -> futures::future::BoxFuture<'static, Vec<serde_json::Value>> {
        let shared: HashMap<String, usize> = self
            .uppers
            .iter()
            .map(|(id, u)| (id.clone(), self.shared(u).len()))
            .collect();
        let sip = self.sip.clone();
        Box::pin(async move {
            let now = media::WallTime::now();
            sip.uppers()
                .await
                .into_iter()
                .map(|v| {
                    serde_json::json!({
                        "id": v.id,
                        "address": v.addr.to_string(),
                        "transport": v.transport,
                        "registered": v.registered,
                        "state": v.state,
                        "reason": v.reason,
                        "last_keepalive": v.last_keepalive_ago.map(|a| now.add_micros(-(a.as_micros() as i64)).to_rfc3339()),
                        "sessions": v.sessions,
                        "shared": shared.get(&v.id).copied().unwrap_or(0),
                    })
                })
                .collect()
        })
    }
}
