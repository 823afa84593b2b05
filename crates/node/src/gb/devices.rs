//! Device functions of GB/T 28181 channels for the API: RecordInfo (the recordings a device
//! holds), playback and download of them, PTZ, and the registered devices with what they said
//! of themselves.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use api::device_access::{DeviceAccess, DeviceError, DevicePace, DevicePlayback, DeviceRecording, PtzMove};
use futures::future::BoxFuture;
use gb28181::platform::Event;
use gb28181::server::{ServerError, SipServer, next_event};
use ingest::gb28181::GbSourceConfig;
use media::WallTime;
use serde_json::{Map, Value};
use tracing::warn;

/// Fields of DeviceInfo and DeviceStatus answers shown in the device list: (XML element, key).
const INFO_FIELDS: [(&str, &str); 5] = [
    ("DeviceName", "name"),
    ("Manufacturer", "manufacturer"),
    ("Model", "model"),
    ("Firmware", "firmware"),
    ("Channel", "channels"),
];
const STATUS_FIELDS: [(&str, &str); 5] = [
    ("Online", "status_online"),
    ("Status", "status"),
    ("Record", "recording"),
    ("Encode", "encoding"),
    ("DeviceTime", "device_time"),
];

/// What each device said of itself, by device id.
type DeviceInfo = Arc<RwLock<HashMap<String, Map<String, Value>>>>;

/// Device functions through the node's SIP server.
pub struct GbDevices {
    sip: Arc<SipServer>,
    /// Camera id → (device id, channel id); grows as catalogs adopt channels.
    channels: RwLock<HashMap<String, (String, String)>>,
    /// Device local time's offset from UTC (seconds).
    utc_offset: i64,
    /// How long a device may take to answer a query in full.
    timeout: Duration,
    /// How sessions are set up (stream, channel and kind are filled in per playback).
    template: GbSourceConfig,
    /// What each device said of itself (DeviceInfo, DeviceStatus), for the device list.
    info: DeviceInfo,
    /// Registrations' link budgets, for the device list.
    links: Arc<super::links::GbLinks>,
}

/// Keeps the fields of DeviceInfo and DeviceStatus answers.
fn remember_info(info: &DeviceInfo, e: Event) {
    let Event::Document { device, doc } = e else { return };
    if !doc.root.eq_ignore_ascii_case("Response") {
        return;
    }
    let fields: &[(&str, &str)] = if doc.cmd.eq_ignore_ascii_case("DeviceInfo") {
        &INFO_FIELDS
    } else if doc.cmd.eq_ignore_ascii_case("DeviceStatus") {
        &STATUS_FIELDS
    } else {
        return;
    };
    let mut w = info.write().unwrap_or_else(|p| p.into_inner());
    let entry = w.entry(device).or_default();
    for (xml, key) in fields {
        if let Some(v) = doc.element.text_of(xml) {
            entry.insert((*key).to_owned(), Value::String(v.chars().take(128).collect()));
        }
    }
}

impl GbDevices {
    /// Device functions through `sip`, with `timeout` for each answer; device times are
    /// `utc_offset` seconds ahead of UTC; sessions are set up as `template` says.
    pub fn new(
        sip: Arc<SipServer>,
        links: Arc<super::links::GbLinks>,
        utc_offset: i64,
        timeout: Duration,
        template: GbSourceConfig,
    ) -> GbDevices {
        let info = DeviceInfo::default();
        let store = info.clone();
        sip.each_event(move |e| remember_info(&store, e));
        GbDevices {
            sip,
            channels: Default::default(),
            utc_offset,
            timeout,
            template,
            info,
            links,
        }
    }

    /// Records that `camera` is `channel` of `device`.
    pub fn add(&self, camera: &str, device: &str, channel: &str) {
        self.channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(camera.to_owned(), (device.to_owned(), channel.to_owned()));
    }

    /// Sends a PTZ command as an upper platform wrote it (16 hex digits) to `camera`'s device.
    pub async fn ptz_raw(&self, camera: &str, cmd: &str) -> Result<(), DeviceError> {
        if cmd.len() != 16 || !cmd.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DeviceError::Refused {
                camera: camera.to_owned(),
                detail: "a PTZ command is 16 hex digits".into(),
            });
        }
        let (device, channel) = self.channel(camera)?;
        self.sip
            .ptz(&device, &channel, &cmd.to_ascii_uppercase())
            .await
            .map_err(|e| offline(camera, e))
    }

    fn channel(&self, camera: &str) -> Result<(String, String), DeviceError> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(camera)
            .cloned()
            .ok_or_else(|| DeviceError::NotDevice(camera.to_owned()))
    }
}

fn offline(camera: &str, e: ServerError) -> DeviceError {
    match e {
        ServerError::Platform(_) => DeviceError::Offline(camera.to_owned()),
        other => DeviceError::Refused {
            camera: camera.to_owned(),
            detail: other.to_string(),
        },
    }
}

