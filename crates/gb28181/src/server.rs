//! The tokio shell around [`Platform`] and the [`UpperLink`]s: one task owning the UDP socket,
//! the TCP listener and the state machines; a reader task per TCP connection that cuts the
//! stream into messages (connections to uppers that use TCP are opened on the first message to
//! them). A message goes to the upper link that [`UpperLink::accepts`] it, else to the platform.
//! Everything protocol-shaped happens in the state machines; this file only moves bytes and time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::manscdp_out::{CatalogEntry, RecordEntry};
use crate::platform::{CallId, DeviceView, Event, Output, Peer, Platform, PlatformConfig, PlatformError, Transport};
use crate::sdp::Offer;
use crate::sip::{self, Framing, Message};
use crate::upper::{DialogId, UpperConfig, UpperLink, UpperState};

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
    Upper(String, UpperCommand),
    AddUpper(Box<UpperConfig>),
    Uppers(oneshot::Sender<Vec<UpperView>>),
    StopUppers(oneshot::Sender<()>),
}

/// What the node asks of an upper link.
enum UpperCommand {
    Catalog(u64, Vec<CatalogEntry>),
    Records(u64, String, String, Vec<RecordEntry>),
    Answer(String),
    Notify(Vec<(CatalogEntry, &'static str)>),
    Accept(DialogId, String),
    Reject(DialogId, u16, String),
    Hangup(DialogId),
    MediaStatus(DialogId),
}

/// An upper platform's link as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpperView {
    /// The upper's id.
    pub id: String,
    /// Its SIP address.
    pub addr: SocketAddr,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// Registered now.
    pub registered: bool,
    /// `registering`, `registered` or `failed`.
    pub state: &'static str,
    /// Why the last attempt failed, when it did.
    pub reason: Option<String>,
    /// How long ago it last answered a keepalive.
    pub last_keepalive_ago: Option<Duration>,
    /// Media sessions it holds.
    pub sessions: usize,
}

fn view(l: &UpperLink, now: Instant) -> UpperView {
    let (state, reason) = match l.state() {
        UpperState::Idle => ("idle", None),
        UpperState::Registering => ("registering", None),
        UpperState::Registered { .. } => ("registered", None),
        UpperState::Failed { reason, .. } => ("failed", Some(reason.clone())),
    };
    UpperView {
        id: l.id().to_owned(),
        addr: l.config().addr,
        transport: match l.config().transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        },
        registered: matches!(l.state(), UpperState::Registered { .. }),
        state,
        reason,
        last_keepalive_ago: l.last_keepalive().map(|t| now.saturating_duration_since(t)),
        sessions: l.sessions(),
    }
}

