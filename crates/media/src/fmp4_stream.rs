//! Reading a fragmented MP4 stream as its bytes arrive, back into [`Frame`]s: how a node takes in
//! the live video of another node (`live.mp4?relay=1`).
//!
//! Sans-IO: [`Fmp4StreamReader::push`] takes bytes, [`Fmp4StreamReader::poll`] gives frames. It
//! accepts what [`crate::fmp4`] writes: `ftyp`, a `moov` (again whenever the codec parameters
//! change), then per fragment an optional `prft` (the frame's wall time at the sender), a `moof`
//! of one track and run, and its `mdat`. Every box is bounded by `max_box`, so a hostile or broken
//! peer can make it fail with an error, never grow memory without limit or panic.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use crate::fmp4::{FragmentSamples, ProducerTime, decode_moof, decode_moov, decode_prft, params_from_moov};
use crate::{Frame, StreamId, StreamParams, WallTime, media_to_micros};

/// Why a stream cannot be read further. The stream must be dropped: its position is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamReadError {
    /// A box larger than the reader accepts.
    #[error("a {kind} box of {size} bytes is larger than the {max} bytes accepted")]
    TooLarge {
        /// Its four-character type.
        kind: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A box that cannot be what it claims, or one out of order.
    #[error("malformed stream: {0}")]
    Malformed(String),
}

/// Reads one fragmented MP4 stream of `stream`.
#[derive(Debug)]
pub struct Fmp4StreamReader {
    stream: StreamId,
    max_box: usize,
    buf: BytesMut,
    params: Option<Arc<StreamParams>>,
    /// The next frame starts a new run (a new `moov`, or the first frame).
    discontinuity: bool,
    prft: Option<ProducerTime>,
    moof: Option<(FragmentSamples, u64)>,
    frames: VecDeque<Frame>,
    /// Media time the next frame would have if the sender's clock runs on (to spot jumps).
    expected: Option<i64>,
}

