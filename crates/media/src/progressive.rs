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
    // One pass over the samples with the open stts entry and the open chunk in locals, pushed
    // when they end: an hour is ~90,000 samples, and this loop was a seventh of a request.
    let mut stts: Vec<mp4_atom::SttsEntry> = Vec::new();
    let mut stss = Vec::new();
    // The sizes as `stsz` holds them (big-endian u32s), spliced into the encoded box below.
    let mut stsz_entries: Vec<u8> = Vec::with_capacity(4 * total_samples);
    let mut parts: Vec<Part> = Vec::new();
    let mut chunk_samples: Vec<(u32, u32)> = Vec::new(); // (samples, description index)
    let mut n: u32 = 0;
    let mut total_ticks: u64 = 0;
    let mut delta: Option<(u32, u32)> = None; // (sample_delta, sample_count)
    for (run, &desc) in spec.runs.iter().zip(&run_entry) {
        stsz_entries.extend(run.samples.iter().flat_map(|s| s.size.to_be_bytes()));
        // A chunk is a run of samples lying back to back in one source file, within a run.
        let mut chunk: Option<(Part, u32)> = None;
        for s in &run.samples {
            n += 1;
            total_ticks += u64::from(s.duration);
            delta = match delta {
                Some((d, c)) if d == s.duration => Some((d, c + 1)),
                Some((d, c)) => {
                    stts.push(mp4_atom::SttsEntry {
                        sample_count: c,
                        sample_delta: d,
                    });
                    Some((s.duration, 1))
                }
                None => Some((s.duration, 1)),
            };
            if s.key {
                stss.push(n);
            }
            chunk = match chunk {
                Some((mut p, c)) if p.source == s.source && p.offset + p.len == s.offset => {
                    p.len += u64::from(s.size);
                    Some((p, c + 1))
                }
                open => {
                    if let Some((p, c)) = open {
                        parts.push(p);
                        chunk_samples.push((c, desc));
                    }
                    let p = Part {
                        source: s.source,
                        offset: s.offset,
                        len: u64::from(s.size),
                    };
                    Some((p, 1))
                }
            };
        }
        if let Some((p, c)) = chunk {
            parts.push(p);
            chunk_samples.push((c, desc));
        }
    }
    if let Some((d, c)) = delta {
        stts.push(mp4_atom::SttsEntry {
            sample_count: c,
            sample_delta: d,
        });
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
    let moov_capacity = 4096 + stsz_entries.len() + 4 * (stss.len() + parts.len()) + 12 * (stts.len() + stsc.len());
    let moov_with = |offsets: &[u64]| -> Result<Vec<u8>, Mp4Error> {
        let stbl = mp4_atom::Stbl {
            stsd: mp4_atom::Stsd {
                codecs: entries.iter().map(|p| sample_entry(p)).collect::<Result<_, _>>()?,
            },
            stts: mp4_atom::Stts { entries: stts },
            stss: (stss.len() < n as usize).then_some(mp4_atom::Stss { entries: stss }),
            stsc: mp4_atom::Stsc { entries: stsc },
            // Written below, spliced in whole: mp4-atom encodes a size at a time, and an hour's
            // ~90,000 of them were a tenth of a request.
            stsz: mp4_atom::Stsz {
                samples: mp4_atom::StszSamples::Different { sizes: Vec::new() },
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
    let stsz = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsz"];
    let (at, _) = grow_box(&mut moov, &stsz, &stsz_entries)
        .ok_or_else(|| Mp4Error::Invalid("encoded moov has no sample size box".into()))?;
    // Its sample count, after the header, version and flags, and the common sample size (0).
    moov[at + 16..at + 20].copy_from_slice(&n.to_be_bytes());
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

/// Appends `bytes` to the body of the box at `path` (as [`find_box`] finds it), growing it and
/// every box it sits in; returns the grown box's offset and new size. Only boxes with 32-bit
/// sizes can grow (a `moov` is far from 4 GiB).
fn grow_box(buf: &mut Vec<u8>, path: &[&[u8; 4]], bytes: &[u8]) -> Option<(usize, usize)> {
    let boxes = box_path(buf, path)?;
    let grow = u32::try_from(bytes.len()).ok()?;
    let &(at, size) = boxes.last()?;
    for &(p, size) in &boxes {
        let grown = u32::try_from(size).ok()?.checked_add(grow)?;
        buf[p..p + 4].copy_from_slice(&grown.to_be_bytes());
    }
    // Vec::splice inserts a byte at a time: the tail after the box (a few kB) moves instead.
    let tail = buf.split_off(at + size);
    buf.extend_from_slice(bytes);
    buf.extend_from_slice(&tail);
    Some((at, size + bytes.len()))
}

/// Finds the box at `path` (each a child of the previous) in `buf`, which starts with the first
/// path element; returns (offset, size). Only plain containers may be on the path.
fn find_box(buf: &[u8], path: &[&[u8; 4]]) -> Option<(usize, usize)> {
    box_path(buf, path)?.last().copied()
}

/// The (offset, size) of each box on `path`, outermost first (see [`find_box`]).
fn box_path(buf: &[u8], path: &[&[u8; 4]]) -> Option<Vec<(usize, usize)>> {
    let mut out = Vec::with_capacity(path.len());
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
        out.push((p, size));
        (start, end) = (p + 8, p + size);
    }
    Some(out)
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
        // Every sample's size, duration and key flag, in order, as a parser reads them back.
        let stbl = &moov.trak[0].mdia.minf.stbl;
        let want: Vec<u32> = spec
            .runs
            .iter()
            .flat_map(|r| r.samples.iter().map(|s| s.size))
            .collect();
        match &stbl.stsz.samples {
            mp4_atom::StszSamples::Different { sizes } => assert_eq!(sizes, &want),
            other => panic!("{other:?}"),
        }
        let ticks: u32 = stbl.stts.entries.iter().map(|e| e.sample_count * e.sample_delta).sum();
        assert_eq!(ticks, 50 * 3600);
        let keys: Vec<u32> = spec
            .runs
            .iter()
            .flat_map(|r| r.samples.iter())
            .enumerate()
            .filter(|(_, s)| s.key)
            .map(|(i, _)| i as u32 + 1)
            .collect();
        assert_eq!(stbl.stss.as_ref().unwrap().entries, keys);
    }

    /// Changing durations give one stts entry per run of equal ones.
    #[test]
    fn durations_are_run_length_coded() {
        let mut a = samples(10, 0, 0);
        for (i, s) in a.iter_mut().enumerate() {
            s.duration = [3600, 3600, 3000, 3000, 3000, 3600, 1, 1, 3600, 3600][i];
        }
        let spec = MovieSpec {
            runs: vec![Run {
                params: params(),
                samples: a,
            }],
            skip: 0,
            duration: 1,
        };
        let m = build(&spec).unwrap();
        let ftyp_len = u32::from_be_bytes(m.head[0..4].try_into().unwrap()) as usize;
        let moov = crate::fmp4::decode_moov(&m.head[ftyp_len..]).unwrap();
        let got: Vec<(u32, u32)> = moov.trak[0]
            .mdia
            .minf
            .stbl
            .stts
            .entries
            .iter()
            .map(|e| (e.sample_count, e.sample_delta))
            .collect();
        assert_eq!(got, [(2, 3600), (3, 3000), (1, 3600), (2, 1), (2, 3600)]);
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
