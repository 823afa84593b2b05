//! GB/T 28181 media as it arrives: RTP packets (over UDP, or over TCP in RFC 4571 framing)
//! carrying an MPEG program stream, turned into access units ready to be [`media::Frame`]s.
//! Sans-IO: bytes and packets in, frames out.
//!
//! * [`TcpDeframer`]: RFC 4571 (2-byte length) and the `$`-interleaved 4-byte form some devices
//!   use instead (gb28181-rs, RTSP-minded firmware), told apart on the first packet; each
//!   packet's RTP version is checked and the stream resynchronised after a truncated packet
//!   (cameras that overwrite their own TCP send buffer, ZLMediaKit #571).
//! * [`PsRtpReceiver`]: SSRC learning, a small reorder window for UDP, loss detection, the PS
//!   demuxer, and the marker bit as the end of a frame.
//! * [`EsFramer`]: Annex B access units to length-prefixed samples plus [`StreamParams`] taken
//!   from the in-band parameter sets.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use media::ps::{PsDemuxer, PsFrame};
use media::{StreamParams, VideoCodec};

/// An RTP packet's header fields and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit: the last packet of a frame.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp (90 kHz for video).
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload, padding and extensions removed.
    pub payload: &'a [u8],
}

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the 12-byte header (or its CSRCs and extension).
    #[error("RTP packet of {0} bytes is too short")]
    Short(usize),
    /// Not version 2.
    #[error("not RTP version 2")]
    Version,
    /// Padding longer than the payload.
    #[error("RTP padding longer than the packet")]
    Padding,
}

/// Parses one RTP packet.
pub fn parse_rtp(b: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if b.len() < 12 {
        return Err(RtpError::Short(b.len()));
    }
    if b[0] >> 6 != 2 {
        return Err(RtpError::Version);
    }
    let csrc = usize::from(b[0] & 0x0F) * 4;
    let mut start = 12 + csrc;
    if b.len() < start {
        return Err(RtpError::Short(b.len()));
    }
    if b[0] & 0x10 != 0 {
        if b.len() < start + 4 {
            return Err(RtpError::Short(b.len()));
        }
        let words = usize::from(u16::from_be_bytes([b[start + 2], b[start + 3]]));
        start += 4 + words * 4;
        if b.len() < start {
            return Err(RtpError::Short(b.len()));
        }
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        let pad = usize::from(b[b.len() - 1]);
        if pad == 0 || pad > end - start {
            return Err(RtpError::Padding);
        }
        end -= pad;
    }
    Ok(RtpPacket {
        payload_type: b[1] & 0x7F,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload: &b[start..end],
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Unknown,
    Rfc4571,
    Interleaved,
}

/// Cuts RTP packets out of a TCP byte stream.
#[derive(Debug)]
pub struct TcpDeframer {
    buf: Vec<u8>,
    framing: Framing,
    /// Bytes skipped to find the next packet after a broken one.
    pub resync_bytes: u64,
}

impl Default for TcpDeframer {
    fn default() -> Self {
        TcpDeframer {
            buf: Vec::new(),
            framing: Framing::Unknown,
            resync_bytes: 0,
        }
    }
}

impl TcpDeframer {
    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn header_len(&self) -> usize {
        if self.framing == Framing::Interleaved { 4 } else { 2 }
    }

    /// A plausible packet of `framing` starts at `i`: a length that fits an RTP header and an
    /// RTP version 2 byte after it.
    fn plausible(&self, framing: Framing, i: usize) -> Option<bool> {
        let b = &self.buf[i..];
        let (hl, len) = match framing {
            Framing::Interleaved => {
                if b.len() < 5 {
                    return None;
                }
                (4, usize::from(u16::from_be_bytes([b[2], b[3]])))
            }
            _ => {
                if b.len() < 3 {
                    return None;
                }
                (2, usize::from(u16::from_be_bytes([b[0], b[1]])))
            }
        };
        let ok = len >= 12 && b[hl] >> 6 == 2 && (framing != Framing::Interleaved || b[0] == b'$');
        Some(ok)
    }

    /// The next whole packet, if one has arrived. Call until `None` after each push.
    pub fn next_packet(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.framing == Framing::Unknown {
                match self.plausible(Framing::Interleaved, 0) {
                    Some(true) => self.framing = Framing::Interleaved,
                    Some(false) => self.framing = Framing::Rfc4571,
                    None => return None,
                }
            }
            match self.plausible(self.framing, 0) {
                None => return None,
                Some(true) => {}
                Some(false) => {
                    // Resynchronise: the next position where a packet plausibly starts.
                    let found = (1..self.buf.len()).find(|&i| self.plausible(self.framing, i) == Some(true));
                    let skip = found.unwrap_or(self.buf.len().saturating_sub(4));
                    self.resync_bytes += skip as u64;
                    self.buf.drain(..skip);
                    found?;
                    continue;
                }
            }
            let hl = self.header_len();
            let len = usize::from(u16::from_be_bytes([self.buf[hl - 2], self.buf[hl - 1]]));
            if self.buf.len() < hl + len {
                return None;
            }
            let packet = self.buf[hl..hl + len].to_vec();
            self.buf.drain(..hl + len);
            return Some(packet);
        }
    }
}

/// Counters of one receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Packets taken.
    pub packets: u64,
    /// Packets of another SSRC than the session's, ignored.
    pub foreign_ssrc: u64,
    /// Packets found missing.
    pub lost: u64,
    /// Packets that arrived out of order and were put back in order.
    pub reordered: u64,
    /// Packets that were not RTP.
    pub malformed: u64,
}

