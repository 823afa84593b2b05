//! One media session toward an upper: frames in, PS over RTP out. Live sessions take a hub
//! viewer's frames as they come; recorded ones read frames from a source the node opens (at
//! an offset, again after a seek) and send them at the pace asked (1× for playback, the
//! download speed, MANSRTSP `Scale`), pausing and resuming on request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use media::Frame;
use media::ps_mux::{PsMuxer, PsRtp};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::transport::{SendError, Sink};

/// Counters of one session (and, summed, of the node's output toward uppers).
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames sent.
    pub frames: AtomicU64,
    /// RTP packets sent.
    pub packets: AtomicU64,
    /// Bytes of RTP sent.
    pub bytes: AtomicU64,
}

/// Why a session ended.
#[derive(Debug)]
pub enum Ended {
    /// The live stream ended (the camera went away, or the viewer was cut off).
    Upstream,
    /// The recording was sent to its end.
    Complete,
    /// The session was stopped (BYE).
    Stopped,
    /// Sending failed.
    Failed(SendError),
}

/// Frames to RTP packets of PS.
struct Packetizer {
    muxer: PsMuxer,
    rtp: PsRtp,
    pack: Vec<u8>,
    packets: Vec<Vec<u8>>,
}

impl Packetizer {
    fn new(ssrc: u32) -> Packetizer {
        Packetizer {
            muxer: PsMuxer::new(),
            rtp: PsRtp::new(ssrc, rand_seq(), media::rtp::MAX_PAYLOAD),
            pack: Vec::with_capacity(256 * 1024),
            packets: Vec::new(),
        }
    }

    fn frame(&mut self, f: &Frame) -> &[Vec<u8>] {
        self.pack.clear();
        let pts = self.muxer.push(f, &mut self.pack);
        self.packets.clear();
        let packets = &mut self.packets;
        self.rtp.packets(&self.pack, pts as u32, |p| packets.push(p.to_vec()));
        &self.packets
    }
}

fn rand_seq() -> u16 {
    // The RTP sequence starts at a random number (RFC 3550); the clock's nanoseconds serve.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u16)
}

async fn send(sink: &mut Sink, p: &mut Packetizer, f: &Frame, stats: &Stats) -> Result<(), SendError> {
    let packets = p.frame(f);
    sink.send(packets).await?;
    stats.frames.fetch_add(1, Ordering::Relaxed);
    stats.packets.fetch_add(packets.len() as u64, Ordering::Relaxed);
    stats
        .bytes
        .fetch_add(packets.iter().map(|x| x.len() as u64).sum(), Ordering::Relaxed);
    Ok(())
}

/// Sends a live stream from `viewer` until it ends or `stop`.
pub async fn live(
    mut sink: Sink,
    mut viewer: hub::Viewer,
    ssrc: u32,
    stop: CancellationToken,
    stats: Arc<Stats>,
) -> Ended {
    let mut p = Packetizer::new(ssrc);
    let mut started = false;
    loop {
        let f = tokio::select! {
            _ = stop.cancelled() => return Ended::Stopped,
            f = viewer.recv() => f,
        };
        let Some(f) = f else { return Ended::Upstream };
        // A receiver can only start decoding on a key frame.
        if !started && !f.key {
            continue;
        }
        started = true;
        if let Err(e) = send(&mut sink, &mut p, &f, &stats).await {
            return Ended::Failed(e);
        }
    }
}

/// Playback control from the upper (MANSRTSP in INFO).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Control {
    /// Play at this many times real time.
    Scale(f64),
    /// Stop sending until [`Control::Resume`].
    Pause,
    /// Go on after a pause.
    Resume,
    /// Play from this many seconds after the range's start.
    Seek(f64),
}

/// Reads a MANSRTSP body into controls (a PLAY may carry a Scale and a Range at once).
pub fn controls_of(body: &str) -> Vec<Control> {
    let first = body.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    let mut out = Vec::new();
    match first.as_str() {
        "PAUSE" => out.push(Control::Pause),
        "PLAY" => {
            for line in body.lines() {
                let (k, v) = match line.split_once(':') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
                    None => continue,
                };
                if k == "scale"
                    && let Ok(s) = v.parse::<f64>()
                    && s.is_finite()
                    && s > 0.0
                {
                    out.push(Control::Scale(s.min(16.0)));
                }
                if k == "range"
                    && let Some(from) = v.strip_prefix("npt=").and_then(|r| r.split('-').next())
                    && let Ok(secs) = from.trim().parse::<f64>()
                    && secs.is_finite()
                    && secs >= 0.0
                {
                    out.push(Control::Seek(secs));
                }
            }
            out.push(Control::Resume);
        }
        _ => {}
    }
    out
}

