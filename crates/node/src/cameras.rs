//! Adding cameras to a running node: one path for the configured cameras at start-up and for
//! those found later (GB/T 28181 catalog channels), so both are listed, permissioned, pulled
//! and recorded the same way.

use std::sync::Arc;
use std::time::Duration;

use api::{AppState, CameraEntry, CameraInfo};
use ingest::rtsp::RtspSourceConfig;
use ingest::{SourceHealth, SourcePhase};
use media::{StreamId, StreamKind};
use store::Recorder;
use tracing::{info, warn};

use crate::config::{CameraConfig, Config};
use crate::gb::GbDevices;
use crate::sources::{Pull, Pulls, Source};

/// A camera to add: what the API shows and how each of its streams is pulled.
pub struct NewCamera {
    /// Id, name, tier, org, place, recorded, sub-stream.
    pub info: CameraInfo,
    /// Each stream and its source (main first).
    pub streams: Vec<(StreamKind, Source)>,
    /// The GB/T 28181 device and channel it is, for device functions (RecordInfo, PTZ).
    pub device: Option<(String, String)>,
    /// For a lower node's camera: its state as known here.
    pub remote: Option<Arc<api::RemoteState>>,
}

/// The configured camera `c` as a camera to add. A gb28181:// stream on a node without
/// `[gb28181]` is not pulled (with a warning); the camera is still listed.
pub fn configured(c: &CameraConfig, config: &Config) -> NewCamera {
    let mut streams = Vec::new();
    let mut device = None;
    let urls = [
        Some((StreamKind::Main, &c.url)),
        c.sub_url.as_ref().map(|u| (StreamKind::Sub, u)),
    ];
    for (kind, url) in urls.into_iter().flatten() {
        let stream = StreamId::new(c.id.as_str(), kind);
        let source = if url.scheme() == "gb28181" {
            let Some(g) = &config.gb28181 else {
                warn!(camera = %c.id, "a gb28181:// camera without a [gb28181] section is not pulled");
                continue;
            };
            let dev = url.host_str().unwrap_or_default();
            let channel = match url.path().trim_matches('/') {
                "" => c.id.as_str(),
                ch => ch,
            };
            device = Some((dev.to_owned(), channel.to_owned()));
            Source::Gb(crate::gb::source(stream, dev, channel, g, &config.ingest))
        } else {
            let mut pull = config.ingest.clone();
            pull.transport = c.transport.unwrap_or(pull.transport);
            Source::Rtsp(RtspSourceConfig {
                stream,
                url: url.clone(),
                pull,
            })
        };
        streams.push((kind, source));
    }
    NewCamera {
        info: CameraInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            tier: c.tier.as_str().to_owned(),
            org: c.org.clone(),
            location: c.location.map(|l| (l.lat, l.lon)),
            view: c.location.and_then(|l| l.view),
            record: c.record,
            has_sub: c.sub_url.is_some(),
            h264: false,
            node: config.node.id.clone(),
            path: Vec::new(),
        },
        streams,
        device,
        remote: None,
    }
}

/// Adds cameras to the API, the permission catalog, the hub and the pulls.
pub struct CameraRegistry {
    /// The API's state: its camera map and authenticator.
    pub state: Arc<AppState>,
    /// The node's live channels.
    pub hub: Arc<hub::Hub>,
    /// The node's pulls.
    pub pulls: Arc<Pulls>,
    /// The recorder recorded streams write to.
    pub recorder: Recorder,
    /// How long an on-demand pull outlives its last viewer.
    pub idle: Duration,
    /// GB/T 28181 device functions, when the node speaks it.
    pub devices: Option<Arc<GbDevices>>,
    /// In a cluster, the recording gates: a recorded stream is pulled and written only while
    /// this member owns its camera (the cluster loop pins it), not from the start.
    pub gates: Option<Arc<cluster::Gates>>,
}