/// How many out-of-order packets are held waiting for a missing one.
const REORDER_WINDOW: usize = 16;

/// RTP packets of one session in, PS frames out.
#[derive(Debug, Default)]
pub struct PsRtpReceiver {
    ssrc: Option<u32>,
    next_seq: Option<u16>,
    held: BTreeMap<u16, (bool, u32, Vec<u8>)>,
    demux: PsDemuxer,
    last_timestamp: Option<u32>,
    stats: ReceiverStats,
}

impl PsRtpReceiver {
    /// A receiver that takes the SSRC of the first packet (devices may answer another SSRC
    /// than offered, and the answer's `y=` is not always right either).
    pub fn new() -> PsRtpReceiver {
        PsRtpReceiver::default()
    }

    /// Counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The PS demuxer's counters.
    pub fn ps_stats(&self) -> media::ps::PsStats {
        self.demux.stats()
    }

    /// Takes one datagram or deframed packet.
    pub fn push_packet(&mut self, data: &[u8]) {
        let p = match parse_rtp(data) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match self.ssrc {
            None => self.ssrc = Some(p.ssrc),
            Some(s) if s != p.ssrc => {
                self.stats.foreign_ssrc += 1;
                return;
            }
            Some(_) => {}
        }
        self.stats.packets += 1;
        let Some(expected) = self.next_seq else {
            self.take(p.seq, p.marker, p.timestamp, p.payload);
            return;
        };
        let ahead = p.seq.wrapping_sub(expected);
        if ahead == 0 {
            self.take(p.seq, p.marker, p.timestamp, p.payload);
            self.release_held();
        } else if ahead < 0x8000 {
            self.stats.reordered += 1;
            self.held.insert(p.seq, (p.marker, p.timestamp, p.payload.to_vec()));
            if self.held.len() > REORDER_WINDOW {
                // The missing packet is not coming: count it lost and go on from the oldest held.
                let (&first, _) = self
                    .held
                    .iter()
                    .min_by_key(|(s, _)| s.wrapping_sub(expected))
                    .expect("held is not empty");
                self.stats.lost += u64::from(first.wrapping_sub(expected));
                self.stats.reordered -= 1;
                self.demux.lost();
                self.next_seq = Some(first);
                self.release_held();
            }
        }
        // Else: a duplicate or a packet too late to use.
    }

