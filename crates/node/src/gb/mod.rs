//! GB/T 28181 in the node: the SIP server of `[gb28181]` and its log lines, how a channel is
//! pulled, the device functions the API offers ([`GbDevices`]), and alarms and device state as
//! node events ([`events`]), and the link budgets of lower platforms' registrations
//! ([`links`]). Catalog channels become cameras in `crate::adoption`.

mod devices;
pub mod events;
pub mod links;

use std::sync::Arc;
use std::time::Duration;

pub use devices::GbDevices;
use gb28181::platform::Event;
use gb28181::server::SipServer;
use ingest::gb28181::GbSourceConfig;
use ingest::rtsp::PullSettings;
use ingest::supervisor::Retry;
use media::StreamId;
use tracing::{info, warn};

use crate::NodeError;
use crate::config::Gb28181Config;
use crate::error::StepContext;

/// How to pull `channel` of `device` as `stream`, with the node's GB/T 28181 and ingest
/// settings.
pub fn source(stream: StreamId, device: &str, channel: &str, g: &Gb28181Config, i: &PullSettings) -> GbSourceConfig {
    GbSourceConfig {
        stream,
        device: device.to_owned(),
        channel: channel.to_owned(),
        own_id: g.id.clone(),
        domain: g.domain.clone(),
        transport: g.media_transport,
        kind: gb28181::sdp::SessionKind::Play,
        scale: None,
        media_ip: g.media_ip(),
        // A device needs longer than an RTSP camera to start: INVITE, TCP connect, first GOP.
        watchdog: i.watchdog.max(Duration::from_secs(5)),
        invite_timeout: g.request_timeout,
        retry: Retry {
            max: i.retry.max.max(Duration::from_secs(2)),
            ..i.retry
        },
        max_frame_bytes: i.max_frame_bytes,
    }
}

/// Starts the GB/T 28181 SIP server of `[gb28181]`, logging registrations, refusals, state
/// changes and failed requests.
pub async fn start_sip(g: &Gb28181Config) -> Result<Arc<SipServer>, NodeError> {
    let local = if g.listen.ip().is_unspecified() {
        std::net::SocketAddr::new(g.media_ip(), g.listen.port())
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
    let server = SipServer::bind(cfg, g.listen)
        .await
        .step(|| format!("starting GB/T 28181 SIP on {} (gb28181.listen)", g.listen))?;
    server.each_event(log_event);
    Ok(Arc::new(server))
}

/// The log line of a SIP server event worth one.
fn log_event(e: Event) {
    match e {
        Event::Registered { device, peer, fresh } => {
            info!(device = %device, peer = %peer.addr, transport = ?peer.transport, fresh, "GB28181 device registered")
        }
        Event::Offline { device, reason } => warn!(device = %device, ?reason, "GB28181 device offline"),
        Event::Online { device } => info!(device = %device, "GB28181 device online again"),
        Event::AuthFailed {
            device,
            peer,
            throttled,
        } => warn!(
            device = %device,
            peer = %peer.addr,
            throttled,
            "GB28181 device {device}: registration refused (wrong password, or not allowed): check gb28181.password or its [[gb28181.devices]] entry"
        ),
        Event::Catalog {
            device,
            items,
            complete,
        } => info!(device = %device, channels = items.len(), complete, "GB28181 catalog"),
        Event::RequestFailed { device, what, status } => {
            warn!(device = %device, what = %what, ?status, "GB28181 request failed")
        }
        _ => {}
    }
}
