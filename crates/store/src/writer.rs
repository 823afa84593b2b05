//! Appending fragments to one segment file.

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::PathBuf;
use std::sync::Arc;

use media::fmp4::{ProducerTime, Sample, write_fragment_header};
use media::{Frame, media_to_micros};

use crate::StoreError;
use crate::disk::{Disk, SpaceGauge};
use crate::layout::segment_path;
use crate::record::{KeyFrameEntry, SegmentRecord};
use crate::sample_table::SampleTable;
use crate::segment_file::{SegmentHeader, write_init};

/// An open segment file and its growing index entry.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    pub disk: usize,
    pub path: PathBuf,
    file: File,
    pub record: SegmentRecord,
    /// The index entry changed since it was last handed to the syncer.
    pub dirty: bool,
    sequence: u32,
    scratch: Vec<u8>,
    gauge: Arc<SpaceGauge>,
    /// Every fragment and sample written so far: the table [`Self::finish`] appends.
    table: SampleTable,
}

impl SegmentWriter {
    /// Creates the file for segment `seq` starting with `first` and writes its init part.
    pub fn create(disk: usize, on: &Disk, seq: u64, first: &Frame, timeline_start: u64) -> Result<Self, StoreError> {
        let path = on.root().join(segment_path(&first.stream, first.wall_time, seq));
        let header = SegmentHeader::new(&first.stream, seq, first.wall_time, first.media_time, timeline_start);
        let mut init = Vec::with_capacity(1024);
        write_init(&mut init, &header, &first.params).map_err(|e| StoreError::Segment {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let gauge = on.gauge().clone();
        // Room for the first GOP too: a segment that cannot hold one is not worth starting.
        gauge.claim(init.len() as u64 + 4 * first.data.len() as u64, &path)?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(StoreError::io(dir, "create directory"))?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io(&path, "create"))?;
        if let Err(e) = file.write_all(&init) {
            // An empty file would be an orphan for the next start-up to explain.
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(StoreError::io(&path, "write")(e));
        }
        let p = &first.params;
        Ok(SegmentWriter {
            disk,
            record: SegmentRecord {
                stream: first.stream.clone(),
                seq,
                start: first.wall_time,
                end: first.wall_time,
                media_start: first.media_time,
                timeline_start,
                media_duration: 0,
                frames: 0,
                bytes: init.len() as u64,
                closed: false,
                codec: p.codec(),
                width: p.width(),
                height: p.height(),
                key_frames: Vec::new(),
            },
            path,
            file,
            dirty: true,
            sequence: 1,
            scratch: Vec::with_capacity(4096),
            gauge,
            table: SampleTable::default(),
        })
    }

    /// Media ticks from the segment's first frame to `media`.
    pub fn elapsed(&self, media: i64) -> i64 {
        media - self.record.media_start
    }

    /// Appends `frames` as one fragment; `next_media` is the media time just after the last
    /// frame (the next frame's time, or an estimate when the stream ended).
    pub fn append(&mut self, frames: &[Frame], next_media: i64) -> Result<(), StoreError> {
        let Some(first) = frames.first() else {
            return Ok(());
        };
        let samples: Vec<Sample> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let next = frames.get(i + 1).map_or(next_media, |n| n.media_time);
                Sample {
                    // Ingest guarantees increasing times within a run; clamp anyway so a bad
                    // value can never make an unreadable file.
                    duration: u32::try_from(next - f.media_time).unwrap_or(u32::MAX).max(1),
                    size: f.data.len() as u32,
                    key: f.key,
                }
            })
            .collect();
        let media_offset = self.elapsed(first.media_time).max(0) as u64;
        let nominal = self.record.start.add_micros(media_to_micros(media_offset as i64));
        let wall_deviation_us = first.wall_time.micros_since(nominal);
        self.scratch.clear();
        let decode_time = self.record.timeline_start + media_offset;
        write_fragment_header(
            &mut self.scratch,
            self.sequence,
            decode_time,
            &samples,
            Some(ProducerTime {
                wall: first.wall_time,
                media_time: decode_time,
            }),
        )
        .map_err(|e| StoreError::Segment {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len() + 1);
        slices.push(IoSlice::new(&self.scratch));
        slices.extend(frames.iter().map(|f| IoSlice::new(&f.data)));
        let total = self.scratch.len() as u64 + frames.iter().map(|f| f.data.len() as u64).sum::<u64>();
        self.gauge.claim(total, &self.path)?;
        if let Err(e) = write_all_vectored(&mut self.file, &mut slices) {
            // Cut the partial fragment off so the file ends where its last complete fragment
            // does (best effort: recovery would trim it anyway).
            let _ = self.file.set_len(self.record.bytes);
            return Err(StoreError::io(&self.path, "write")(e));
        }

        let byte_offset = self.record.bytes;
        self.table.push(
            byte_offset,
            byte_offset + self.scratch.len() as u64,
            decode_time,
            Some(first.wall_time.as_micros()),
            &samples,
        );
        self.record.bytes += total;
        self.record.frames += frames.len() as u64;
        let duration: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
        self.record.media_duration = media_offset + duration;
        self.record.end = self
            .record
            .start
            .add_micros(media_to_micros(self.record.media_duration as i64) + wall_deviation_us);
        // Segments start with a key frame, so a GOP entry exists for any continuation.
        match self.record.key_frames.last_mut() {
            Some(gop) if !first.key => gop.frames += frames.len() as u32,
            _ => self.record.key_frames.push(KeyFrameEntry {
                media_offset,
                byte_offset,
                wall_deviation_us,
                frames: frames.len() as u32,
            }),
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.dirty = true;
        Ok(())
    }
}

impl SegmentWriter {
    /// Appends the segment's sample table (`crate::sample_table`) after its last fragment, as
    /// it closes. The record's length stays that of the fragments: the table is found there.
    /// On failure (a full disk) the file is cut back to its fragments, which play without it.
    pub fn finish(&mut self) -> Result<(), StoreError> {
        if self.table.fragments.is_empty() {
            return Ok(());
        }
        let table = self.table.to_box(self.record.start.as_micros());
        let written = self
            .gauge
            .claim(table.len() as u64, &self.path)
            .and_then(|()| self.file.write_all(&table).map_err(StoreError::io(&self.path, "write")));
        if written.is_err() {
            let _ = self.file.set_len(self.record.bytes);
        }
        written
    }
}

/// `write_all` for a vector of slices: one `writev` per call in the common case, so fragment
/// payloads go from the frames' buffers to the kernel without being copied into one buffer.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    // Skip leading empty slices so that a zero-length write below really means "no progress".
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        // Linux accepts at most IOV_MAX (1024) slices per call.
        let n = slices.len().min(1024);
        match file.write_vectored(&slices[..n]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use camsim::BuiltinFixture;
    use media::{StreamId, WallTime};

    use super::SegmentWriter;
    use crate::disk::Disk;
    use crate::segment_file::scan_file;

    /// A write that meets a real full file system fails as out of space and leaves the file
    /// ending at its last complete fragment, which scans whole.
    #[test]
    fn a_real_enospc_leaves_the_file_at_its_last_complete_fragment() {
        let fs = testkit::SmallFs::new(24);
        fs.clear("writer-enospc");
        let root = fs.path.join("writer-enospc");
        let disk = Disk::open(&root).unwrap();
        let stream = StreamId::main("cam");
        let frames = BuiltinFixture::H264_1080p.load().frames(
            &stream,
            100,
            1_000_000,
            WallTime::from_micros(1_795_420_800_000_000),
        );
        let mut w = SegmentWriter::create(0, &disk, 1, &frames[0], 0).unwrap();
        w.append(&frames[..25], frames[25].media_time).unwrap();
        w.append(&frames[25..50], frames[50].media_time).unwrap();
        let (bytes, count) = (w.record.bytes, w.record.frames);

        // Something else fills the disk behind the gauge's back.
        disk.gauge().freeze();
        let filler = testkit::fill(&root.join("filler"));
        let err = w.append(&frames[50..75], frames[75].media_time).unwrap_err();
        assert!(err.is_out_of_space(), "{err}");
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert_eq!(w.record.bytes, bytes, "the failed fragment is not counted");
        assert_eq!(w.record.frames, count);
        assert_eq!(
            std::fs::metadata(&w.path).unwrap().len(),
            bytes,
            "no torn fragment left"
        );
        let scanned = scan_file(&w.path).unwrap();
        assert_eq!(scanned.valid_len, bytes);
        assert_eq!(scanned.file_len, bytes);
        let scanned_frames: u64 = scanned.fragments.iter().map(|f| u64::from(f.frames)).sum();
        assert_eq!(scanned_frames, count);
        drop(filler);
        let _ = std::fs::remove_dir_all(&root);
    }
}
