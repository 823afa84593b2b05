//! Where the RTP packets go: a UDP socket, or a TCP connection (RFC 4571: each packet after a
//! two-byte length) that we open toward the upper or that the upper opens to us. The socket is
//! bound before the answer is sent, so the answer names its real port (never 0).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use gb28181::invitation::UpperMedia;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

/// Why media could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Binding a local socket failed.
    #[error("cannot open a media socket on {ip}: {source}")]
    Bind {
        /// Our media address.
        ip: IpAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The upper could not be reached (we connect) or did not connect (it connects).
    #[error(
        "no TCP media connection with the upper ({detail}): check that it can reach {local} or that we can reach it"
    )]
    Connect {
        /// Our side.
        local: SocketAddr,
        /// What happened.
        detail: String,
    },
    /// Sending failed mid-stream (the upper went away).
    #[error("sending media to the upper failed: {0}")]
    Send(std::io::Error),
}

enum Bound {
    Udp(UdpSocket, SocketAddr),
    WeConnect(TcpSocket, SocketAddr),
    TheyConnect(TcpListener),
}

/// A socket bound for one session, not yet sending.
pub struct Prepared {
    bound: Bound,
    local: SocketAddr,
}

/// Attempts at connecting to the upper, a second apart (std Annex D asks clients for at least
/// three).
const CONNECT_ATTEMPTS: u32 = 3;

impl Prepared {
    /// Binds what `media` needs on our media address `ip`.
    pub async fn bind(media: UpperMedia, ip: IpAddr) -> Result<Prepared, SendError> {
        let any = SocketAddr::new(ip, 0);
        let bind_err = |source| SendError::Bind { ip, source };
        let bound = match media {
            UpperMedia::Udp(dest) => Bound::Udp(UdpSocket::bind(any).await.map_err(bind_err)?, dest),
            UpperMedia::WeConnect(dest) => {
                let s = if ip.is_ipv6() {
                    TcpSocket::new_v6()
                } else {
                    TcpSocket::new_v4()
                }
                .map_err(bind_err)?;
                s.bind(any).map_err(bind_err)?;
                Bound::WeConnect(s, dest)
            }
            UpperMedia::TheyConnect => Bound::TheyConnect(TcpListener::bind(any).await.map_err(bind_err)?),
        };
        let local = match &bound {
            Bound::Udp(u, _) => u.local_addr(),
            Bound::WeConnect(s, _) => s.local_addr(),
            Bound::TheyConnect(l) => l.local_addr(),
        }
        .map_err(bind_err)?;
        Ok(Prepared { bound, local })
    }

    /// The port to answer with.
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// Opens the way for media, once the upper has ACKed: UDP at once; TCP by connecting to
    /// the upper (retried) or by taking its connection (within `wait`).
    pub async fn open(self, wait: Duration) -> Result<Sink, SendError> {
        let local = self.local;
        let conn = |detail: String| SendError::Connect { local, detail };
        match self.bound {
            Bound::Udp(u, dest) => Ok(Sink::Udp(u, dest)),
            Bound::WeConnect(socket, dest) => {
                // The first attempt uses the socket whose port we answered with.
                let mut last = match socket.connect(dest).await {
                    Ok(s) => return Ok(Sink::tcp(s)),
                    Err(e) => e.to_string(),
                };
                for _ in 1..CONNECT_ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match TcpStream::connect(dest).await {
                        Ok(s) => return Ok(Sink::tcp(s)),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(conn(format!("connecting to {dest}: {last}")))
            }
            Bound::TheyConnect(l) => match tokio::time::timeout(wait, l.accept()).await {
                Ok(Ok((s, _))) => Ok(Sink::tcp(s)),
                Ok(Err(e)) => Err(conn(e.to_string())),
                Err(_) => Err(conn(format!("the upper did not connect within {wait:?}"))),
            },
        }
    }
}

/// Where packets go.
pub enum Sink {
    /// A UDP socket and the upper's address.
    Udp(UdpSocket, SocketAddr),
    /// A TCP connection.
    Tcp(TcpStream, Vec<u8>),
}

impl Sink {
    fn tcp(s: TcpStream) -> Sink {
        let _ = s.set_nodelay(true);
        Sink::Tcp(s, Vec::with_capacity(64 * 1024))
    }

    /// Sends the packets of one frame (over TCP as one write).
    pub async fn send(&mut self, packets: &[Vec<u8>]) -> Result<(), SendError> {
        match self {
            Sink::Udp(u, dest) => {
                for p in packets {
                    u.send_to(p, *dest).await.map_err(SendError::Send)?;
                }
                Ok(())
            }
            Sink::Tcp(s, buf) => {
                buf.clear();
                for p in packets {
                    buf.extend_from_slice(&(p.len() as u16).to_be_bytes());
                    buf.extend_from_slice(p);
                }
                s.write_all(buf).await.map_err(SendError::Send)
            }
        }
    }
}
