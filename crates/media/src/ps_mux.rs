//! MPEG-2 Program Stream (PS) muxing as GB/T 28181 sends video toward an upper platform (std
//! Annex C): one pack per frame; the system header and the program stream map (PSM, with its
//! CRC) after the pack header of every key frame; the frame in video PES packets on stream id
//! 0xE0, the first with the PTS; then [`PsRtp`] cuts the pack into RTP packets (payload type
//! 96, one timestamp per frame, the marker on the frame's last packet).
//!
//! Sans-IO and written by hand: the PS crates found mux transport streams or nothing; a PS pack
//! is a dozen fixed fields. Checked by our own demuxer and by ffmpeg (`crates/media/tests/`).

use crate::{Frame, VideoCodec};

/// Largest payload of one video PES: its length field is 16 bits and covers the 3 header
/// bytes and the PTS.
const PES_CHUNK: usize = 65_000;

/// `mux_rate` of the pack and system headers, in units of 50 bytes/s: 20 Mbit/s, above any
/// camera stream (receivers do not pace by it, but some check it is not zero).
const MUX_RATE: u32 = 50_000;

/// The PSM's `stream_type` of a codec (std C.1).
pub fn stream_type(codec: VideoCodec) -> u8 {
    match codec {
        VideoCodec::H264 => 0x1B,
        VideoCodec::H265 => 0x24,
    }
}

/// CRC-32 of MPEG-2 sections (polynomial 0x04C11DB7, initial value all ones, no reflection,
/// no final inversion), which ends the PSM.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn pack_header(scr: u64, out: &mut Vec<u8>) {
    // '01' SCR[32..30] '1' SCR[29..15] '1' SCR[14..0] '1' SCR_ext(9) '1' mux_rate(22) '11'
    // reserved(5) stuffing_length(3).
    out.extend_from_slice(&[0, 0, 1, 0xBA]);
    out.push(0x44 | (((scr >> 30) as u8 & 0x07) << 3) | ((scr >> 28) as u8 & 0x03));
    out.push((scr >> 20) as u8);
    out.push(((scr >> 12) as u8 & 0xF8) | 0x04 | ((scr >> 13) as u8 & 0x03));
    out.push((scr >> 5) as u8);
    out.push((((scr & 0x1F) as u8) << 3) | 0x04);
    out.push(0x01);
    out.push((MUX_RATE >> 14) as u8);
    out.push((MUX_RATE >> 6) as u8);
    out.push((((MUX_RATE & 0x3F) as u8) << 2) | 0x03);
    out.push(0xF8);
}

fn system_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 1, 0xBB, 0, 9]);
    // marker, rate_bound(22), marker.
    out.push(0x80 | (MUX_RATE >> 15) as u8);
    out.push((MUX_RATE >> 7) as u8);
    out.push((((MUX_RATE & 0x7F) as u8) << 1) | 1);
    // audio_bound 0, fixed 0, CSPS 0; system_audio_lock, system_video_lock, marker,
    // video_bound 1; packet_rate_restriction 0, reserved.
    out.extend_from_slice(&[0x00, 0xE1, 0x7F]);
    // Video stream 0xE0: '11' P-STD_buffer_bound_scale 1, size bound 1024 × 1 KiB.
    out.extend_from_slice(&[0xE0, 0xE4, 0x00]);
}

