//! GB/T 28181 in the node: the SIP server of `[gb28181]`, its event log, and the adoption of
//! catalog channels as cameras (recorded, live, permissioned like any other).

use std::sync::Arc;

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::config::Gb28181Config;

/// The address devices are told to send media to.
pub fn media_ip(g: &Gb28181Config) -> std::net::IpAddr {
    if g.media_ip.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        g.media_ip
    }
}

/// Starts the GB/T 28181 SIP server of `[gb28181]`.
pub async fn start_sip(g: &Gb28181Config) -> Result<gb28181::server::SipServer> {
    let local = if g.listen.ip().is_unspecified() {
        std::net::SocketAddr::new(media_ip(g), g.listen.port())
    } else {
        g.listen
    };
    let mut cfg = gb28181::platform::PlatformConfig::new(&g.id, &g.domain, local);
    cfg.password = Some(g.password.clone());
    cfg.keepalive_interval = g.keepalive_interval;
    cfg.keepalive_misses = g.keepalive_misses;
    cfg.request_timeout = g.request_timeout;
    cfg.answer_timeout = g.request_timeout;
    cfg.devices = g
        .devices
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                gb28181::platform::DeviceSettings {
                    password: d.password.clone(),
                    charset: d.charset.unwrap_or(g.charset),
                    call_id: d.call_id,
                    ask_info: d.device_info,
                },
            )
        })
        .collect();
    let server = gb28181::server::SipServer::bind(cfg, g.listen)
        .await
        .with_context(|| format!("starting GB/T 28181 SIP on {} (gb28181.listen)", g.listen))?;
    let mut events = server.subscribe();
    tokio::spawn(async move {
        use gb28181::platform::Event;
        loop {
            match events.recv().await {
                Ok(Event::Registered { device, peer, fresh }) => {
                    info!(device = %device, peer = %peer.addr, transport = ?peer.transport, fresh, "GB28181 device registered")
                }
                Ok(Event::Offline { device, reason }) => warn!(device = %device, ?reason, "GB28181 device offline"),
                Ok(Event::Online { device }) => info!(device = %device, "GB28181 device online again"),
                Ok(Event::AuthFailed {
                    device,
                    peer,
                    throttled,
                }) => warn!(
                    device = %device,
                    peer = %peer.addr,
                    throttled,
                    "GB28181 device {device}: registration refused (wrong password, or not allowed): check gb28181.password or its [[gb28181.devices]] entry"
                ),
                Ok(Event::Catalog {
                    device,
                    items,
                    complete,
                }) => {
                    info!(device = %device, channels = items.len(), complete, "GB28181 catalog")
                }
                Ok(Event::RequestFailed { device, what, status }) => {
                    warn!(device = %device, what = %what, ?status, "GB28181 request failed")
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    Ok(server)
}

/// Calls `adopt(device, item)` for every video channel in every catalog the SIP server
/// receives, until the server stops. `adopt` must be cheap and ignore channels it knows.
pub fn spawn_adopter(
    sip: &gb28181::server::SipServer,
    adopt: impl Fn(&str, &gb28181::manscdp::CatalogItem) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut events = sip.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(gb28181::platform::Event::Catalog { device, items, .. }) => {
                    for item in items.iter().filter(|i| i.is_video_channel()) {
                        adopt(&device, item);
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// Device functions of GB/T 28181 channels for the API: RecordInfo, PTZ, the device list.
pub struct GbDevices {
    sip: Arc<gb28181::server::SipServer>,
    /// Camera id → (device id, channel id); grows as catalogs adopt channels.
    channels: std::sync::RwLock<std::collections::HashMap<String, (String, String)>>,
    /// Device local time's offset from UTC (seconds).
    utc_offset: i64,
    /// How long a device may take to answer a query in full.
    timeout: std::time::Duration,
    /// How sessions are set up (stream, channel and kind are filled in per playback).
    template: ingest::gb28181::GbSourceConfig,
    /// What each device said of itself (DeviceInfo, DeviceStatus), for the device list.
    info: Arc<std::sync::RwLock<std::collections::HashMap<String, serde_json::Map<String, serde_json::Value>>>>,
}

impl GbDevices {
    /// Device functions through `sip`, with `timeout` for each answer.
    pub fn new(
        sip: Arc<gb28181::server::SipServer>,
        utc_offset: i64,
        timeout: std::time::Duration,
        template: ingest::gb28181::GbSourceConfig,
    ) -> GbDevices {
        let info: Arc<
            std::sync::RwLock<std::collections::HashMap<String, serde_json::Map<String, serde_json::Value>>>,
        > = Default::default();
        let mut events = sip.subscribe();
        let store = info.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(gb28181::platform::Event::Document { device, doc })
                        if doc.root.eq_ignore_ascii_case("Response") =>
                    {
                        let el = &doc.element;
                        let fields: &[(&str, &str)] = if doc.cmd.eq_ignore_ascii_case("DeviceInfo") {
                            &[
                                ("DeviceName", "name"),
                                ("Manufacturer", "manufacturer"),
                                ("Model", "model"),
                                ("Firmware", "firmware"),
                                ("Channel", "channels"),
                            ]
                        } else if doc.cmd.eq_ignore_ascii_case("DeviceStatus") {
                            &[
                                ("Online", "status_online"),
                                ("Status", "status"),
                                ("Record", "recording"),
                                ("Encode", "encoding"),
                                ("DeviceTime", "device_time"),
                            ]
                        } else {
                            continue;
                        };
                        let mut w = store.write().unwrap_or_else(|p| p.into_inner());
                        let entry = w.entry(device).or_default();
                        for (xml, key) in fields {
                            if let Some(v) = el.text_of(xml) {
                                entry.insert(
                                    (*key).to_owned(),
                                    serde_json::Value::String(v.chars().take(128).collect()),
                                );
                            }
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        GbDevices {
            sip,
            channels: Default::default(),
            utc_offset,
            timeout,
            template,
            info,
        }
    }

    /// Records that `camera` is `channel` of `device`.
    pub fn add(&self, camera: &str, device: &str, channel: &str) {
        self.channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(camera.to_owned(), (device.to_owned(), channel.to_owned()));
    }

    fn channel(&self, camera: &str) -> Result<(String, String), api::devices::DeviceError> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(camera)
            .cloned()
            .ok_or_else(|| api::devices::DeviceError::NotDevice(camera.to_owned()))
    }
}

fn offline(camera: &str, e: gb28181::server::ServerError) -> api::devices::DeviceError {
    match e {
        gb28181::server::ServerError::Platform(_) => api::devices::DeviceError::Offline(camera.to_owned()),
        other => api::devices::DeviceError::Refused {
            camera: camera.to_owned(),
            detail: other.to_string(),
        },
    }
}

impl api::devices::DeviceAccess for GbDevices {
    fn playback(
        &self,
        camera: &str,
        start: media::WallTime,
        end: media::WallTime,
        pace: api::devices::DevicePace,
    ) -> api::devices::BoxFuture<Result<api::devices::DevicePlayback, api::devices::DeviceError>> {
        let found = self.channel(camera);
        let mut cfg = self.template.clone();
        let sip = self.sip.clone();
        let camera = camera.to_owned();
        Box::pin(async move {
            let (device, channel) = found?;
            if !sip.devices().await.iter().any(|d| d.id == device && d.online) {
                return Err(api::devices::DeviceError::Offline(camera));
            }
            let (s, e) = (
                start.as_micros().div_euclid(1_000_000),
                end.as_micros().div_euclid(1_000_000),
            );
            cfg.stream = media::StreamId::new(camera.as_str(), media::StreamKind::Main);
            cfg.device = device;
            cfg.channel = channel;
            (cfg.kind, cfg.scale) = match pace {
                api::devices::DevicePace::Download { speed } => (
                    gb28181::sdp::SessionKind::Download {
                        start: s,
                        end: e,
                        speed,
                    },
                    None,
                ),
                api::devices::DevicePace::Playback { scale } => (
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
            Ok(api::devices::DevicePlayback {
                frames: rx,
                guard: Box::new(cancel.drop_guard()),
            })
        })
    }

    fn recordings(
        &self,
        camera: &str,
        start: media::WallTime,
        end: media::WallTime,
    ) -> api::devices::BoxFuture<Result<Vec<api::devices::DeviceRecording>, api::devices::DeviceError>> {
        use api::devices::{DeviceError, DeviceRecording};
        use gb28181::platform::Event;
        let found = self.channel(camera);
        let (sip, offset, timeout, camera) = (self.sip.clone(), self.utc_offset, self.timeout, camera.to_owned());
        Box::pin(async move {
            let (device, channel) = found?;
            let local = |t: media::WallTime| gb28181::gbtime::format_secs(t.as_micros().div_euclid(1_000_000), offset);
            let mut events = sip.subscribe();
            let sn = sip
                .query_records(&device, &channel, &local(start), &local(end))
                .await
                .map_err(|e| offline(&camera, e))?;
            let wait = async {
                loop {
                    match events.recv().await {
                        Ok(Event::Records {
                            device: d,
                            sn: s,
                            items,
                            ..
                        }) if d == device && s == sn => return Ok(items),
                        Ok(Event::RequestFailed {
                            device: d,
                            what,
                            status,
                        }) if d == device && what == "RecordInfo" => {
                            return Err(DeviceError::Refused {
                                camera: camera.clone(),
                                detail: match status {
                                    Some(s) => format!("SIP {s}"),
                                    None => "no answer to the query".into(),
                                },
                            });
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            return Err(DeviceError::Offline(camera.clone()));
                        }
                    }
                }
            };
            let items = tokio::time::timeout(timeout, wait)
                .await
                .map_err(|_| DeviceError::Timeout {
                    camera: camera.clone(),
                    secs: timeout.as_secs(),
                })??;
            let mut out: Vec<DeviceRecording> = items
                .iter()
                .filter_map(|i| {
                    let s = gb28181::gbtime::parse(&i.start, offset)?;
                    let e = gb28181::gbtime::parse(&i.end, offset)?;
                    Some(DeviceRecording {
                        start: media::WallTime::from_micros(s * 1_000_000),
                        end: media::WallTime::from_micros(e * 1_000_000),
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

    fn ptz(
        &self,
        camera: &str,
        m: api::devices::PtzMove,
    ) -> api::devices::BoxFuture<Result<(), api::devices::DeviceError>> {
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

    fn devices(&self) -> api::devices::BoxFuture<Vec<serde_json::Value>> {
        let sip = self.sip.clone();
        let channels = self.channels.read().unwrap_or_else(|p| p.into_inner()).clone();
        let info = self.info.read().unwrap_or_else(|p| p.into_inner()).clone();
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
                        obj.insert("info".into(), serde_json::Value::Object(fields.clone()));
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
            tracing::warn!("device playback: the viewer is not reading; frame dropped");
        }
    }

    fn end_of_stream(&self, _stream: &media::StreamId) {}
}

/// Publishes GB/T 28181 happenings as node events (`GET /api/v1/events`): a channel's alarm as
/// `camera.alarm` (to those who may see the camera), devices going offline and online as
/// `device.offline` / `device.online` (administrators).
pub fn spawn_event_bridge(sip: &gb28181::server::SipServer, state: Arc<api::AppState>) -> tokio::task::JoinHandle<()> {
    use gb28181::platform::Event;
    let mut events = sip.subscribe();
    tokio::spawn(async move {
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            let at = api::time::format(media::WallTime::now());
            let event = match e {
                Event::Document { device, doc } if doc.is("Notify", "Alarm") => {
                    let el = &doc.element;
                    // The alarm's DeviceID is the channel (or the device itself).
                    let camera = if state.cameras.contains_key(&doc.device_id) {
                        Some(doc.device_id.clone())
                    } else {
                        None
                    };
                    api::events::NodeEvent {
                        kind: "camera.alarm",
                        camera,
                        data: serde_json::json!({
                            "camera": doc.device_id,
                            "device": device,
                            "at": at,
                            "priority": el.number_of::<u8>("AlarmPriority"),
                            "method": el.number_of::<u8>("AlarmMethod"),
                            "alarm_time": el.text_of("AlarmTime"),
                            "description": el.text_of("AlarmDescription").map(|d| d.chars().take(256).collect::<String>()),
                        }),
                    }
                }
                Event::Offline { device, reason } => api::events::NodeEvent {
                    kind: "device.offline",
                    camera: None,
                    data: serde_json::json!({ "device": device, "at": at, "reason": format!("{reason:?}") }),
                },
                Event::Online { device }
                | Event::Registered {
                    device, fresh: true, ..
                } => api::events::NodeEvent {
                    kind: "device.online",
                    camera: None,
                    data: serde_json::json!({ "device": device, "at": at }),
                },
                _ => continue,
            };
            state.events.publish(event);
        }
    })
}