    fn release_held(&mut self) {
        while let Some(seq) = self.next_seq
            && let Some((marker, ts, payload)) = self.held.remove(&seq)
        {
            self.take(seq, marker, ts, &payload);
        }
    }

    fn take(&mut self, seq: u16, marker: bool, timestamp: u32, payload: &[u8]) {
        // A new timestamp means a new frame even when the marker bit was missing.
        if self.last_timestamp.is_some_and(|t| t != timestamp) {
            self.demux.end_of_frame();
        }
        self.last_timestamp = Some(timestamp);
        self.next_seq = Some(seq.wrapping_add(1));
        self.demux.push(payload);
        if marker {
            self.demux.end_of_frame();
        }
    }

    /// The next frame, with the RTP timestamp of the packets it came in.
    pub fn poll(&mut self) -> Option<PsFrame> {
        self.demux.poll()
    }

    /// Flushes at the end of the session.
    pub fn finish(&mut self) {
        self.demux.finish();
    }
}

/// Why an access unit could not become a frame.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// Its parameter sets do not parse.
    #[error("bad parameter sets: {0}")]
    Params(#[from] media::ParamsError),
}

/// A frame's sample data with the parameters it needs.
#[derive(Clone, Debug)]
pub struct EsSample {
    /// Parameters (changed when [`EsSample::new_params`]).
    pub params: Arc<StreamParams>,
    /// True when these parameters differ from the last sample's.
    pub new_params: bool,
    /// 4-byte length-prefixed NAL units, parameter sets and delimiters removed.
    pub data: Bytes,
    /// Key frame.
    pub key: bool,
}

/// Turns Annex B access units into samples, keeping the parameter sets seen in band.
#[derive(Debug, Default)]
pub struct EsFramer {
    vps: Option<Vec<u8>>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    params: Option<Arc<StreamParams>>,
    dirty: bool,
}

impl EsFramer {
    /// A framer with no parameters yet.
    pub fn new() -> EsFramer {
        EsFramer::default()
    }

    /// One access unit; `Ok(None)` while no parameters are known (frames before the first
    /// SPS/PPS cannot be decoded).
    pub fn frame(&mut self, f: &PsFrame) -> Result<Option<EsSample>, EsError> {
        let mut data = Vec::with_capacity(f.data.len() + 16);
        for nal in media::annexb::nal_units(&f.data) {
            let param = |slot: &mut Option<Vec<u8>>, dirty: &mut bool| {
                if slot.as_deref() != Some(nal) {
                    *slot = Some(nal.to_vec());
                    *dirty = true;
                }
            };
            match f.codec {
                VideoCodec::H264 => match nal[0] & 0x1F {
                    7 => param(&mut self.sps, &mut self.dirty),
                    8 => param(&mut self.pps, &mut self.dirty),
                    9 => {}
                    _ => push_nal(&mut data, nal),
                },
                VideoCodec::H265 => match (nal[0] >> 1) & 0x3F {
                    32 => param(&mut self.vps, &mut self.dirty),
                    33 => param(&mut self.sps, &mut self.dirty),
                    34 => param(&mut self.pps, &mut self.dirty),
                    35 => {}
                    _ => push_nal(&mut data, nal),
                },
            }
        }
        let mut new_params = false;
        if self.dirty || self.params.as_ref().is_some_and(|p| p.codec() != f.codec) {
            let built = match (f.codec, &self.vps, &self.sps, &self.pps) {
                (VideoCodec::H264, _, Some(sps), Some(pps)) => Some(StreamParams::h264(sps, pps)?),
                (VideoCodec::H265, Some(vps), Some(sps), Some(pps)) => Some(StreamParams::h265(vps, sps, pps)?),
                _ => None,
            };
            if let Some(p) = built {
                self.dirty = false;
                if self.params.as_deref() != Some(&p) {
                    self.params = Some(Arc::new(p));
                    new_params = true;
                }
            }
        }
        let Some(params) = self.params.clone() else {
            return Ok(None);
        };
        if data.is_empty() || params.codec() != f.codec {
            return Ok(None);
        }
        Ok(Some(EsSample {
            params,
            new_params,
            data: Bytes::from(data),
            key: f.key,
        }))
    }
}

