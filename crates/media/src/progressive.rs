//! Progressive (non-fragmented) MP4 assembled from samples that already sit in other files.
//!
//! [`build`] computes `ftyp + moov + mdat header` for a list of samples and says which byte
//! ranges of which source files make up the `mdat` payload, in order. Nothing is copied: a
//! server streams the header and then the ranges (honouring HTTP Range requests by mapping
//! them onto that list), and an exporter copies the ranges file to file. `moov` comes first so
//! players can start before the end arrives.

use std::sync::Arc;

use bytes::Bytes;
use mp4_atom::Encode;

use crate::fmp4::{Mp4Error, TIMESCALE, sample_entry, video_trak};
use crate::{StreamParams, VideoCodec};

/// One sample: its presentation duration, its size, whether it is a key frame, and where its
/// bytes are (`source` indexes the caller's list of files).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SampleRef {
    /// Duration in 90 kHz ticks (already scaled for fast playback).
    pub duration: u32,
    /// Size in bytes.
    pub size: u32,
    /// Sync sample.
    pub key: bool,
    /// Which source file.
    pub source: u32,
    /// Offset of the sample's bytes in that file.
    pub offset: u64,
}

/// Consecutive samples decoded with the same parameters.
#[derive(Clone, Debug)]
pub struct Run {
    /// Their codec parameters.
    pub params: Arc<StreamParams>,
    /// The samples, in decode order.
    pub samples: Vec<SampleRef>,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct MovieSpec {
    /// The samples, in order. Every run must use the same codec (a track cannot switch codec).
    pub runs: Vec<Run>,
    /// Ticks at the start of the first sample to hide with an edit list, so that playback
    /// starts at the requested time although decoding starts at the key frame before it.
    pub skip: u64,
    /// Presentation duration in ticks after `skip` (the edit's duration): ends the movie at the
    /// requested end even if the last sample lasts longer.
    pub duration: u64,
}

/// A byte range of a source file that is part of the payload.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Which source file.
    pub source: u32,
    /// Offset in it.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// The assembled file: `head` (ftyp, moov, mdat header) followed by `parts`.
#[derive(Clone, Debug)]
pub struct VirtualMp4 {
    /// Everything before the first payload byte.
    pub head: Bytes,
    /// The payload, as ranges of source files.
    pub parts: Vec<Part>,
    /// Total length: head plus all parts.
    pub len: u64,
    /// Number of samples.
    pub samples: u64,
}

/// A piece of a byte range of a [`VirtualMp4`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes of the head.
    Head(Bytes),
    /// A range of a source file.
    File(Part),
}

impl VirtualMp4 {
    /// The pieces covering bytes `[start, end)` of the file, in order.
    pub fn pieces(&self, start: u64, end: u64) -> Vec<Piece> {
        let end = end.min(self.len);
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let head_len = self.head.len() as u64;
        if start < head_len {
            out.push(Piece::Head(self.head.slice(start as usize..end.min(head_len) as usize)));
        }
        let mut pos = head_len;
        for p in &self.parts {
            let (a, b) = (pos, pos + p.len);
            pos = b;
            if b <= start {
                continue;
            }
            if a >= end {
                break;
            }
            let from = start.max(a) - a;
            let to = end.min(b) - a;
            out.push(Piece::File(Part {
                source: p.source,
                offset: p.offset + from,
                len: to - from,
            }));
        }
        out
    }
}

