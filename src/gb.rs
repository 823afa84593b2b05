//! GB/T 28181 in the node: the SIP server of `[gb28181]`, its event log, and the adoption of
//! catalog channels as cameras (recorded, live, permissioned like any other).

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
