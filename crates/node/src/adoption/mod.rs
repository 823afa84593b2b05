//! Adopting GB/T 28181 catalog channels as cameras while the node runs: each video channel of
//! a registered device's or lower platform's catalog becomes a camera through the same
//! [`CameraRegistry`] as the configured ones, placed under the org nodes of that catalog
//! ([`tree`]), kept current by catalog answers and change notifications, and — when not
//! recorded here — shown online or offline with its device ([`presence`]).

pub mod presence;
pub mod tree;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use api::CameraInfo;
use gb28181::manscdp::CatalogItem;
use gb28181::platform::{Event, OfflineReason};
use gb28181::server::SipServer;
use media::{StreamId, StreamKind};
use tracing::info;

use crate::cameras::{CameraRegistry, NewCamera};
use crate::config::{Gb28181Config, PullSettings};
use crate::sources::Source;
use presence::Presence;
use tree::OrgTree;

/// `item` of `device`'s catalog as a camera: id = channel id, org
/// `<gb28181.org>/<device>[/<org nodes above it>]`, recorded if `record_discovered`; `None`
/// for an id that is not a plain id.
pub fn adopted(
    device: &str,
    item: &CatalogItem,
    path: &[String],
    g: &Gb28181Config,
    pull: &PullSettings,
    node: &str,
) -> Option<NewCamera> {
    let id = item.device_id.as_str();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let name: String = item.name.chars().take(128).collect();
    let mut org = format!("{}/{device}", g.org);
    for seg in path {
        org.push('/');
        org.push_str(seg);
    }
    Some(NewCamera {
        info: CameraInfo {
            id: id.to_owned(),
            name: if name.trim().is_empty() { id.to_owned() } else { name },
            tier: "standard".into(),
            org,
            location: item.location.map(|(lon, lat)| (lat, lon)),
            view: None,
            record: g.record_discovered,
            has_sub: false,
            h264: false,
            node: node.to_owned(),
            path: Vec::new(),
        },
        streams: vec![(
            StreamKind::Main,
            Source::Gb(crate::gb::source(StreamId::main(id), device, id, g, pull)),
        )],
        device: Some((device.to_owned(), id.to_owned())),
        remote: None,
    })
}

/// Follows the SIP server's catalogs and device states into the camera registry.
pub struct Adopter {
    registry: Arc<CameraRegistry>,
    g: Gb28181Config,
    pull: PullSettings,
    node: String,
    /// On-demand channels' states (unused when adopted channels are recorded).
    presence: Arc<Presence>,
    trees: HashMap<String, OrgTree>,
    /// Channels adopted per device, to drop those a complete catalog no longer lists.
    adopted: HashMap<String, HashSet<String>>,
}

impl Adopter {
    /// An adopter adding to `registry` by the `[gb28181]` settings `g`.
    pub fn new(registry: Arc<CameraRegistry>, g: Gb28181Config, pull: PullSettings, node: String) -> Adopter {
        Adopter {
            registry,
            g,
            pull,
            node,
            presence: Arc::default(),
            trees: HashMap::new(),
            adopted: HashMap::new(),
        }
    }

    /// The states of on-demand channels.
    pub fn presence(&self) -> Arc<Presence> {
        self.presence.clone()
    }

    /// Applies one SIP server event.
    pub fn on_event(&mut self, e: Event) {
        match e {
            Event::Catalog {
                device,
                items,
                complete,
            } => self.catalog(&device, &items, complete),
            Event::CatalogChange { device, items } => self.change(&device, &items),
            Event::Offline { device, reason } => {
                let why = match reason {
                    OfflineReason::KeepaliveLost => "stopped keeping alive",
                    OfflineReason::Expired => "let its registration expire",
                    OfflineReason::Unregistered => "unregistered",
                };
                self.presence.device_offline(
                    &device,
                    format!("GB28181 device {device} {why}: check its network and power, or the lower platform"),
                );
            }
            Event::Online { device } | Event::Registered { device, .. } => self.presence.device_online(&device),
            _ => {}
        }
    }

