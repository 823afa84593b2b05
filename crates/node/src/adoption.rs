//! Adopting GB/T 28181 catalog channels as cameras while the node runs: each video channel of a
//! registered device's catalog becomes a camera through the same [`CameraRegistry`] as the
//! configured ones.

use std::sync::Arc;

use api::CameraInfo;
use gb28181::manscdp::CatalogItem;
use gb28181::platform::Event;
use gb28181::server::SipServer;
use media::{StreamId, StreamKind};
use tracing::info;

use crate::cameras::{CameraRegistry, NewCamera};
use crate::config::{Gb28181Config, PullSettings};
use crate::sources::Source;

/// `item` of `device`'s catalog as a camera (id = channel id, org `<gb28181.org>/<device>`,
/// recorded if `record_discovered`); `None` for an id that is not a plain id.
pub fn adopted(
    device: &str,
    item: &CatalogItem,
    g: &Gb28181Config,
    pull: &PullSettings,
    node: &str,
) -> Option<NewCamera> {
    let id = item.device_id.as_str();
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let name: String = item.name.chars().take(128).collect();
    Some(NewCamera {
        info: CameraInfo {
            id: id.to_owned(),
            name: if name.trim().is_empty() { id.to_owned() } else { name },
            tier: "standard".into(),
            org: format!("{}/{device}", g.org),
            location: item.location.map(|(lon, lat)| (lat, lon)),
            record: g.record_discovered,
            has_sub: false,
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

/// Adds every video channel of every catalog the SIP server receives as a camera, until the
/// server stops; a catalog's new channels are added in one batch.
pub fn spawn_adopter(
    sip: &SipServer,
    registry: Arc<CameraRegistry>,
    g: Gb28181Config,
    pull: PullSettings,
    node: String,
) -> tokio::task::JoinHandle<()> {
    sip.each_event(move |e| {
        let Event::Catalog { device, items, .. } = e else { return };
        let cams: Vec<NewCamera> = items
            .iter()
            .filter(|i| i.is_video_channel())
            .filter_map(|i| adopted(&device, i, &g, &pull, &node))
            .collect();
        let added = registry.add(cams);
        if added > 0 {
            info!(device = %device, cameras = added, recording = g.record_discovered, "GB28181 channels added as cameras");
        }
    })
}
