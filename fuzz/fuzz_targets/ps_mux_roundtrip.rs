//! The PS muxer (what an upper platform receives) read back by our demuxer: any sequence of
//! frames (a key frame first; one slice per frame whose header says it starts the picture,
//! NAL payloads with emulation prevention, as encoders write them),
//! muxed and fed to the demuxer in pieces of any size, comes back frame for frame, byte for
//! byte, with each frame's PTS, and never panics either side.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::VideoCodec;
use media::ps::PsDemuxer;
use media::ps_mux::mux_frame;

/// Appends `raw` to `out` with H.264/H.265 emulation prevention: no `00 00 0x` (x ≤ 3) inside.
fn escaped(out: &mut Vec<u8>, raw: &[u8]) {
    for &b in raw {
        let n = out.len();
        if n >= 2 && out[n - 1] == 0 && out[n - 2] == 0 && b <= 3 {
            out.push(3);
        }
        out.push(b);
    }
    // A NAL may not end with a zero byte (it would read as part of the next start code).
    if out.last() == Some(&0) {
        out.push(0x80);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else { return };
    let codec = if control & 1 == 0 { VideoCodec::H264 } else { VideoCodec::H265 };
    let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
    while rest.len() >= 3 && frames.len() < 64 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])) * 4;
        let key = frames.is_empty() || rest[2] & 1 == 1;
        rest = &rest[3..];
        let body = &rest[..len.min(rest.len())];
        rest = &rest[body.len()..];
        let mut es = vec![0, 0, 0, 1];
        match (codec, key) {
            (VideoCodec::H264, true) => es.push(0x65),
            (VideoCodec::H264, false) => es.push(0x41),
            (VideoCodec::H265, true) => es.extend_from_slice(&[19 << 1, 1]),
            (VideoCodec::H265, false) => es.extend_from_slice(&[1 << 1, 1]),
        }
        // first_mb_in_slice = 0 (H.264) / first_slice_segment_in_pic_flag (H.265): the demuxer
        // finds frame starts by them, as in every real stream.
        es.push(0x80);
        escaped(&mut es, body);
        frames.push((3600 * frames.len() as u64 + u64::from(control >> 1), es));
    }
    if frames.is_empty() {
        return;
    }
    let mut ps = Vec::new();
    for (i, (pts, es)) in frames.iter().enumerate() {
        let key = i == 0 || es[4] == 0x65 || es[4] == 19 << 1;
        mux_frame(codec, *pts, key, es, &mut ps);
    }
    let mut d = PsDemuxer::new();
    let piece = usize::from(control >> 2) + 1;
    let mut got = Vec::new();
    for chunk in ps.chunks(piece) {
        d.push(chunk);
        got.extend(std::iter::from_fn(|| d.poll()));
    }
    d.finish();
    got.extend(std::iter::from_fn(|| d.poll()));
    assert_eq!(got.len(), frames.len(), "frames lost or invented");
    for ((pts, es), f) in frames.iter().zip(&got) {
        assert_eq!(f.codec, codec);
        assert_eq!(f.pts, Some(*pts));
        assert_eq!(&f.data[..], &es[..]);
    }
});