/// Builds the movie. Fails if there are no samples, if runs mix codecs, or if a picture size
/// does not fit a sample entry.
pub fn build(spec: &MovieSpec) -> Result<VirtualMp4, Mp4Error> {
    let first = spec
        .runs
        .iter()
        .find(|r| !r.samples.is_empty())
        .ok_or_else(|| Mp4Error::Invalid("no samples".into()))?;
    let codec: VideoCodec = first.params.codec();
    if spec.runs.iter().any(|r| r.params.codec() != codec) {
        return Err(Mp4Error::Invalid("one track cannot switch codec".into()));
    }

    // Sample entries: one per distinct parameter set, in order of first use.
    let mut entries: Vec<Arc<StreamParams>> = Vec::new();
    let mut run_entry = Vec::with_capacity(spec.runs.len());
    for r in &spec.runs {
        let i = match entries.iter().position(|p| **p == *r.params) {
            Some(i) => i,
            None => {
                entries.push(r.params.clone());
                entries.len() - 1
            }
        };
        run_entry.push(i as u32 + 1);
    }

    let total_samples: usize = spec.runs.iter().map(|r| r.samples.len()).sum();
    let mut stts: Vec<mp4_atom::SttsEntry> = Vec::new();
    let mut stss = Vec::new();
    let mut sizes = Vec::with_capacity(total_samples);
    let mut parts: Vec<Part> = Vec::new();
    let mut chunk_samples: Vec<(u32, u32)> = Vec::new(); // (samples, description index)
    let mut n: u32 = 0;
    let mut total_ticks: u64 = 0;
    for (run, &desc) in spec.runs.iter().zip(&run_entry) {
        let mut new_chunk = true;
        for s in &run.samples {
            n += 1;
            total_ticks += u64::from(s.duration);
            match stts.last_mut() {
                Some(e) if e.sample_delta == s.duration => e.sample_count += 1,
                _ => stts.push(mp4_atom::SttsEntry {
                    sample_count: 1,
                    sample_delta: s.duration,
                }),
            }
            if s.key {
                stss.push(n);
            }
            sizes.push(s.size);
            // A chunk is a run of samples lying back to back in one source file.
            let contiguous = !new_chunk
                && parts
                    .last()
                    .is_some_and(|p| p.source == s.source && p.offset + p.len == s.offset);
            if contiguous {
                if let Some(p) = parts.last_mut() {
                    p.len += u64::from(s.size);
                }
                if let Some(c) = chunk_samples.last_mut() {
                    c.0 += 1;
                }
            } else {
                parts.push(Part {
                    source: s.source,
                    offset: s.offset,
                    len: u64::from(s.size),
                });
                chunk_samples.push((1, desc));
            }
            new_chunk = false;
        }
    }
    let mut stsc: Vec<mp4_atom::StscEntry> = Vec::new();
    for (i, &(samples, desc)) in chunk_samples.iter().enumerate() {
        if stsc
            .last()
            .is_none_or(|e| e.samples_per_chunk != samples || e.sample_description_index != desc)
        {
            stsc.push(mp4_atom::StscEntry {
                first_chunk: i as u32 + 1,
                samples_per_chunk: samples,
                sample_description_index: desc,
            });
        }
    }
    let payload: u64 = parts.iter().map(|p| p.len).sum();
    // stco holds 32-bit offsets; past 4 GiB the 64-bit co64 is needed.
    let wide = payload > u64::from(u32::MAX) - (16 << 20);
    let mdat_header_len: u64 = if payload + 8 > u64::from(u32::MAX) { 16 } else { 8 };
    let duration = spec.duration.min(total_ticks.saturating_sub(spec.skip));

    // Called once: the tables move into the boxes rather than being copied.
    let moov_capacity = 4096 + 4 * (sizes.len() + stss.len() + parts.len()) + 12 * (stts.len() + stsc.len());
    let moov_with = |offsets: &[u64]| -> Result<Vec<u8>, Mp4Error> {
        let stbl = mp4_atom::Stbl {
            stsd: mp4_atom::Stsd {
                codecs: entries.iter().map(|p| sample_entry(p)).collect::<Result<_, _>>()?,
            },
            stts: mp4_atom::Stts { entries: stts },
            stss: (stss.len() < n as usize).then_some(mp4_atom::Stss { entries: stss }),
            stsc: mp4_atom::Stsc { entries: stsc },
            stsz: mp4_atom::Stsz {
                samples: mp4_atom::StszSamples::Different { sizes },
            },
            stco: (!wide).then(|| mp4_atom::Stco {
                entries: offsets.iter().map(|&o| o as u32).collect(),
            }),
            co64: wide.then(|| mp4_atom::Co64 {
                entries: offsets.to_vec(),
            }),
            ..Default::default()
        };
        let edts = mp4_atom::Edts {
            elst: Some(mp4_atom::Elst {
                entries: vec![mp4_atom::ElstEntry {
                    segment_duration: duration,
                    media_time: Some(spec.skip),
                    media_rate: 1.into(),
                }],
            }),
        };
        let moov = mp4_atom::Moov {
            mvhd: mp4_atom::Mvhd {
                timescale: TIMESCALE,
                duration,
                next_track_id: crate::fmp4::TRACK_ID + 1,
                ..Default::default()
            },
            trak: vec![video_trak(&entries[0], total_ticks, stbl, Some(edts))?],
            ..Default::default()
        };
        let mut out = Vec::with_capacity(moov_capacity);
        moov.encode(&mut out).map_err(|source| Mp4Error::Atom {
            context: "moov",
            source,
        })?;
        Ok(out)
    };

    let mut head = Vec::new();
    mp4_atom::Ftyp {
        major_brand: b"isom".into(),
        minor_version: 512,
        compatible_brands: vec![b"isom".into(), b"iso2".into(), b"mp41".into()],
    }
    .encode(&mut head)
    .map_err(|source| Mp4Error::Atom {
        context: "ftyp",
        source,
    })?;
    // Offsets depend on the moov's size, which does not depend on the offsets' values.
    // Encode once with zero offsets, then write the real ones into the chunk-offset box.
    let mut moov = moov_with(&vec![0; parts.len()])?;
    let payload_start = (head.len() + moov.len()) as u64 + mdat_header_len;
    let kind: &[u8; 4] = if wide { b"co64" } else { b"stco" };
    let (table, _) = find_box(&moov, &[b"moov", b"trak", b"mdia", b"minf", b"stbl", kind])
        .ok_or_else(|| Mp4Error::Invalid("encoded moov has no chunk offset box".into()))?;
    let mut at = table + 16; // box header, version and flags, entry count
    let mut pos = payload_start;
    for p in &parts {
        if wide {
            moov[at..at + 8].copy_from_slice(&pos.to_be_bytes());
            at += 8;
        } else {
            moov[at..at + 4].copy_from_slice(&(pos as u32).to_be_bytes());
            at += 4;
        }
        pos += p.len;
    }
    head.extend_from_slice(&moov);
    if mdat_header_len == 16 {
        head.extend_from_slice(&1u32.to_be_bytes());
        head.extend_from_slice(b"mdat");
        head.extend_from_slice(&(payload + 16).to_be_bytes());
    } else {
        head.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
        head.extend_from_slice(b"mdat");
    }
    let head = Bytes::from(head);
    Ok(VirtualMp4 {
        len: head.len() as u64 + payload,
        head,
        parts,
        samples: u64::from(n),
    })
}

