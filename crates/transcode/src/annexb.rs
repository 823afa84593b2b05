//! Between Sharpeye's frame form (length-prefixed NAL units, parameter sets apart) and the
//! Annex B byte stream decoders and encoders take (start codes, parameter sets in band). Pure
//! functions over bytes: fuzzed (`fuzz_targets/annexb.rs`) and tested without GStreamer.

use bytes::{BufMut, Bytes, BytesMut};
use media::{Frame, StreamParams, VideoCodec};

use crate::TranscodeError;

const START: [u8; 4] = [0, 0, 0, 1];

/// A frame as an Annex B access unit; a key frame carries its parameter sets first so a
/// decoder can start on it.
pub fn to_annex_b(frame: &Frame) -> Result<Vec<u8>, TranscodeError> {
    let mut out = Vec::with_capacity(frame.data.len() + 128);
    if frame.key {
        let p = &frame.params;
        for ps in p.vps().into_iter().chain([p.sps(), p.pps()]) {
            out.extend_from_slice(&START);
            out.extend_from_slice(ps);
        }
    }
    let mut rest = &frame.data[..];
    while !rest.is_empty() {
        let Some((len, body)) = rest.split_first_chunk::<4>() else {
            return Err(TranscodeError::Malformed(format!(
                "{} bytes left over after the last NAL unit",
                rest.len()
            )));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > body.len() {
            return Err(TranscodeError::Malformed(format!(
                "a NAL unit of {len} bytes with {} bytes left",
                body.len()
            )));
        }
        out.extend_from_slice(&START);
        out.extend_from_slice(&body[..len]);
        rest = &body[len..];
    }
    Ok(out)
}

/// The NAL units of an Annex B buffer (3- or 4-byte start codes), without their start codes.
pub fn nal_units(buf: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= buf.len() {
        if buf[i] == 0 && buf[i + 1] == 0 && buf[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(buf.len(), |&n| n - 3);
        // Trailing zeros belong to the next 4-byte start code (or are padding).
        while end > s && buf[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            out.push(&buf[s..end]);
        }
    }
    out
}

/// An H.264 access unit from the encoder, in frame form.
#[derive(Debug, PartialEq)]
pub struct H264Unit {
    /// Length-prefixed NAL units without parameter sets or delimiters.
    pub data: Bytes,
    /// Contains an IDR slice.
    pub key: bool,
    /// The SPS and PPS it carried, if any.
    pub params: Option<(Bytes, Bytes)>,
}

/// Splits an encoder's Annex B H.264 access unit into frame form.
pub fn h264_unit(buf: &[u8]) -> Result<H264Unit, TranscodeError> {
    let mut data = BytesMut::with_capacity(buf.len());
    let (mut sps, mut pps, mut key) = (None, None, false);
    for nal in nal_units(buf) {
        match nal[0] & 0x1f {
            7 => sps = Some(Bytes::copy_from_slice(nal)),
            8 => pps = Some(Bytes::copy_from_slice(nal)),
            // Access unit delimiters, end of sequence/stream, filler: not frame content.
            9..=12 => {}
            t => {
                key |= t == 5;
                data.put_u32(nal.len() as u32);
                data.put_slice(nal);
            }
        }
    }
    if data.is_empty() {
        return Err(TranscodeError::Malformed("an encoder output without a slice".into()));
    }
    Ok(H264Unit {
        data: data.freeze(),
        key,
        params: sps.zip(pps),
    })
}

/// Parameters for the H.264 the encoder made, from its SPS and PPS.
pub fn h264_params(sps: &[u8], pps: &[u8]) -> Result<StreamParams, TranscodeError> {
    StreamParams::h264(sps, pps).map_err(|e| TranscodeError::Malformed(format!("the encoder's SPS/PPS: {e}")))
}

/// The GStreamer caps name of a codec's byte stream.
pub fn caps_name(codec: VideoCodec) -> &'static str {
    match codec {
        VideoCodec::H264 => "video/x-h264",
        VideoCodec::H265 => "video/x-h265",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_split_on_both_start_code_lengths() {
        let buf = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0];
        assert_eq!(nal_units(&buf), vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5]]);
        assert!(nal_units(&[]).is_empty());
        assert!(nal_units(&[0, 0, 1]).is_empty());
        assert_eq!(nal_units(&[9, 9, 0, 0, 1, 0x41]), vec![&[0x41][..]]);
    }

    #[test]
    fn an_encoder_unit_becomes_frame_form() {
        let buf = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 7, 7,
        ];
        let u = h264_unit(&buf).unwrap();
        assert!(u.key);
        assert_eq!(
            u.params,
            Some((Bytes::from_static(&[0x67, 1]), Bytes::from_static(&[0x68, 2])))
        );
        assert_eq!(&u.data[..], &[0, 0, 0, 3, 0x65, 7, 7]);
        let p = h264_unit(&[0, 0, 1, 0x41, 1]).unwrap();
        assert!(!p.key && p.params.is_none());
        assert!(h264_unit(&[0, 0, 1, 9, 0]).is_err(), "no slice");
        assert!(h264_unit(b"garbage without start codes").is_err());
    }

    #[test]
    fn frames_become_annex_b_and_bad_lengths_are_errors() {
        let fixture = camsim::BuiltinFixture::H265_240p.load();
        let f = &fixture.frames[0];
        let params = fixture.params.clone().unwrap();
        let frame = Frame {
            stream: media::StreamId::main("c"),
            media_time: 0,
            wall_time: media::WallTime::from_micros(0),
            key: true,
            discontinuity: true,
            params: params.clone(),
            data: f.avcc.clone(),
        };
        let out = to_annex_b(&frame).unwrap();
        let nals = nal_units(&out);
        // VPS, SPS, PPS, then the frame's own units.
        assert_eq!(nals[0], &params.vps().unwrap()[..]);
        assert_eq!(nals[1], &params.sps()[..]);
        assert_eq!(nals[2], &params.pps()[..]);
        assert!(nals.len() > 3);
        for bad in [&[0u8, 0, 0, 9, 1][..], &[0, 0, 0], &[0, 0, 0, 0]] {
            let f = Frame {
                data: Bytes::copy_from_slice(bad),
                ..frame.clone()
            };
            assert!(matches!(to_annex_b(&f), Err(TranscodeError::Malformed(_))), "{bad:?}");
        }
    }
}
