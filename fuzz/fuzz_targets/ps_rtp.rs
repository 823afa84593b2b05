//! GB/T 28181 media: RTP carrying a program stream, over TCP (RFC 4571 or `$`-interleaved
//! framing, fed in pieces of 1-64 bytes) and as UDP datagrams (the same bytes cut in fixed
//! sizes), through the receiver (SSRC, reorder window, losses), the PS demuxer and the
//! elementary-stream framer: frames or nothing, never a panic, never a frame over the limit.
//!
//! Input: a byte for the TCP piece size, a byte for the datagram size (12 + 8 × n), the bytes.
#![no_main]
use ingest::ps_rtp::{EsFramer, PsRtpReceiver, TcpDeframer};
use libfuzzer_sys::fuzz_target;
use media::ps::MAX_FRAME;

fn frames(rx: &mut PsRtpReceiver, es: &mut EsFramer) {
    while let Some(f) = rx.poll() {
        assert!(f.data.len() <= MAX_FRAME);
        if let Ok(Some(s)) = es.frame(&f) {
            assert!(!s.data.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [piece, dgram, rest @ ..] = data else { return };
    let piece = usize::from(piece % 64) + 1;
    let dgram = 12 + usize::from(*dgram) * 8;

    let mut deframer = TcpDeframer::default();
    let mut rx = PsRtpReceiver::new();
    let mut es = EsFramer::new();
    for chunk in rest.chunks(piece) {
        deframer.push(chunk);
        while let Some(packet) = deframer.next_packet() {
            assert!(packet.len() >= 12 && packet.len() <= usize::from(u16::MAX));
            rx.push_packet(&packet);
            frames(&mut rx, &mut es);
        }
    }
    assert!(deframer.resync_bytes <= rest.len() as u64);
    rx.finish();
    frames(&mut rx, &mut es);

    let mut rx = PsRtpReceiver::new();
    let mut es = EsFramer::new();
    for datagram in rest.chunks(dgram) {
        rx.push_packet(datagram);
        frames(&mut rx, &mut es);
    }
    rx.finish();
    frames(&mut rx, &mut es);
    let s = rx.stats();
    assert_eq!(
        s.packets + s.malformed + s.foreign_ssrc,
        rest.len().div_ceil(dgram) as u64
    );
});