/// Finds the box at `path` (each a child of the previous) in `buf`, which starts with the first
/// path element; returns (offset, size). Only plain containers may be on the path.
fn find_box(buf: &[u8], path: &[&[u8; 4]]) -> Option<(usize, usize)> {
    let (mut start, mut end) = (0usize, buf.len());
    for (depth, want) in path.iter().enumerate() {
        let mut pos = start;
        let mut found = None;
        while pos + 8 <= end {
            let size = u32::from_be_bytes(buf[pos..pos + 4].try_into().ok()?) as usize;
            if size < 8 || pos + size > end {
                return None;
            }
            if &buf[pos + 4..pos + 8] == *want {
                found = Some((pos, size));
                break;
            }
            pos += size;
            if depth == 0 {
                break;
            }
        }
        let (p, size) = found?;
        if depth + 1 == path.len() {
            return Some((p, size));
        }
        (start, end) = (p + 8, p + size);
    }
    None
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::annexb::nal_units;

    fn params() -> Arc<StreamParams> {
        let s: &[u8] = include_bytes!("../../../tests/fixtures/h264_240p.h264");
        let sps = nal_units(s).find(|n| n[0] & 0x1f == 7).unwrap();
        let pps = nal_units(s).find(|n| n[0] & 0x1f == 8).unwrap();
        Arc::new(StreamParams::h264(sps, pps).unwrap())
    }

    fn samples(n: u32, source: u32, base: u64) -> Vec<SampleRef> {
        let mut off = base;
        (0..n)
            .map(|i| {
                let s = SampleRef {
                    duration: 3600,
                    size: 100 + i,
                    key: i % 25 == 0,
                    source,
                    offset: off,
                };
                off += u64::from(s.size);
                s
            })
            .collect()
    }

    #[test]
    fn layout_and_ranges() {
        let p = params();
        let mut a = samples(30, 0, 1000);
        // A hole between samples 10 and 11 (another fragment's header) starts a new chunk.
        for s in &mut a[11..] {
            s.offset += 200;
        }
        let spec = MovieSpec {
            runs: vec![
                Run {
                    params: p.clone(),
                    samples: a,
                },
                Run {
                    params: p,
                    samples: samples(20, 1, 50),
                },
            ],
            skip: 7200,
            duration: 49 * 3600 - 7200,
        };
        let m = build(&spec).unwrap();
        assert_eq!(m.samples, 50);
        assert_eq!(m.parts.len(), 3);
        assert_eq!(
            m.parts[0],
            Part {
                source: 0,
                offset: 1000,
                len: (100..111).sum()
            }
        );
        assert_eq!(m.parts[2].source, 1);
        let payload: u64 = m.parts.iter().map(|p| p.len).sum();
        assert_eq!(m.len, m.head.len() as u64 + payload);
        // Any split of the file into ranges covers exactly the same bytes.
        let whole: u64 = m
            .pieces(0, m.len)
            .iter()
            .map(|p| match p {
                Piece::Head(b) => b.len() as u64,
                Piece::File(f) => f.len,
            })
            .sum();
        assert_eq!(whole, m.len);
        let mid = m.head.len() as u64 + 500;
        let pieces = m.pieces(mid - 10, mid + 10);
        let total: u64 = pieces
            .iter()
            .map(|p| match p {
                Piece::Head(b) => b.len() as u64,
                Piece::File(f) => f.len,
            })
            .sum();
        assert_eq!(total, 20);
        assert!(m.pieces(m.len, m.len + 5).is_empty());
        // The chunk offsets point at each part's place in the file.
        let ftyp_len = u32::from_be_bytes(m.head[0..4].try_into().unwrap()) as usize;
        let moov = crate::fmp4::decode_moov(&m.head[ftyp_len..]).unwrap();
        let stco = moov.trak[0].mdia.minf.stbl.stco.as_ref().unwrap();
        let mut at = m.head.len() as u64;
        for (i, p) in m.parts.iter().enumerate() {
            assert_eq!(u64::from(stco.entries[i]), at);
            at += p.len;
        }
    }

    #[test]
    fn refuses_empty_and_mixed_codecs() {
        assert!(
            build(&MovieSpec {
                runs: vec![],
                skip: 0,
                duration: 0
            })
            .is_err()
        );
    }
}
