//! The tokio shell around [`Platform`]: one task owning the UDP socket, the TCP listener and
//! the state machine; a reader task per TCP connection that cuts the stream into messages.
//! Everything protocol-shaped happens in the state machine; this file only moves bytes and time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::platform::{CallId, DeviceView, Event, Output, Peer, Platform, PlatformConfig, PlatformError, Transport};
use crate::sdp::Offer;
use crate::sip::{self, Framing, Message};

/// Why the server could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding a socket failed.
    #[error("cannot listen for GB28181 SIP on {addr} ({transport}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `UDP` or `TCP`.
        transport: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The platform refused.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The server task has stopped.
    #[error("the GB28181 SIP server has stopped")]
    Stopped,
}

enum Command {
    Invite(String, Box<Offer>, oneshot::Sender<Result<CallId, PlatformError>>),
    Hangup(CallId),
    Info(CallId, String),
    Catalog(String, oneshot::Sender<Result<u64, PlatformError>>),
    Records(
        String,
        String,
        String,
        String,
        oneshot::Sender<Result<u64, PlatformError>>,
    ),
    Ptz(String, String, String, oneshot::Sender<Result<(), PlatformError>>),
    Devices(oneshot::Sender<Vec<DeviceView>>),
}

/// A running SIP server: the platform's face toward devices.
pub struct SipServer {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

/// Largest TCP buffer kept while a message is incomplete.
const MAX_STREAM_BUFFER: usize = sip::MAX_HEAD + sip::MAX_BODY + 4096;

impl SipServer {
    /// Listens on `listen` (UDP and TCP, same port) and runs a platform with `cfg`. If
    /// `cfg.local` has port 0 it becomes the bound address.
    pub async fn bind(mut cfg: PlatformConfig, listen: SocketAddr) -> Result<SipServer, ServerError> {
        let udp = UdpSocket::bind(listen).await.map_err(|source| ServerError::Bind {
            addr: listen,
            transport: "UDP",
            source,
        })?;
        let local = udp.local_addr().map_err(|source| ServerError::Bind {
            addr: listen,
            transport: "UDP",
            source,
        })?;
        let tcp = TcpListener::bind(local).await.map_err(|source| ServerError::Bind {
            addr: local,
            transport: "TCP",
            source,
        })?;
        if cfg.local.port() == 0 {
            cfg.local = if cfg.local.ip().is_unspecified() && !local.ip().is_unspecified() {
                local
            } else {
                SocketAddr::new(cfg.local.ip(), local.port())
            };
        }
        let (tx, rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(4096);
        let task = tokio::spawn(run(Platform::new(cfg), udp, tcp, rx, events.clone()));
        info!(%local, "GB28181 SIP listening (UDP and TCP)");
        Ok(SipServer {
            tx,
            events,
            local,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Runs `handle` on every event from now on until the server stops; a handler that falls
    /// behind skips what it missed rather than slowing the server.
    pub fn each_event(&self, mut handle: impl FnMut(Event) + Send + 'static) -> tokio::task::JoinHandle<()> {
        let mut events = self.subscribe();
        tokio::spawn(async move {
            next_event(&mut events, |e| {
                handle(e);
                None::<()>
            })
            .await;
        })
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ServerError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| ServerError::Stopped)?;
        rx.await.map_err(|_| ServerError::Stopped)
    }

    /// Invites `device` to stream as `offer` says; the answer comes as an event.
    pub async fn invite(&self, device: &str, offer: Offer) -> Result<CallId, ServerError> {
        Ok(self
            .ask(|r| Command::Invite(device.to_owned(), Box::new(offer), r))
            .await??)
    }

    /// Ends a media session.
    pub async fn hangup(&self, call: CallId) {
        let _ = self.tx.send(Command::Hangup(call)).await;
    }

    /// Sends MANSRTSP playback control in a call's dialog.
    pub async fn info(&self, call: CallId, body: String) {
        let _ = self.tx.send(Command::Info(call, body)).await;
    }

    /// Asks a device for its catalog.
    pub async fn query_catalog(&self, device: &str) -> Result<u64, ServerError> {
        Ok(self.ask(|r| Command::Catalog(device.to_owned(), r)).await??)
    }

    /// Asks a device for a channel's recordings (device-local times).
    pub async fn query_records(&self, device: &str, channel: &str, start: &str, end: &str) -> Result<u64, ServerError> {
        Ok(self
            .ask(|r| {
                Command::Records(
                    device.to_owned(),
                    channel.to_owned(),
                    start.to_owned(),
                    end.to_owned(),
                    r,
                )
            })
            .await??)
    }

    /// Sends a PTZ command.
    pub async fn ptz(&self, device: &str, channel: &str, cmd: &str) -> Result<(), ServerError> {
        Ok(self
            .ask(|r| Command::Ptz(device.to_owned(), channel.to_owned(), cmd.to_owned(), r))
            .await??)
    }

    /// Registered devices.
    pub async fn devices(&self) -> Vec<DeviceView> {
        self.ask(Command::Devices).await.unwrap_or_default()
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn read_connection(
    peer: SocketAddr,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    to_main: mpsc::Sender<(Peer, Option<Message>)>,
) {
    let from = Peer {
        transport: Transport::Tcp,
        addr: peer,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match sip::parse(&buf, Framing::Stream) {
                Ok((m, used)) => {
                    buf.drain(..used);
                    if to_main.send((from, Some(m))).await.is_err() {
                        break 'conn;
                    }
                }
                Err(sip::SipError::Incomplete) => {
                    if buf.len() > MAX_STREAM_BUFFER {
                        warn!(%peer, "GB28181 TCP: {} bytes without a complete SIP message; closing", buf.len());
                        break 'conn;
                    }
                    break;
                }
                Err(e) => {
                    // A stream cannot be resynchronised after a bad message.
                    warn!(%peer, "GB28181 TCP: {e}; closing the connection");
                    break 'conn;
                }
            }
        }
    }
    let _ = to_main.send((from, None)).await;
}

async fn run(
    mut platform: Platform,
    udp: UdpSocket,
    tcp: TcpListener,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
) {
    let mut buf = vec![0u8; 65_536];
    let (conn_tx, mut conn_rx) = mpsc::channel::<(Peer, Option<Message>)>(1024);
    let mut writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    loop {
        let wake = platform
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let Ok((n, addr)) = r else { continue };
                let from = Peer { transport: Transport::Udp, addr };
                match sip::parse(&buf[..n], Framing::Datagram) {
                    Ok((m, _)) => platform.handle_message(Instant::now(), unix_ms(), from, m),
                    Err(e) => debug!(%addr, "GB28181 UDP: {e}; datagram dropped"),
                }
            }
            r = tcp.accept() => {
                let Ok((stream, addr)) = r else { continue };
                let _ = stream.set_nodelay(true);
                let (rd, mut wr) = stream.into_split();
                let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(256);
                writers.insert(addr, wtx);
                tokio::spawn(read_connection(addr, rd, conn_tx.clone()));
                tokio::spawn(async move {
                    while let Some(data) = wrx.recv().await {
                        if wr.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Some((from, m)) = conn_rx.recv() => match m {
                Some(m) => platform.handle_message(Instant::now(), unix_ms(), from, m),
                None => { writers.remove(&from.addr); }
            },
            c = commands.recv() => {
                let Some(c) = c else { break };
                let now = Instant::now();
                match c {
                    Command::Invite(d, offer, r) => { let _ = r.send(platform.invite(now, &d, &offer)); }
                    Command::Hangup(call) => { let _ = platform.hangup(now, call); }
                    Command::Info(call, body) => { let _ = platform.info(now, call, &body); }
                    Command::Catalog(d, r) => { let _ = r.send(platform.query_catalog(now, &d)); }
                    Command::Records(d, ch, s, e, r) => { let _ = r.send(platform.query_records(now, &d, &ch, &s, &e)); }
                    Command::Ptz(d, ch, cmd, r) => { let _ = r.send(platform.ptz(now, &d, &ch, &cmd)); }
                    Command::Devices(r) => { let _ = r.send(platform.devices()); }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => platform.handle_timeout(Instant::now()),
        }
        while let Some(out) = platform.poll_output() {
            match out {
                Output::Send { to, data } => match to.transport {
                    Transport::Udp => {
                        if let Err(e) = udp.send_to(&data, to.addr).await {
                            debug!(addr = %to.addr, "GB28181 UDP send: {e}");
                        }
                    }
                    Transport::Tcp => match writers.get(&to.addr) {
                        Some(w) => {
                            if w.try_send(data).is_err() {
                                warn!(addr = %to.addr, "GB28181 TCP: the connection is not draining; message dropped");
                            }
                        }
                        None => debug!(addr = %to.addr, "GB28181 TCP: no connection to the device any more"),
                    },
                },
                Output::Event(e) => {
                    let _ = events.send(e);
                }
            }
        }
    }
}

/// The first event of `events` that `pick` turns into a value; `None` once the server stopped.
/// Events missed by lagging behind are skipped.
pub async fn next_event<T>(
    events: &mut broadcast::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> Option<T> {
    loop {
        match events.recv().await {
            Ok(e) => {
                if let Some(v) = pick(e) {
                    return Some(v);
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