fn psm(codec: VideoCodec, out: &mut Vec<u8>) {
    let start = out.len();
    // current_next 1, single_extension 0, reserved, version 0; reserved, marker.
    out.extend_from_slice(&[0, 0, 1, 0xBC, 0, 14, 0xE0, 0xFF]);
    out.extend_from_slice(&[0, 0]); // program_stream_info_length
    out.extend_from_slice(&[0, 4]); // elementary_stream_map_length
    out.extend_from_slice(&[stream_type(codec), 0xE0, 0, 0]);
    let crc = crc32_mpeg2(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Appends a PS pack holding one frame's access unit `es` (Annex B): the pack header with
/// `pts` as its SCR; the system header and PSM when `key`; the frame in PES packets of at most
/// 65,000 bytes, the first with the PTS (33 bits of `pts`).
pub fn mux_frame(codec: VideoCodec, pts: u64, key: bool, es: &[u8], out: &mut Vec<u8>) {
    let pts = pts & 0x1_FFFF_FFFF;
    pack_header(pts, out);
    if key {
        system_header(out);
        psm(codec, out);
    }
    for (i, chunk) in es.chunks(PES_CHUNK).enumerate() {
        let with_pts = i == 0;
        let hlen = if with_pts { 5 } else { 0 };
        let len = 3 + hlen + chunk.len();
        // '10' scrambling 0, priority 0, alignment 1 on the first, copyright 0, original 0.
        let flags1 = if with_pts { 0x84 } else { 0x80 };
        out.extend_from_slice(&[0, 0, 1, 0xE0, (len >> 8) as u8, len as u8, flags1]);
        out.push(if with_pts { 0x80 } else { 0 });
        out.push(hlen as u8);
        if with_pts {
            out.push(0x21 | (((pts >> 30) as u8 & 0x07) << 1));
            out.push((pts >> 22) as u8);
            out.push(((pts >> 14) as u8 & 0xFE) | 1);
            out.push((pts >> 7) as u8);
            out.push((((pts & 0x7F) as u8) << 1) | 1);
        }
        out.extend_from_slice(chunk);
    }
}

/// Appends `frame`'s access unit in Annex B form: 4-byte start codes, and the parameter sets
/// (VPS, SPS, PPS) before a key frame, so that a receiver can start decoding there.
pub fn write_annexb(frame: &Frame, out: &mut Vec<u8>) {
    if frame.key {
        let p = &frame.params;
        for ps in [p.vps().map(|v| &v[..]), Some(&p.sps()[..]), Some(&p.pps()[..])]
            .into_iter()
            .flatten()
        {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(ps);
        }
    }
    for nal in crate::rtp::length_prefixed_nals(&frame.data) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
}

/// Turns frames into PS packs. The PTS is the frame's media time (90 kHz) from the first
/// frame, so a pack's time starts near zero for every session.
#[derive(Debug, Default)]
pub struct PsMuxer {
    origin: Option<i64>,
    es: Vec<u8>,
}

impl PsMuxer {
    /// A muxer for one session.
    pub fn new() -> PsMuxer {
        PsMuxer::default()
    }

    /// Appends `frame` as one PS pack to `out`; returns its PTS (90 kHz, from the session's
    /// first frame), which is also the RTP timestamp of its packets.
    pub fn push(&mut self, frame: &Frame, out: &mut Vec<u8>) -> u64 {
        let origin = *self.origin.get_or_insert(frame.media_time);
        let pts = frame.media_time.saturating_sub(origin).max(0) as u64;
        self.es.clear();
        write_annexb(frame, &mut self.es);
        mux_frame(frame.params.codec(), pts, frame.key, &self.es, out);
        pts
    }
}

/// RTP packets carrying PS (payload type 96, std Annex C): a pack is cut into payloads of at
/// most `max` bytes, all with the frame's timestamp, the marker on the last.
#[derive(Debug)]
pub struct PsRtp {
    seq: u16,
    ssrc: u32,
    max: usize,
}

impl PsRtp {
    /// Packets with `ssrc`, the first with sequence number `seq`, payloads of at most `max`
    /// bytes (at least 64).
    pub fn new(ssrc: u32, seq: u16, max: usize) -> PsRtp {
        PsRtp {
            seq,
            ssrc,
            max: max.max(64),
        }
    }

    /// The SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Calls `packet` with each RTP packet of `pack` at `timestamp`, in order.
    pub fn packets(&mut self, pack: &[u8], timestamp: u32, mut packet: impl FnMut(&[u8])) {
        let n = pack.len().div_ceil(self.max);
        let mut buf = Vec::with_capacity(self.max + 12);
        for (i, chunk) in pack.chunks(self.max).enumerate() {
            buf.clear();
            crate::rtp::write_header(&mut buf, i + 1 == n, self.seq, timestamp, self.ssrc);
            buf.extend_from_slice(chunk);
            self.seq = self.seq.wrapping_add(1);
            packet(&buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_is_mpeg2_s() {
        // The CRC-32/MPEG-2 check value.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        // A section followed by its own CRC checks to zero.
        let mut psm_bytes = Vec::new();
        psm(VideoCodec::H265, &mut psm_bytes);
        assert_eq!(crc32_mpeg2(&psm_bytes), 0);
        assert_eq!(psm_bytes.len(), 6 + 14);
        assert_eq!(psm_bytes[12], 0x24);
    }

    #[test]
    fn a_key_frame_pack_has_system_header_and_psm_and_the_pts() {
        let es = [0u8, 0, 0, 1, 0x65, 1, 2, 3];
        let mut out = Vec::new();
        mux_frame(VideoCodec::H264, 0x1_2345_6789, true, &es, &mut out);
        assert_eq!(&out[..4], &[0, 0, 1, 0xBA]);
        let find = |code: u8| out.windows(4).position(|w| w == [0, 0, 1, code]);
        let (bb, bc, e0) = (find(0xBB).unwrap(), find(0xBC).unwrap(), find(0xE0).unwrap());
        assert!(14 == bb && bb < bc && bc < e0);
        // Header lengths agree with what follows.
        assert_eq!(usize::from(u16::from_be_bytes([out[bb + 4], out[bb + 5]])) + 6, bc - bb);
        assert_eq!(usize::from(u16::from_be_bytes([out[bc + 4], out[bc + 5]])) + 6, e0 - bc);
        let pes_len = usize::from(u16::from_be_bytes([out[e0 + 4], out[e0 + 5]]));
        assert_eq!(e0 + 6 + pes_len, out.len());
        assert!(out.ends_with(&es));
        let mut other = Vec::new();
        mux_frame(VideoCodec::H264, 3600, false, &es, &mut other);
        assert!(!other.windows(4).any(|w| w == [0, 0, 1, 0xBC]));
    }

    #[test]
    fn rtp_packets_cut_a_pack_with_one_timestamp_and_the_marker_last() {
        let pack: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut rtp = PsRtp::new(0x05F5_E101, 65_534, 1400);
        let mut got = Vec::new();
        rtp.packets(&pack, 7200, |p| got.push(p.to_vec()));
        assert_eq!(got.len(), 3);
        let seqs: Vec<u16> = got.iter().map(|p| u16::from_be_bytes([p[2], p[3]])).collect();
        assert_eq!(seqs, [65_534, 65_535, 0]);
        for (i, p) in got.iter().enumerate() {
            assert_eq!(p[1] & 0x7F, 96);
            assert_eq!(p[1] >> 7 == 1, i == 2, "marker only on the last");
            assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), 7200);
            assert_eq!(u32::from_be_bytes([p[8], p[9], p[10], p[11]]), 0x05F5_E101);
        }
        let joined: Vec<u8> = got.iter().flat_map(|p| p[12..].to_vec()).collect();
        assert_eq!(joined, pack);
    }
}
