//! RTP packetization of H.264 (RFC 6184) and H.265 (RFC 7798) and the SDP that describes it,
//! shared by the camera simulator and the RTSP re-serve. No I/O.
//!
//! Written here rather than taken from a crate: retina depacketizes only, and the packetizing
//! side is two fragmentation rules and a fixed 12-byte header.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::{StreamParams, VideoCodec, h265};

/// Largest RTP payload we produce: fits a 1500-byte MTU with IP, UDP and RTP headers.
pub const MAX_PAYLOAD: usize = 1400;

/// Splits the NAL units of one access unit into RTP payloads of at most `max` bytes: single NAL
/// unit packets where they fit, FU-A (H.264) or FU (H.265) fragments where they do not.
pub fn packetize<'a>(codec: VideoCodec, nals: impl IntoIterator<Item = &'a [u8]>, max: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    for nal in nals {
        if nal.is_empty() {
            continue;
        }
        if nal.len() <= max {
            out.push(Bytes::copy_from_slice(nal));
            continue;
        }
        match codec {
            VideoCodec::H264 => fragment(&mut out, &nal[1..], max - 2, |start, end| {
                // FU-A (RFC 6184 5.8): indicator keeps F and NRI, type 28; header S/E + type.
                vec![
                    (nal[0] & 0xe0) | 28,
                    (u8::from(start) << 7) | (u8::from(end) << 6) | (nal[0] & 0x1f),
                ]
            }),
            VideoCodec::H265 if nal.len() > 2 => fragment(&mut out, &nal[2..], max - 3, |start, end| {
                // FU (RFC 7798 4.4.3): payload header with type 49, then S/E + original type.
                vec![
                    (nal[0] & 0x81) | (49 << 1),
                    nal[1],
                    (u8::from(start) << 7) | (u8::from(end) << 6) | h265::nal_type(nal[0]),
                ]
            }),
            VideoCodec::H265 => {}
        }
    }
    out
}

fn fragment(out: &mut Vec<Bytes>, body: &[u8], chunk: usize, header: impl Fn(bool, bool) -> Vec<u8>) {
    let n = body.len().div_ceil(chunk);
    for (i, part) in body.chunks(chunk).enumerate() {
        let mut p = header(i == 0, i + 1 == n);
        p.extend_from_slice(part);
        out.push(Bytes::from(p));
    }
}

/// The NAL units of an access unit in MP4 form (4-byte big-endian length prefixes). Stops at
/// the first length that runs past the end (a damaged frame yields what precedes it).
pub fn length_prefixed_nals(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let nal = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(nal)
    })
}

/// Appends a 12-byte RTP header (version 2, payload type 96).
pub fn write_header(out: &mut Vec<u8>, marker: bool, seq: u16, timestamp: u32, ssrc: u32) {
    out.push(0x80);
    out.push((u8::from(marker) << 7) | 96);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
}

/// The SDP encoding name (`H264` or `H265`).
pub fn encoding_name(codec: VideoCodec) -> &'static str {
    match codec {
        VideoCodec::H264 => "H264",
        VideoCodec::H265 => "H265",
    }
}

/// The `a=fmtp:96` value for `params`: the parameter sets out of band.
pub fn fmtp(params: &StreamParams) -> String {
    let (sps, pps) = (params.sps(), params.pps());
    match params.codec() {
        VideoCodec::H264 => format!(
            "packetization-mode=1;profile-level-id={:02X}{:02X}{:02X};sprop-parameter-sets={},{}",
            sps.get(1).copied().unwrap_or(0),
            sps.get(2).copied().unwrap_or(0),
            sps.get(3).copied().unwrap_or(0),
            BASE64.encode(sps),
            BASE64.encode(pps)
        ),
        VideoCodec::H265 => format!(
            "sprop-vps={};sprop-sps={};sprop-pps={}",
            BASE64.encode(params.vps().map(|v| &v[..]).unwrap_or_default()),
            BASE64.encode(sps),
            BASE64.encode(pps)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fu_a_fragments_reassemble() {
        let nal: Vec<u8> = std::iter::once(0x65).chain((0..5000u32).map(|i| i as u8)).collect();
        let pkts = packetize(VideoCodec::H264, [nal.as_slice()], 1400);
        assert!(pkts.len() > 3);
        assert!(pkts.iter().all(|p| p.len() <= 1400));
        assert_eq!(pkts[0][1] & 0x80, 0x80);
        assert_eq!(pkts.last().unwrap()[1] & 0x40, 0x40);
        let mut re = vec![(pkts[0][0] & 0xe0) | (pkts[0][1] & 0x1f)];
        for p in &pkts {
            re.extend_from_slice(&p[2..]);
        }
        assert_eq!(re, nal);
    }

    #[test]
    fn h265_fu_fragments_reassemble() {
        let nal: Vec<u8> = [0x26, 0x01].into_iter().chain((0..3000u32).map(|i| i as u8)).collect();
        let pkts = packetize(VideoCodec::H265, [nal.as_slice()], 1000);
        let mut re = vec![(pkts[0][0] & 0x81) | ((pkts[0][2] & 0x3f) << 1), pkts[0][1]];
        for p in &pkts {
            assert_eq!(h265::nal_type(p[0]), 49);
            re.extend_from_slice(&p[3..]);
        }
        assert_eq!(re, nal);
    }

    #[test]
    fn length_prefixed_parsing_stops_at_a_bad_length() {
        let data = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 9, 0x41];
        let nals: Vec<&[u8]> = length_prefixed_nals(&data).collect();
        assert_eq!(nals, vec![&[0x65u8, 1][..]]);
        assert_eq!(length_prefixed_nals(&[0, 0]).count(), 0);
    }
}