/// A running SIP server: the platform's face toward devices.
pub struct SipServer {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

/// Receive buffer asked for the SIP socket. The default (~200 KB) holds only some fifty
/// datagrams, whatever their size (each is accounted with its kernel overhead): a burst of
/// INVITEs from uppers, or of catalog pages from a lower platform, would be dropped. The kernel
/// caps it at `net.core.rmem_max`.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// The SIP UDP socket on `addr`, with a receive buffer for bursts.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
    // A smaller buffer than asked for is still better than none: not an error.
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Largest TCP buffer kept while a message is incomplete.
const MAX_STREAM_BUFFER: usize = sip::MAX_HEAD + sip::MAX_BODY + 4096;

impl SipServer {
    /// Listens on `listen` (UDP and TCP, same port) and runs a platform with `cfg`. If
    /// `cfg.local` has port 0 it becomes the bound address.
    pub async fn bind(mut cfg: PlatformConfig, listen: SocketAddr) -> Result<SipServer, ServerError> {
        let udp = bind_udp(listen).map_err(|source| ServerError::Bind {
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

    /// Starts a link toward an upper platform (registering at once).
    pub async fn add_upper(&self, cfg: UpperConfig) -> Result<(), ServerError> {
        self.tx
            .send(Command::AddUpper(Box::new(cfg)))
            .await
            .map_err(|_| ServerError::Stopped)
    }

    /// The links toward upper platforms.
    pub async fn uppers(&self) -> Vec<UpperView> {
        self.ask(Command::Uppers).await.unwrap_or_default()
    }

    async fn upper(&self, upper: &str, c: UpperCommand) {
        let _ = self.tx.send(Command::Upper(upper.to_owned(), c)).await;
    }

    /// Answers upper `upper`'s Catalog query `sn` with `entries`.
    pub async fn upper_catalog(&self, upper: &str, sn: u64, entries: Vec<CatalogEntry>) {
        self.upper(upper, UpperCommand::Catalog(sn, entries)).await;
    }

    /// Answers upper `upper`'s RecordInfo query `sn` about `channel` (named `name`).
    pub async fn upper_records(&self, upper: &str, sn: u64, channel: &str, name: &str, records: Vec<RecordEntry>) {
        self.upper(
            upper,
            UpperCommand::Records(sn, channel.to_owned(), name.to_owned(), records),
        )
        .await;
    }

    /// Sends upper `upper` a single MANSCDP answer body.
    pub async fn upper_answer(&self, upper: &str, body: String) {
        self.upper(upper, UpperCommand::Answer(body)).await;
    }

    /// Tells upper `upper` of catalog changes, if it subscribed.
    pub async fn upper_notify(&self, upper: &str, changes: Vec<(CatalogEntry, &'static str)>) {
        self.upper(upper, UpperCommand::Notify(changes)).await;
    }

    /// Answers an upper's INVITE with `sdp`.
    pub async fn upper_accept(&self, upper: &str, dialog: DialogId, sdp: String) {
        self.upper(upper, UpperCommand::Accept(dialog, sdp)).await;
    }

    /// Refuses an upper's INVITE.
    pub async fn upper_reject(&self, upper: &str, dialog: DialogId, code: u16, reason: &str) {
        self.upper(upper, UpperCommand::Reject(dialog, code, reason.to_owned()))
            .await;
    }

    /// Ends a session with an upper (BYE).
    pub async fn upper_hangup(&self, upper: &str, dialog: DialogId) {
        self.upper(upper, UpperCommand::Hangup(dialog)).await;
    }

    /// Tells an upper its playback or download is complete (MediaStatus 121).
    pub async fn upper_media_status(&self, upper: &str, dialog: DialogId) {
        self.upper(upper, UpperCommand::MediaStatus(dialog)).await;
    }

    /// Unregisters from every upper and ends their sessions (the node is stopping); waits
    /// until the messages are handed to the sockets.
    pub async fn stop_uppers(&self) {
        let _ = self.ask(Command::StopUppers).await;
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

/// Opens a TCP connection to `addr` for the messages sent to it (an upper reached over TCP):
/// its writer is returned at once; what it reads goes to the main loop like an accepted one's.
fn connect_out(addr: SocketAddr, to_main: mpsc::Sender<(Peer, Option<Message>)>) -> mpsc::Sender<Vec<u8>> {
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        let failed = match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(format!("cannot connect: {e}")),
            Err(_) => Err("connecting timed out after 5 s".to_owned()),
        };
        let stream = match failed {
            Ok(s) => s,
            Err(why) => {
                warn!(%addr, "GB28181 TCP: {why}");
                let peer = Peer {
                    transport: Transport::Tcp,
                    addr,
                };
                let _ = to_main.send((peer, None)).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
        tokio::spawn(read_connection(addr, rd, to_main));
        while let Some(data) = wrx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    wtx
}

/// The state machines the task runs.
struct Roles {
    platform: Platform,
    uppers: Vec<UpperLink>,
}

impl Roles {
    fn handle(&mut self, from: Peer, m: Message) {
        let now = Instant::now();
        match self.uppers.iter_mut().find(|u| u.accepts(&m)) {
            Some(u) => u.handle_message(now, unix_ms(), from, m),
            None => self.platform.handle_message(now, unix_ms(), from, m),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.uppers
            .iter()
            .filter_map(UpperLink::poll_timeout)
            .chain(self.platform.poll_timeout())
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.platform.handle_timeout(now);
        for u in &mut self.uppers {
            u.handle_timeout(now);
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.platform
            .poll_output()
            .or_else(|| self.uppers.iter_mut().find_map(UpperLink::poll_output))
    }

    fn upper(&mut self, now: Instant, id: &str, c: UpperCommand) {
        let Some(u) = self.uppers.iter_mut().find(|u| u.id() == id) else {
            return;
        };
        match c {
            UpperCommand::Catalog(sn, entries) => u.answer_catalog(now, sn, &entries),
            UpperCommand::Records(sn, channel, name, records) => u.answer_records(now, sn, &channel, &name, &records),
            UpperCommand::Answer(body) => u.answer(now, &body),
            UpperCommand::Notify(changes) => u.notify_catalog(now, &changes),
            UpperCommand::Accept(d, sdp) => u.accept(now, d, sdp),
            UpperCommand::Reject(d, code, reason) => u.reject(now, d, code, &reason),
            UpperCommand::Hangup(d) => u.hangup(now, d),
            UpperCommand::MediaStatus(d) => u.media_status(now, d),
        }
    }
}

async fn run(
    platform: Platform,
    udp: UdpSocket,
    tcp: TcpListener,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
) {
    let mut roles = Roles {
        platform,
        uppers: Vec::new(),
    };
    let mut buf = vec![0u8; 65_536];
    let (conn_tx, mut conn_rx) = mpsc::channel::<(Peer, Option<Message>)>(1024);
    let mut writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    loop {
        let wake = roles
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let Ok((n, addr)) = r else { continue };
                let from = Peer { transport: Transport::Udp, addr };
                match sip::parse(&buf[..n], Framing::Datagram) {
                    Ok((m, _)) => roles.handle(from, m),
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
                Some(m) => roles.handle(from, m),
                None => { writers.remove(&from.addr); }
            },
            c = commands.recv() => {
                let Some(c) = c else { break };
                let now = Instant::now();
                let platform = &mut roles.platform;
                let mut stopped = None;
                match c {
                    Command::Invite(d, offer, r) => { let _ = r.send(platform.invite(now, &d, &offer)); }
                    Command::Hangup(call) => { let _ = platform.hangup(now, call); }
                    Command::Info(call, body) => { let _ = platform.info(now, call, &body); }
                    Command::Catalog(d, r) => { let _ = r.send(platform.query_catalog(now, &d)); }
                    Command::Records(d, ch, s, e, r) => { let _ = r.send(platform.query_records(now, &d, &ch, &s, &e)); }
                    Command::Ptz(d, ch, cmd, r) => { let _ = r.send(platform.ptz(now, &d, &ch, &cmd)); }
                    Command::Devices(r) => { let _ = r.send(platform.devices()); }
                    Command::Upper(id, c) => roles.upper(now, &id, c),
                    Command::AddUpper(cfg) => {
                        info!(upper = %cfg.id, addr = %cfg.addr, "GB28181 cascade: registering to upper platform");
                        let mut link = UpperLink::new(*cfg);
                        link.start(now);
                        roles.uppers.retain(|u| u.id() != link.id());
                        roles.uppers.push(link);
                    }
                    Command::Uppers(r) => { let _ = r.send(roles.uppers.iter().map(|u| view(u, now)).collect()); }
                    Command::StopUppers(r) => {
                        for u in &mut roles.uppers {
                            u.stop(now);
                        }
                        stopped = Some(r);
                    }
                }
                if let Some(r) = stopped {
                    flush(&mut roles, &udp, &mut writers, &conn_tx, &events).await;
                    let _ = r.send(());
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => roles.handle_timeout(Instant::now()),
        }
        flush(&mut roles, &udp, &mut writers, &conn_tx, &events).await;
    }
}

/// Sends what the state machines want sent and publishes their events.
async fn flush(
    roles: &mut Roles,
    udp: &UdpSocket,
    writers: &mut HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    conn_tx: &mpsc::Sender<(Peer, Option<Message>)>,
    events: &broadcast::Sender<Event>,
) {
    while let Some(out) = roles.poll_output() {
        match out {
            Output::Send { to, data } => match to.transport {
                Transport::Udp => {
                    if let Err(e) = udp.send_to(&data, to.addr).await {
                        debug!(addr = %to.addr, "GB28181 UDP send: {e}");
                    }
                }
                Transport::Tcp => {
                    let is_upper = roles
                        .uppers
                        .iter()
                        .any(|u| u.config().addr == to.addr && u.config().transport == Transport::Tcp);
                    if is_upper && !writers.contains_key(&to.addr) {
                        writers.insert(to.addr, connect_out(to.addr, conn_tx.clone()));
                    }
                    match writers.get(&to.addr) {
                        Some(w) => {
                            if w.try_send(data).is_err() {
                                warn!(addr = %to.addr, "GB28181 TCP: the connection is not draining; message dropped");
                            }
                        }
                        None => debug!(addr = %to.addr, "GB28181 TCP: no connection to the device any more"),
                    }
                }
            },
            Output::Event(e) => {
                let _ = events.send(e);
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
