//! The sample table a closed segment file carries after its last fragment: every fragment's
//! place, decode time and `prft` wall time, and every sample's duration, size and key flag —
//! all that playback needs to build a `moov` for any sub-range, read with one `pread` instead
//! of one read per fragment (~120 for a 60 s segment).
//!
//! It is a top-level `uuid` box (players skip boxes they do not know), written by the recorder
//! when it closes a segment, before the segment's closed index record is made durable (so an
//! index that says "closed" describes a file with its table), and by recovery for a segment a
//! crash left open. A segment without one (a crash, a full disk at close, a file from before
//! this format) is read by walking its fragments, as before.
//!
//! ```text
//! size:u32 "uuid" TABLE_UUID
//! version:u8 = 1
//! varint first_offset          file offset of the first fragment (the init part's length)
//! varint first_media           its decode time (the header's timeline start)
//! varint fragments
//!   per fragment: varint header_len   its prft + moof + mdat header (first sample's offset − its offset)
//!                 varint samples
//!                 varint wall         0: no prft; else zigzag(prft wall − start − media since the first fragment, µs) + 1
//! per sample, in order: zigzag(duration − previous duration), varint size << 1 | key
//! crc32 (IEEE) of everything from the version byte, big-endian
//! ```
//!
//! Each fragment starts where the one before ended (its header plus its samples' sizes) and at
//! the decode time it ended: the table stores lengths, and offsets follow. Hand-written: no
//! maintained crate keeps a compact sample table beside a fragmented MP4.

use media::WallTime;
use media::fmp4::Sample;

use crate::record::{Reader, put, unzigzag, zigzag};

/// The `uuid` box's user type.
pub const TABLE_UUID: [u8; 16] = *b"SharpeyeSamples1";
/// Version of the payload.
const VERSION: u8 = 1;
/// Most samples a table may hold (a day of 240 fps is 20.7 M; a segment is minutes).
pub const MAX_SAMPLES: usize = 4_000_000;
/// Largest table box read.
pub const MAX_BYTES: u64 = 64 << 20;

/// One fragment as the table places it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TableFragment {
    /// File offset of its first box (`prft`, or `moof`).
    pub byte_offset: u64,
    /// File offset of its first sample's bytes.
    pub data_start: u64,
    /// Decode time (`tfdt`) of its first sample.
    pub media_offset: u64,
    /// Wall time of its first sample (`prft`), µs since the epoch, when it has one.
    pub wall_us: Option<i64>,
    /// Index of its first sample in [`SampleTable::samples`].
    pub first_sample: usize,
    /// Its samples.
    pub samples: u32,
}

/// A segment's samples, fragment by fragment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleTable {
    /// Fragments in file order.
    pub fragments: Vec<TableFragment>,
    /// Every sample in order.
    pub samples: Vec<Sample>,
}

impl SampleTable {
    /// Adds a fragment at `byte_offset` whose samples start at `data_start`, decoded from
    /// `media_offset`, with its `prft` wall time. Fragments must be added in order, each where
    /// the one before ended.
    pub fn push(
        &mut self,
        byte_offset: u64,
        data_start: u64,
        media_offset: u64,
        wall_us: Option<i64>,
        samples: &[Sample],
    ) {
        self.fragments.push(TableFragment {
            byte_offset,
            data_start,
            media_offset,
            wall_us,
            first_sample: self.samples.len(),
            samples: samples.len() as u32,
        });
        self.samples.extend_from_slice(samples);
    }

    /// File offset just past the last fragment.
    pub fn end_offset(&self) -> Option<u64> {
        let last = self.fragments.last()?;
        Some(last.data_start + self.sample_bytes(last))
    }

    /// Bytes of a fragment's samples.
    pub fn sample_bytes(&self, f: &TableFragment) -> u64 {
        self.fragment_samples(f).iter().map(|s| u64::from(s.size)).sum()
    }

    /// A fragment's samples.
    pub fn fragment_samples(&self, f: &TableFragment) -> &[Sample] {
        self.samples
            .get(f.first_sample..f.first_sample + f.samples as usize)
            .unwrap_or(&[])
    }

    /// The segment's GOPs as the index once kept them (`crate::record::KeyFrameEntry`): a GOP
    /// starts at each fragment whose first sample is a key frame (and at the first fragment);
    /// its wall time is that fragment's `prft` time, else the nominal one from the segment's
    /// `start` and `timeline_start`.
    pub fn gops(&self, start: WallTime, timeline_start: u64) -> Vec<crate::record::KeyFrameEntry> {
        let mut out: Vec<crate::record::KeyFrameEntry> = Vec::new();
        for (i, f) in self.fragments.iter().enumerate() {
            let key = self.fragment_samples(f).first().is_some_and(|s| s.key);
            match out.last_mut() {
                Some(gop) if !key && i > 0 => gop.frames += f.samples,
                _ => {
                    let media_offset = f.media_offset.saturating_sub(timeline_start);
                    let nominal = start.add_micros(media::media_to_micros(media_offset as i64));
                    out.push(crate::record::KeyFrameEntry {
                        media_offset,
                        byte_offset: f.byte_offset,
                        wall_deviation_us: f.wall_us.map_or(0, |w| w.wrapping_sub(nominal.as_micros())),
                        frames: f.samples,
                    });
                }
            }
        }
        out
    }