/// Sends recorded frames from `open(offset_secs)` (called at 0, then on each seek) at `speed`
/// times real time, following `controls`, until the source ends (the whole range was sent)
/// or `stop`.
pub async fn recorded(
    mut sink: Sink,
    mut open: impl FnMut(f64) -> mpsc::Receiver<Frame> + Send,
    speed: f64,
    controls: mpsc::Receiver<Control>,
    ssrc: u32,
    stop: CancellationToken,
    stats: Arc<Stats>,
) -> Ended {
    let mut p = Packetizer::new(ssrc);
    let mut controls = Some(controls);
    let mut frames = open(0.0);
    let mut scale = speed.clamp(0.1, 16.0);
    let mut paused = false;
    // The pace: the frame at media time `base_media` is due at `base_at`.
    let mut base: Option<(Instant, i64)> = None;
    let mut pending: Option<Frame> = None;
    loop {
        if pending.is_none() && !paused {
            tokio::select! {
                _ = stop.cancelled() => return Ended::Stopped,
                c = next_control(&mut controls) => apply(c, &mut scale, &mut paused, &mut base, &mut pending, &mut frames, &mut open),
                f = frames.recv() => match f {
                    Some(f) => pending = Some(f),
                    None => return Ended::Complete,
                },
            }
            continue;
        }
        if paused {
            tokio::select! {
                _ = stop.cancelled() => return Ended::Stopped,
                c = next_control(&mut controls) => apply(c, &mut scale, &mut paused, &mut base, &mut pending, &mut frames, &mut open),
            }
            continue;
        }
        let Some(f) = pending.take() else { continue };
        let (at, media) = *base.get_or_insert((Instant::now(), f.media_time));
        let ahead = (f.media_time - media).max(0) as f64 / 90_000.0 / scale;
        let due = at + Duration::from_secs_f64(ahead);
        tokio::select! {
            _ = stop.cancelled() => return Ended::Stopped,
            c = next_control(&mut controls) => {
                pending = Some(f);
                apply(c, &mut scale, &mut paused, &mut base, &mut pending, &mut frames, &mut open);
            }
            _ = tokio::time::sleep_until(due) => {
                if let Err(e) = send(&mut sink, &mut p, &f, &stats).await {
                    return Ended::Failed(e);
                }
            }
        }
    }
}

/// The next control; never returns once the controls' sender is gone.
async fn next_control(controls: &mut Option<mpsc::Receiver<Control>>) -> Control {
    if let Some(rx) = controls {
        match rx.recv().await {
            Some(c) => return c,
            None => *controls = None,
        }
    }
    std::future::pending().await
}

fn apply(
    c: Control,
    scale: &mut f64,
    paused: &mut bool,
    base: &mut Option<(Instant, i64)>,
    pending: &mut Option<Frame>,
    frames: &mut mpsc::Receiver<Frame>,
    open: &mut impl FnMut(f64) -> mpsc::Receiver<Frame>,
) {
    match c {
        Control::Scale(s) => *scale = s.clamp(0.1, 16.0),
        Control::Pause => *paused = true,
        Control::Resume => *paused = false,
        Control::Seek(secs) => {
            *frames = open(secs);
            *pending = None;
        }
    }
    // Whatever changed, the pace starts again from the next frame.
    *base = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mansrtsp_bodies_become_controls() {
        assert_eq!(
            controls_of("PAUSE RTSP/1.0\r\nCSeq: 8\r\nPauseTime: now\r\n"),
            [Control::Pause]
        );
        assert_eq!(
            controls_of("PLAY RTSP/1.0\r\nCSeq: 9\r\nScale: 2.0\r\n"),
            [Control::Scale(2.0), Control::Resume]
        );
        assert_eq!(
            controls_of("PLAY RTSP/1.0\r\nCSeq: 10\r\nRange: npt=100-\r\n"),
            [Control::Seek(100.0), Control::Resume]
        );
        assert_eq!(controls_of("PLAY RTSP/1.0\r\nRange: npt=now-\r\n"), [Control::Resume]);
        for hostile in [
            "PLAY RTSP/1.0\r\nScale: NaN\r\n",
            "PLAY RTSP/1.0\r\nScale: -4\r\n",
            "PLAY RTSP/1.0\r\nRange: npt=-5-\r\n",
        ] {
            assert_eq!(controls_of(hostile), [Control::Resume], "{hostile}");
        }
        assert_eq!(controls_of("PLAY RTSP/1.0\r\nScale: 1e9\r\n")[0], Control::Scale(16.0));
        assert!(controls_of("TEARDOWN RTSP/1.0\r\n").is_empty());
        assert!(controls_of("").is_empty());
    }
}