impl CameraRegistry {
    /// Adds `cameras` whose ids are new (others are skipped) and returns how many were added.
    /// Only main streams are recorded; recorded streams are pulled at once, the rest on
    /// demand. The permission catalog is rebuilt once for the whole batch.
    pub fn add(&self, cameras: Vec<NewCamera>) -> usize {
        let known = self.state.cameras.snapshot();
        let mut entries = Vec::new();
        let mut streams = Vec::new();
        for cam in cameras {
            if known.contains_key(&cam.info.id) || entries.iter().any(|e: &CameraEntry| e.info.id == cam.info.id) {
                continue;
            }
            let mut main = None;
            let mut cam = cam;
            // Where this build can transcode, every camera also offers its main stream as
            // H.264 (started only when someone asks for it).
            if transcode::AVAILABLE && cam.streams.iter().any(|(k, _)| *k == StreamKind::Main) {
                let input = StreamId::main(cam.info.id.as_str());
                cam.streams.push((StreamKind::H264, Source::Transcode(input)));
                cam.info.h264 = true;
            }
            for (kind, source) in cam.streams {
                let stream = StreamId::new(cam.info.id.as_str(), kind);
                // A lower node's camera is never recorded here, whatever it says of itself.
                let record = cam.info.record && kind == StreamKind::Main && cam.remote.is_none();
                let health = Arc::new(SourceHealth::default());
                if !record {
                    health.set_phase(SourcePhase::Stopped);
                }
                if kind == StreamKind::Main {
                    main = Some(health.clone());
                }
                self.pulls.declare(
                    stream.clone(),
                    Pull {
                        source,
                        health,
                        recorder: record.then(|| self.recorder.clone()),
                        intact: (kind == StreamKind::Main).then(|| self.state.rates.judge(&cam.info.id)),
                        gate: self.gates.as_ref().filter(|_| record).map(|g| g.camera(&cam.info.id)),
                    },
                );
                streams.push((stream, record && self.gates.is_none()));
            }
            if let (Some(d), Some((device, channel))) = (&self.devices, &cam.device) {
                d.add(&cam.info.id, device, channel);
            }
            entries.push(match cam.remote {
                Some(r) => {
                    let device_channel = cam.device.is_some();
                    let mut e = CameraEntry::remote(cam.info, r);
                    // An adopted channel's state is its device's, but why a pull of it failed
                    // (a refused link budget, say) is its pull's.
                    if device_channel {
                        e.main = main;
                    }
                    e
                }
                None => CameraEntry::new(cam.info, main),
            });
        }
        let added = entries.len();
        if added == 0 {
            return 0;
        }
        self.state.cameras.insert_many(entries);
        self.refresh_catalog();
        // Last: a recorded stream's pull starts as its channel is added, and finds its spec.
        for (stream, record) in streams {
            self.hub.add_stream(
                stream,
                hub::StreamPolicy {
                    pinned: record,
                    idle: self.idle,
                },
            );
        }
        added
    }

    /// The permission catalog from the cameras there are now.
    fn refresh_catalog(&self) {
        self.state.auth.set_cameras(
            self.state
                .cameras
                .snapshot()
                .values()
                .map(|c| auth::CameraRef {
                    id: c.info.id.clone(),
                    org: c.info.org.clone(),
                })
                .collect(),
        );
    }

    /// Removes cameras (a lower node no longer shares them): from the API, the permission
    /// catalog, the hub and the pulls; returns how many were removed.
    pub fn remove(&self, ids: &[String]) -> usize {
        let removed = self.state.cameras.remove_many(ids);
        if removed == 0 {
            return 0;
        }
        self.refresh_catalog();
        for id in ids {
            for kind in [StreamKind::Main, StreamKind::Sub, StreamKind::H264] {
                let stream = StreamId::new(id.as_str(), kind);
                self.hub.remove_stream(&stream);
                self.pulls.forget(&stream);
            }
        }
        removed
    }

    /// Adds the configured cameras; returns (cameras, recorded streams).
    pub fn add_configured(&self, config: &Config) -> (usize, usize) {
        let cams: Vec<NewCamera> = config.cameras.iter().map(|c| configured(c, config)).collect();
        let recorded = cams.iter().filter(|c| c.info.record).count();
        let n = self.add(cams);
        info!(cameras = n, recording = recorded, "cameras started");
        (n, recorded)
    }
}