fn kind_text(kind: &[u8]) -> String {
    kind.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

impl Fmp4StreamReader {
    /// A reader whose frames belong to `stream`; boxes above `max_box` bytes are refused.
    pub fn new(stream: StreamId, max_box: usize) -> Fmp4StreamReader {
        Fmp4StreamReader {
            stream,
            max_box,
            buf: BytesMut::new(),
            params: None,
            discontinuity: true,
            prft: None,
            moof: None,
            frames: VecDeque::new(),
            expected: None,
        }
    }

    /// The codec parameters of the current run, once a `moov` was read.
    pub fn params(&self) -> Option<&Arc<StreamParams>> {
        self.params.as_ref()
    }

    /// Takes in `data`; `now` is the wall time of frames whose fragment carried no `prft`.
    pub fn push(&mut self, data: &[u8], now: WallTime) -> Result<(), StreamReadError> {
        self.buf.extend_from_slice(data);
        while let Some((kind, header, size)) = self.next_box()? {
            if self.buf.len() < size {
                break;
            }
            let mut boxed = self.buf.split_to(size).freeze();
            match &kind {
                b"moov" => {
                    let moov = decode_moov(&boxed).map_err(|e| StreamReadError::Malformed(e.to_string()))?;
                    let params = params_from_moov(&moov).map_err(|e| StreamReadError::Malformed(e.to_string()))?;
                    if self.params.as_deref() != Some(&params) {
                        self.params = Some(Arc::new(params));
                    }
                    self.discontinuity = true;
                }
                b"prft" => {
                    self.prft = Some(decode_prft(&boxed).map_err(|e| StreamReadError::Malformed(e.to_string()))?);
                }
                b"moof" => {
                    if self.params.is_none() {
                        return Err(StreamReadError::Malformed("a moof before any moov".into()));
                    }
                    let f = decode_moof(&boxed).map_err(|e| StreamReadError::Malformed(e.to_string()))?;
                    self.moof = Some((f, size as u64));
                }
                b"mdat" => {
                    let (f, moof_len) = self
                        .moof
                        .take()
                        .ok_or_else(|| StreamReadError::Malformed("an mdat without its moof".into()))?;
                    boxed.advance(header);
                    self.split_mdat(f, moof_len, header as u64, boxed, now)?;
                }
                // ftyp, styp, sidx, free and the like carry nothing a relay needs.
                _ => {}
            }
        }
        Ok(())
    }

    /// The next frame read, in order.
    pub fn poll(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// The type, header length and total size of the box at the front of the buffer, once its
    /// header is complete.
    fn next_box(&self) -> Result<Option<([u8; 4], usize, usize)>, StreamReadError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let size32 = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let kind = [self.buf[4], self.buf[5], self.buf[6], self.buf[7]];
        let (header, size) = match size32 {
            0 => {
                return Err(StreamReadError::Malformed(format!(
                    "a {} box running to the end of a live stream",
                    kind_text(&kind)
                )));
            }
            1 => {
                if self.buf.len() < 16 {
                    return Ok(None);
                }
                let mut large = [0u8; 8];
                large.copy_from_slice(&self.buf[8..16]);
                (16usize, u64::from_be_bytes(large))
            }
            n => (8usize, u64::from(n)),
        };
        if size < header as u64 {
            return Err(StreamReadError::Malformed(format!(
                "a {} box of {size} bytes, shorter than its header",
                kind_text(&kind)
            )));
        }
        if size > self.max_box as u64 {
            return Err(StreamReadError::TooLarge {
                kind: kind_text(&kind),
                size,
                max: self.max_box,
            });
        }
        Ok(Some((kind, header, size as usize)))
    }

    fn split_mdat(
        &mut self,
        f: FragmentSamples,
        moof_len: u64,
        mdat_header: u64,
        payload: Bytes,
        now: WallTime,
    ) -> Result<(), StreamReadError> {
        // With default-base-is-moof the offset counts from the moof's first byte.
        let skip = f
            .data_offset
            .checked_sub(moof_len + mdat_header)
            .ok_or_else(|| StreamReadError::Malformed("a data offset before the mdat's payload".into()))?;
        let needed = skip.saturating_add(f.payload_len());
        if needed > payload.len() as u64 {
            return Err(StreamReadError::Malformed(format!(
                "the moof describes {needed} bytes, its mdat holds {}",
                payload.len()
            )));
        }
        let params = self
            .params
            .clone()
            .ok_or_else(|| StreamReadError::Malformed("a fragment before any moov".into()))?;
        let base = i64::try_from(f.base_media_time)
            .map_err(|_| StreamReadError::Malformed("a decode time out of range".into()))?;
        let prft = self.prft.take();
        let mut pos = skip as usize;
        let mut media = base;
        for s in &f.samples {
            let wall = match prft {
                Some(p) => p
                    .wall
                    .add_micros(media_to_micros(media - i64::try_from(p.media_time).unwrap_or(media))),
                None => now,
            };
            let discontinuity = std::mem::take(&mut self.discontinuity) || self.expected.is_some_and(|e| media < e);
            self.frames.push_back(Frame {
                stream: self.stream.clone(),
                media_time: media,
                wall_time: wall,
                key: s.key,
                discontinuity,
                params: params.clone(),
                data: payload.slice(pos..pos + s.size as usize),
            });
            pos += s.size as usize;
            media += i64::from(s.duration.max(1));
            self.expected = Some(media);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::{Sample, write_fragment_header, write_ftyp, write_moov};

    fn params() -> StreamParams {
        let s: &[u8] = include_bytes!("../../../tests/fixtures/h264_240p.h264");
        let sps = crate::annexb::nal_units(s).find(|n| n[0] & 0x1f == 7).unwrap();
        let pps = crate::annexb::nal_units(s).find(|n| n[0] & 0x1f == 8).unwrap();
        StreamParams::h264(sps, pps).unwrap()
    }

    /// A stream of `n` frames of 40 ms, each its own fragment with a prft, the first a key frame.
    fn stream(n: u32, with_prft: bool) -> Vec<u8> {
        let mut out = Vec::new();
        write_ftyp(&mut out).unwrap();
        write_moov(&params(), &mut out).unwrap();
        for i in 0..n {
            let payload = vec![i as u8; 100 + i as usize];
            let prft = with_prft.then(|| ProducerTime {
                wall: WallTime::from_micros(1_000_000_000 + i64::from(i) * 40_000),
                media_time: u64::from(i) * 3600,
            });
            write_fragment_header(
                &mut out,
                i + 1,
                u64::from(i) * 3600,
                &[Sample {
                    duration: 3600,
                    size: payload.len() as u32,
                    key: i % 25 == 0,
                }],
                prft,
            )
            .unwrap();
            out.extend_from_slice(&payload);
        }
        out
    }

    fn read_all(r: &mut Fmp4StreamReader) -> Vec<Frame> {
        std::iter::from_fn(|| r.poll()).collect()
    }

    #[test]
    fn frames_come_back_whole_whatever_the_chunking() {
        let bytes = stream(30, true);
        for chunk in [1, 7, 100, 4096, bytes.len()] {
            let mut r = Fmp4StreamReader::new(StreamId::main("c"), 1 << 20);
            let mut frames = Vec::new();
            for c in bytes.chunks(chunk) {
                r.push(c, WallTime::from_micros(5)).unwrap();
                frames.extend(read_all(&mut r));
            }
            assert_eq!(frames.len(), 30, "chunk {chunk}");
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(f.media_time, i as i64 * 3600);
                assert_eq!(f.wall_time, WallTime::from_micros(1_000_000_000 + i as i64 * 40_000));
                assert_eq!(f.data.len(), 100 + i);
                assert!(f.data.iter().all(|&b| b == i as u8));
                assert_eq!(f.key, i % 25 == 0);
                assert_eq!(f.discontinuity, i == 0);
            }
        }
    }

    #[test]
    fn without_prft_frames_take_the_arrival_time_and_a_new_moov_starts_a_run() {
        let mut bytes = stream(3, false);
        let mut second = Vec::new();
        write_moov(&params(), &mut second).unwrap();
        write_fragment_header(
            &mut second,
            9,
            900_000,
            &[Sample {
                duration: 3600,
                size: 4,
                key: true,
            }],
            None,
        )
        .unwrap();
        second.extend_from_slice(&[1, 2, 3, 4]);
        bytes.extend_from_slice(&second);
        let mut r = Fmp4StreamReader::new(StreamId::main("c"), 1 << 20);
        r.push(&bytes, WallTime::from_micros(77)).unwrap();
        let f = read_all(&mut r);
        assert_eq!(f.len(), 4);
        assert!(f.iter().all(|f| f.wall_time == WallTime::from_micros(77)));
        assert_eq!(
            f.iter().map(|f| f.discontinuity).collect::<Vec<_>>(),
            [true, false, false, true]
        );
    }

    #[test]
    fn hostile_streams_are_errors_never_panics() {
        let good = stream(5, true);
        // Every truncation: no error, no frame beyond what is complete.
        for cut in 0..good.len() {
            let mut r = Fmp4StreamReader::new(StreamId::main("c"), 1 << 20);
            r.push(&good[..cut], WallTime::from_micros(0)).unwrap();
            assert!(read_all(&mut r).len() <= 5);
        }
        // Every single-byte corruption: an error or frames, never a panic.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xa5;
            let mut r = Fmp4StreamReader::new(StreamId::main("c"), 1 << 16);
            let _ = r.push(&bad, WallTime::from_micros(0));
            let _ = read_all(&mut r);
        }
        let huge = [&[0x7f, 0xff, 0xff, 0xff][..], b"mdat"].concat();
        let mut r = Fmp4StreamReader::new(StreamId::main("c"), 1 << 20);
        assert!(matches!(
            r.push(&huge, WallTime::from_micros(0)),
            Err(StreamReadError::TooLarge { .. })
        ));
        let mut r = Fmp4StreamReader::new(StreamId::main("c"), 1 << 20);
        assert!(
            r.push(&[0, 0, 0, 0, b'm', b'o', b'o', b'f'], WallTime::from_micros(0))
                .is_err()
        );
        let mut r = Fmp4StreamReader::new(StreamId::main("c"), 1 << 20);
        assert!(
            r.push(&[0, 0, 0, 3, b'f', b'r', b'e', b'e'], WallTime::from_micros(0))
                .is_err()
        );
        // A fragment before any moov.
        let mut frag = Vec::new();
        write_fragment_header(
            &mut frag,
            1,
            0,
            &[Sample {
                duration: 1,
                size: 1,
                key: true,
            }],
            None,
        )
        .unwrap();
        frag.push(0);
        let mut r = Fmp4StreamReader::new(StreamId::main("c"), 1 << 20);
        assert!(r.push(&frag, WallTime::from_micros(0)).is_err());
    }
}