fn push_nal(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    out.extend_from_slice(nal);
}

/// Unwraps 33-bit PTS values into a monotonic-ish 64-bit media time.
#[derive(Debug, Default)]
pub struct PtsUnwrapper {
    last: Option<u64>,
    base: i64,
}

impl PtsUnwrapper {
    /// The media time of a 33-bit PTS.
    pub fn unwrap(&mut self, pts: u64) -> i64 {
        const WRAP: i64 = 1 << 33;
        let pts = pts & (WRAP as u64 - 1);
        if let Some(last) = self.last {
            let d = pts as i64 - last as i64;
            if d < -WRAP / 2 {
                self.base += WRAP;
            } else if d > WRAP / 2 {
                self.base -= WRAP;
            }
        }
        self.last = Some(pts);
        self.base + pts as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, marker: bool, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        media::rtp::write_header(&mut v, marker, seq, ts, ssrc);
        v[1] = (v[1] & 0x80) | 96;
        v.extend_from_slice(payload);
        v
    }

    fn ps_stream(frames: usize) -> Vec<(Vec<u8>, u32)> {
        let fixture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/h264_240p.h264"
        ))
        .unwrap();
        let units = split_aus(&fixture);
        units
            .iter()
            .take(frames)
            .enumerate()
            .map(|(i, au)| {
                let key = media::annexb::nal_units(au).any(|n| n[0] & 0x1F == 5);
                let mut out = Vec::new();
                media::ps::mux_frame(VideoCodec::H264, 3600 * i as u64, key, au, &mut out);
                (out, 3600 * i as u32)
            })
            .collect()
    }

    /// Access units of an Annex B file: a new one at each slice with first_mb_in_slice 0
    /// (a first byte after the header with its top bit set), parameter sets with the next.
    fn split_aus(stream: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut cur = Vec::new();
        for nal in media::annexb::nal_units(stream) {
            let t = nal[0] & 0x1F;
            let first_slice = matches!(t, 1 | 5) && nal.len() > 1 && nal[1] & 0x80 != 0;
            if first_slice && cur.iter().any(|n: &Vec<u8>| matches!(n[0] & 0x1F, 1 | 5)) {
                out.push(cur.iter().flat_map(|n| [&[0, 0, 0, 1][..], n].concat()).collect());
                cur.clear();
            }
            cur.push(nal.to_vec());
        }
        out.push(cur.iter().flat_map(|n| [&[0, 0, 0, 1][..], n].concat()).collect());
        out
    }

    fn packets(frames: &[(Vec<u8>, u32)], ssrc: u32) -> Vec<Vec<u8>> {
        let mut seq = 65_530u16;
        let mut out = Vec::new();
        for (ps, ts) in frames {
            let chunks: Vec<&[u8]> = ps.chunks(1400).collect();
            for (i, c) in chunks.iter().enumerate() {
                out.push(rtp(seq, *ts, i + 1 == chunks.len(), ssrc, c));
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    fn receive(pkts: &[Vec<u8>]) -> (Vec<EsSample>, PsRtpReceiver) {
        let mut r = PsRtpReceiver::new();
        let mut f = EsFramer::new();
        let mut out = Vec::new();
        for p in pkts {
            r.push_packet(p);
            while let Some(fr) = r.poll() {
                if let Some(s) = f.frame(&fr).unwrap() {
                    out.push(s);
                }
            }
        }
        r.finish();
        while let Some(fr) = r.poll() {
            if let Some(s) = f.frame(&fr).unwrap() {
                out.push(s);
            }
        }
        (out, r)
    }

    #[test]
    fn frames_come_through_in_order_across_sequence_wrap_and_reordering() {
        let frames = ps_stream(50);
        let mut pkts = packets(&frames, 0x05F5_E101);
        let (plain, _) = receive(&pkts);
        assert_eq!(plain.len(), 50);
        assert!(plain[0].key && plain[0].new_params);
        assert_eq!(plain[0].params.width(), 320);
        // Swap neighbours all along: the window puts them back.
        for i in (1..pkts.len() - 1).step_by(5) {
            pkts.swap(i, i + 1);
        }
        // A foreign SSRC's packets in between are ignored.
        pkts.insert(3, rtp(1, 1, true, 42, b"junk"));
        let (reordered, r) = receive(&pkts);
        assert_eq!(reordered.len(), 50);
        assert!(r.stats().reordered > 0);
        assert_eq!(r.stats().foreign_ssrc, 1);
        for (a, b) in plain.iter().zip(&reordered) {
            assert_eq!(a.data, b.data);
        }
    }

    #[test]
    fn a_lost_packet_drops_its_frame_until_the_next_key_frame() {
        let frames = ps_stream(50);
        let mut pkts = packets(&frames, 7);
        let (all, _) = receive(&pkts);
        pkts.remove(pkts.len() / 3);
        let (some, r) = receive(&pkts);
        assert_eq!(r.stats().lost, 1);
        assert!(some.len() < all.len());
        // What came out is the frames before the loss, then the rest from a key frame on.
        let k = some.iter().zip(&all).take_while(|(a, b)| a.data == b.data).count();
        assert!(k < some.len(), "output resumed after the loss");
        let tail = &all[all.len() - (some.len() - k)..];
        assert!(some[k].key);
        assert!(some[k..].iter().zip(tail).all(|(a, b)| a.data == b.data));
        assert!(
            k + 1 < all.len() - tail.len(),
            "the frame with the lost packet is not in the output"
        );
    }

    #[test]
    fn tcp_framings_and_resync() {
        let frames = ps_stream(10);
        let pkts = packets(&frames, 9);
        for interleaved in [false, true] {
            let mut stream = Vec::new();
            for (i, p) in pkts.iter().enumerate() {
                if interleaved {
                    stream.extend_from_slice(&[b'$', 0]);
                }
                stream.extend_from_slice(&(p.len() as u16).to_be_bytes());
                stream.extend_from_slice(p);
                if i == 5 {
                    // A truncated packet (camera buffer overflow): garbage to resync over.
                    stream.extend_from_slice(&[0x00, 0x30, 0x11, 0x22, 0x33]);
                }
            }
            let mut d = TcpDeframer::default();
            let mut got = Vec::new();
            for piece in stream.chunks(333) {
                d.push(piece);
                while let Some(p) = d.next_packet() {
                    got.push(p);
                }
            }
            assert_eq!(got.len(), pkts.len(), "interleaved={interleaved}");
            assert!(d.resync_bytes > 0);
            assert_eq!(got, pkts);
        }
    }

    #[test]
    fn hostile_packets() {
        assert_eq!(parse_rtp(&[0x80; 5]), Err(RtpError::Short(5)));
        assert_eq!(parse_rtp(&[0x40; 12]), Err(RtpError::Version));
        let mut p = rtp(1, 1, true, 1, &[1, 2, 3]);
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 200;
        assert_eq!(parse_rtp(&p), Err(RtpError::Padding));
        let mut p = rtp(1, 1, true, 1, &[]);
        p[0] |= 0x1F;
        assert!(parse_rtp(&p).is_err());
        let mut r = PsRtpReceiver::new();
        for len in 0..64 {
            r.push_packet(&vec![0x80; len]);
            while r.poll().is_some() {}
        }
        let mut u = PtsUnwrapper::default();
        assert_eq!(u.unwrap((1 << 33) - 10), (1 << 33) - 10);
        assert_eq!(u.unwrap(5), (1 << 33) + 5);
    }
}