    /// The table as the box that ends a segment file; `start_us` is the segment's start (its
    /// header's), from which wall times are stored as small deviations.
    pub fn to_box(&self, start_us: i64) -> Vec<u8> {
        let mut p = Vec::with_capacity(64 + self.fragments.len() * 6 + self.samples.len() * 4);
        p.push(VERSION);
        let (first_offset, first_media) = self
            .fragments
            .first()
            .map_or((0, 0), |f| (f.byte_offset, f.media_offset));
        put(&mut p, first_offset);
        put(&mut p, first_media);
        put(&mut p, self.fragments.len() as u64);
        for f in &self.fragments {
            put(&mut p, f.data_start - f.byte_offset);
            put(&mut p, u64::from(f.samples));
            let nominal = start_us.saturating_add(media::media_to_micros((f.media_offset - first_media) as i64));
            match f.wall_us {
                None => put(&mut p, 0),
                Some(w) => put(&mut p, zigzag(w.wrapping_sub(nominal)).wrapping_add(1)),
            }
        }
        let mut prev = 0i64;
        for s in &self.samples {
            let d = i64::from(s.duration);
            put(&mut p, zigzag(d - prev));
            prev = d;
            put(&mut p, (u64::from(s.size) << 1) | u64::from(s.key));
        }
        let crc = crc32fast::hash(&p);
        p.extend_from_slice(&crc.to_be_bytes());
        let size = 8 + 16 + p.len();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&(size as u32).to_be_bytes());
        out.extend_from_slice(b"uuid");
        out.extend_from_slice(&TABLE_UUID);
        out.extend_from_slice(&p);
        out
    }

    /// Writes the table as the box that ends the segment file `f` at `path`, right after its
    /// fragments (at `fragments_end`, cutting whatever followed them), and makes it durable;
    /// `start_us` is the segment's start.
    pub fn append_to(
        &self,
        f: &mut std::fs::File,
        path: &std::path::Path,
        fragments_end: u64,
        start_us: i64,
    ) -> Result<(), crate::StoreError> {
        use crate::StoreError;
        use std::io::{Seek, SeekFrom, Write};
        f.set_len(fragments_end).map_err(StoreError::io(path, "truncate"))?;
        f.seek(SeekFrom::Start(fragments_end))
            .map_err(StoreError::io(path, "seek"))?;
        f.write_all(&self.to_box(start_us))
            .map_err(StoreError::io(path, "write"))?;
        f.sync_all().map_err(StoreError::io(path, "sync"))
    }

    /// The table in `bytes`, which start with its box (and may go on past it); with the box's
    /// length. `start_us` is the segment's start. Never panics, whatever the bytes.
    pub fn from_box(bytes: &[u8], start_us: i64) -> Result<(SampleTable, u64), String> {
        if bytes.len() < 8 + 16 + 1 + 4 {
            return Err("too short for a sample table".into());
        }
        let size = u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        if &bytes[4..8] != b"uuid" || bytes[8..24] != TABLE_UUID {
            return Err("no sample table here".into());
        }
        if !(8 + 16 + 1 + 4..=MAX_BYTES).contains(&size) {
            return Err(format!("a sample table of {size} bytes"));
        }
        let Some(body) = bytes.get(24..size as usize) else {
            return Err(format!(
                "the sample table is cut short ({} of {size} bytes)",
                bytes.len()
            ));
        };
        let (payload, crc) = body.split_at(body.len() - 4);
        if crc32fast::hash(payload).to_be_bytes() != crc {
            return Err("the sample table's checksum does not match".into());
        }
        let mut r = Reader(payload);
        if r.byte()? != VERSION {
            return Err("unknown sample table version".into());
        }
        let first_offset = r.varint()?;
        let first_media = r.varint()?;
        let n = r.varint()? as usize;
        if n > MAX_SAMPLES {
            return Err(format!("{n} fragments"));
        }
        let mut heads = Vec::with_capacity(n.min(payload.len()));
        let mut total = 0usize;
        for _ in 0..n {
            let header_len = r.varint()?;
            let samples = r.u32()?;
            let wall = r.varint()?;
            total = total.saturating_add(samples as usize);
            if total > MAX_SAMPLES {
                return Err(format!("more than {MAX_SAMPLES} samples"));
            }
            heads.push((header_len, samples, wall));
        }
        let mut samples = Vec::with_capacity(total.min(payload.len()));
        let mut prev = 0i64;
        for _ in 0..total {
            let d = prev.checked_add(unzigzag(r.varint()?)).ok_or("duration overflows")?;
            let duration = u32::try_from(d).map_err(|_| "a sample's duration is out of range")?;
            prev = d;
            let v = r.varint()?;
            let size = u32::try_from(v >> 1).map_err(|_| "a sample's size is out of range")?;
            samples.push(Sample {
                duration,
                size,
                key: v & 1 == 1,
            });
        }
        if !r.0.is_empty() {
            return Err("bytes left after the sample table".into());
        }
        let mut t = SampleTable {
            fragments: Vec::with_capacity(n),
            samples,
        };
        let (mut offset, mut media) = (first_offset, first_media);
        let mut first = 0usize;
        for (header_len, count, wall) in heads {
            let f = TableFragment {
                byte_offset: offset,
                data_start: offset.checked_add(header_len).ok_or("offset overflows")?,
                media_offset: media,
                wall_us: match wall {
                    0 => None,
                    w => {
                        let nominal = start_us.saturating_add(media::media_to_micros((media - first_media) as i64));
                        Some(nominal.wrapping_add(unzigzag(w - 1)))
                    }
                },
                first_sample: first,
                samples: count,
            };
            let s = t.fragment_samples(&f);
            offset = f
                .data_start
                .checked_add(s.iter().map(|s| u64::from(s.size)).sum())
                .ok_or("offset overflows")?;
            media = media
                .checked_add(s.iter().map(|s| u64::from(s.duration)).sum())
                .ok_or("decode time overflows")?;
            first += count as usize;
            t.fragments.push(f);
        }
        Ok((t, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_795_420_800_000_000;

    fn table(fragments: usize) -> SampleTable {
        let mut t = SampleTable::default();
        let (mut offset, mut media) = (1_234u64, 5_400_000u64);
        for i in 0..fragments {
            let samples: Vec<Sample> = (0..25)
                .map(|k| Sample {
                    duration: if k == 24 && i % 3 == 0 { 3601 } else { 3600 },
                    size: if k == 0 { 80_000 + i as u32 } else { 9_000 + k * 7 },
                    key: k == 0,
                })
                .collect();
            let wall = (i % 4 != 3).then(|| START + (media - 5_400_000) as i64 * 100 / 9 + (i as i64 % 5) - 2);
            let header = 120 + (i as u64 % 2) * 32;
            t.push(offset, offset + header, media, wall, &samples);
            offset += header + samples.iter().map(|s| u64::from(s.size)).sum::<u64>();
            media += samples.iter().map(|s| u64::from(s.duration)).sum::<u64>();
        }
        t
    }

    #[test]
    fn a_minute_round_trips_in_a_few_bytes_a_sample() {
        let t = table(60);
        let b = t.to_box(START);
        assert!(b.len() < 1500 * 9 / 2, "{} bytes for 1,500 samples", b.len());
        let (back, len) = SampleTable::from_box(&b, START).unwrap();
        assert_eq!(back, t);
        assert_eq!(len, b.len() as u64);
        // Followed by anything: the box's own length says where it ends.
        let mut longer = b.clone();
        longer.extend_from_slice(&[7; 100]);
        assert_eq!(SampleTable::from_box(&longer, START).unwrap().0, t);
        assert_eq!(t.end_offset(), back.end_offset());
        assert_eq!(
            SampleTable::from_box(&SampleTable::default().to_box(START), START)
                .unwrap()
                .0,
            SampleTable::default()
        );
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_never_a_panic() {
        let b = table(4).to_box(START);
        for len in 0..b.len() {
            assert!(SampleTable::from_box(&b[..len], START).is_err(), "{len}");
        }
        for i in 0..b.len() {
            for bit in [0x01, 0x80] {
                let mut c = b.clone();
                c[i] ^= bit;
                // The checksum catches every flip in the payload; flips in the header are
                // refused or read as another size.
                assert!(SampleTable::from_box(&c, START).is_err(), "flip at {i}");
            }
        }
    }

    #[test]
    fn hostile_counts_are_refused_before_anything_is_allocated() {
        let mut p = vec![VERSION];
        put(&mut p, 0);
        put(&mut p, 0);
        put(&mut p, u64::MAX >> 1);
        let crc = crc32fast::hash(&p);
        p.extend_from_slice(&crc.to_be_bytes());
        let mut b = ((24 + p.len()) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(b"uuid");
        b.extend_from_slice(&TABLE_UUID);
        b.extend_from_slice(&p);
        let e = SampleTable::from_box(&b, START).unwrap_err();
        assert!(e.contains("fragments"), "{e}");
    }
}