impl DeviceAccess for GbDevices {
    fn playback(
        &self,
        camera: &str,
        start: WallTime,
        end: WallTime,
        pace: DevicePace,
    ) -> BoxFuture<'static, Result<DevicePlayback, DeviceError>> {
        let found = self.channel(camera);
        let mut cfg = self.template.clone();
        let sip = self.sip.clone();
        let camera = camera.to_owned();
        Box::pin(async move {
            let (device, channel) = found?;
            if !sip.devices().await.iter().any(|d| d.id == device && d.online) {
                return Err(DeviceError::Offline(camera));
            }
            let (s, e) = (
                start.as_micros().div_euclid(1_000_000),
                end.as_micros().div_euclid(1_000_000),
            );
            cfg.stream = media::StreamId::new(camera.as_str(), media::StreamKind::Main);
            cfg.device = device;
            cfg.channel = channel;
            (cfg.kind, cfg.scale) = match pace {
                DevicePace::Download { speed } => (
                    gb28181::sdp::SessionKind::Download {
                        start: s,
                        end: e,
                        speed,
                    },
                    None,
                ),
                DevicePace::Playback { scale } => (
                    gb28181::sdp::SessionKind::Playback { start: s, end: e },
                    (scale != 1.0).then_some(scale),
                ),
            };
            let (tx, rx) = tokio::sync::mpsc::channel(4096);
            let cancel = tokio_util::sync::CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                if let Err(e) = ingest::gb28181::run_once(cfg, sip, Arc::new(ChannelSink(tx)), stop).await {
                    warn!("device playback: {e}");
                }
            });
            Ok(DevicePlayback {
                frames: rx,
                guard: Box::new(cancel.drop_guard()),
            })
        })
    }

    fn recordings(
        &self,
        camera: &str,
        start: WallTime,
        end: WallTime,
    ) -> BoxFuture<'static, Result<Vec<DeviceRecording>, DeviceError>> {
        let found = self.channel(camera);
        let (sip, offset, timeout, camera) = (self.sip.clone(), self.utc_offset, self.timeout, camera.to_owned());
        Box::pin(async move {
            let (device, channel) = found?;
            let local = |t: WallTime| gb28181::gbtime::format_secs(t.as_micros().div_euclid(1_000_000), offset);
            let mut events = sip.subscribe();
            let sn = sip
                .query_records(&device, &channel, &local(start), &local(end))
                .await
                .map_err(|e| offline(&camera, e))?;
            let answer = next_event(&mut events, |e| match e {
                Event::Records {
                    device: d,
                    sn: s,
                    items,
                    ..
                } if d == device && s == sn => Some(Ok(items)),
                Event::RequestFailed {
                    device: d,
                    what,
                    status,
                } if d == device && what == "RecordInfo" => Some(Err(DeviceError::Refused {
                    camera: camera.clone(),
                    detail: match status {
                        Some(s) => format!("SIP {s}"),
                        None => "no answer to the query".into(),
                    },
                })),
                _ => None,
            });
            let items = tokio::time::timeout(timeout, answer)
                .await
                .map_err(|_| DeviceError::Timeout {
                    camera: camera.clone(),
                    secs: timeout.as_secs(),
                })?
                .unwrap_or_else(|| Err(DeviceError::Offline(camera.clone())))?;
            let mut out: Vec<DeviceRecording> = items
                .iter()
                .filter_map(|i| {
                    let s = gb28181::gbtime::parse(&i.start, offset)?;
                    let e = gb28181::gbtime::parse(&i.end, offset)?;
                    Some(DeviceRecording {
                        start: WallTime::from_micros(s * 1_000_000),
                        end: WallTime::from_micros(e * 1_000_000),
                        name: i.name.clone(),
                        kind: i.kind.clone(),
                        file_size: i.file_size,
                    })
                })
                .collect();
            out.sort_by_key(|r| r.start);
            Ok(out)
        })
    }

    fn ptz(&self, camera: &str, m: PtzMove) -> BoxFuture<'static, Result<(), DeviceError>> {
        let found = self.channel(camera);
        let (sip, camera) = (self.sip.clone(), camera.to_owned());
        Box::pin(async move {
            let (device, channel) = found?;
            let cmd = gb28181::manscdp::Ptz {
                pan: m.pan,
                tilt: m.tilt,
                zoom: m.zoom,
                pan_speed: m.speed,
                tilt_speed: m.speed,
                zoom_speed: m.speed >> 4,
            }
            .command();
            sip.ptz(&device, &channel, &cmd).await.map_err(|e| offline(&camera, e))
        })
    }

    fn devices(&self) -> BoxFuture<'static, Vec<Value>> {
        let sip = self.sip.clone();
        let channels = self.channels.read().unwrap_or_else(|p| p.into_inner()).clone();
        let info = self.info.read().unwrap_or_else(|p| p.into_inner()).clone();
        let links = self.links.clone();
        Box::pin(async move {
            sip.devices()
                .await
                .into_iter()
                .map(|d| {
                    let mut cams: Vec<&String> = channels
                        .iter()
                        .filter(|(_, (dev, _))| *dev == d.id)
                        .map(|(c, _)| c)
                        .collect();
                    cams.sort();
                    let mut v = serde_json::json!({
                        "id": d.id,
                        "online": d.online,
                        "address": d.peer.addr.to_string(),
                        "transport": match d.peer.transport {
                            gb28181::platform::Transport::Udp => "udp",
                            gb28181::platform::Transport::Tcp => "tcp",
                        },
                        "user_agent": d.user_agent,
                        "gb_version": d.gb_version,
                        "cameras": cams,
                    });
                    if let (Some(fields), Some(obj)) = (info.get(&d.id), v.as_object_mut()) {
                        obj.insert("info".into(), Value::Object(fields.clone()));
                    }
                    if let (Some(link), Some(obj)) = (links.view(&d.id), v.as_object_mut()) {
                        obj.insert("link".into(), link);
                    }
                    v
                })
                .collect()
        })
    }
}

/// Hands a session's frames to a bounded channel (a device playback being served).
struct ChannelSink(tokio::sync::mpsc::Sender<media::Frame>);

impl ingest::FrameSink for ChannelSink {
    fn frame(&self, frame: media::Frame) {
        if self.0.try_send(frame).is_err() {
            warn!("device playback: the viewer is not reading; frame dropped");
        }
    }

    fn end_of_stream(&self, _stream: &media::StreamId) {}
}