    /// Adds `items`' new video channels in one batch and updates the known ones' states.
    fn add(&mut self, device: &str, items: &[&CatalogItem]) -> usize {
        let tree = self.trees.entry(device.to_owned()).or_default();
        let mut cams = Vec::new();
        for item in items {
            let path = tree.path(&item.parent_id);
            let Some(mut cam) = adopted(device, item, &path, &self.g, &self.pull, &self.node) else {
                continue;
            };
            if !self.g.record_discovered {
                cam.remote = Some(self.presence.channel(device, &item.device_id, item.online));
            }
            self.adopted
                .entry(device.to_owned())
                .or_default()
                .insert(item.device_id.clone());
            cams.push(cam);
        }
        self.registry.add(cams)
    }

    fn remove(&mut self, device: &str, ids: Vec<String>) -> usize {
        if ids.is_empty() {
            return 0;
        }
        for id in &ids {
            self.presence.forget(device, id);
            if let Some(set) = self.adopted.get_mut(device) {
                set.remove(id);
            }
        }
        self.registry.remove(&ids)
    }

    fn catalog(&mut self, device: &str, items: &[CatalogItem], complete: bool) {
        let started = Instant::now();
        self.trees.entry(device.to_owned()).or_default().learn(device, items);
        let channels: Vec<&CatalogItem> = items.iter().filter(|i| i.is_video_channel()).collect();
        let added = self.add(device, &channels);
        // A complete catalog is the whole truth: channels it no longer lists are gone.
        let mut removed = 0;
        if complete {
            let listed: HashSet<&str> = channels.iter().map(|i| i.device_id.as_str()).collect();
            let gone: Vec<String> = self
                .adopted
                .get(device)
                .map(|s| s.iter().filter(|id| !listed.contains(id.as_str())).cloned().collect())
                .unwrap_or_default();
            removed = self.remove(device, gone);
        }
        if added > 0 || removed > 0 {
            info!(
                device = %device,
                cameras = added,
                removed,
                org_nodes = self.trees.get(device).map_or(0, OrgTree::len),
                listed = channels.len(),
                ms = started.elapsed().as_millis() as u64,
                recording = self.g.record_discovered,
                "GB28181 channels added as cameras"
            );
        }
    }

    fn change(&mut self, device: &str, items: &[CatalogItem]) {
        self.trees.entry(device.to_owned()).or_default().learn(device, items);
        let mut add = Vec::new();
        let mut gone = Vec::new();
        for i in items.iter().filter(|i| i.is_video_channel()) {
            match i.event.as_deref().unwrap_or("") {
                "DEL" => gone.push(i.device_id.clone()),
                "ON" | "OFF" | "VLOST" | "DEFECT" => {
                    if !self.g.record_discovered {
                        self.presence
                            .channel(device, &i.device_id, i.event.as_deref() == Some("ON"));
                    }
                }
                // ADD, UPDATE and anything newer: a channel as it is now.
                _ => add.push(i),
            }
        }
        // An UPDATE may move or rename a channel: it is added again as it is now.
        let updated: Vec<String> = add
            .iter()
            .filter(|i| i.event.as_deref() == Some("UPDATE"))
            .map(|i| i.device_id.clone())
            .collect();
        self.remove(device, updated);
        let added = self.add(device, &add);
        let removed = self.remove(device, gone);
        info!(device = %device, added, removed, "GB28181 catalog change applied");
    }
}

/// Runs an [`Adopter`] over every event of the SIP server until it stops.
pub fn spawn_adopter(
    sip: &SipServer,
    registry: Arc<CameraRegistry>,
    g: Gb28181Config,
    pull: PullSettings,
    node: String,
) -> tokio::task::JoinHandle<()> {
    let mut adopter = Adopter::new(registry, g, pull, node);
    sip.each_event(move |e| adopter.on_event(e))
}
