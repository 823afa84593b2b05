//! The segment file format and its reader.
//!
//! A segment file is a plain fragmented MP4 that any player opens:
//!
//! ```text
//! ftyp
//! uuid "SharpeyeSegment1" + JSON SegmentHeader   (stream id, sequence, wall-clock anchor)
//! moov                                           (one video track, codec parameters)
//! [prft moof mdat]*                              (one fragment per GOP, or per flush)
//! ```
//!
//! Each `prft` carries the wall-clock time of its fragment's first sample, so the file alone
//! (without the index) says what was recorded when. [`scan`] reads that structure back,
//! stopping at the first incomplete or damaged fragment: the "torn tail" a crash leaves.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use media::fmp4::{self, Mp4Error};
use media::{StreamId, StreamKind, StreamParams, WallTime, media_to_micros};
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::record::{KeyFrameEntry, SegmentRecord};
use crate::sample_table::SampleTable;

/// The extended type of the header `uuid` box.
pub const HEADER_UUID: [u8; 16] = *b"SharpeyeSegment1";
/// The `format` value of the header.
pub const FORMAT: &str = "sharpeye-segment";

const MAX_UUID: u64 = 64 << 10;
const MAX_MOOV: u64 = 1 << 20;
const MAX_MOOF: u64 = 8 << 20;
const MAX_PRFT: u64 = 64;

/// The self-description at the start of every segment file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// Camera id.
    pub camera: String,
    /// `main` or `sub`.
    pub stream: String,
    /// Sequence number within the stream.
    pub seq: u64,
    /// Wall time of the first frame, µs since the Unix epoch.
    pub start_us: i64,
    /// Camera media time (90 kHz) of the first frame.
    pub media_start: i64,
    /// Decode time (`tfdt`) of the first frame: continues the previous segment's timeline when
    /// the recording is continuous, 0 at the start of a run.
    #[serde(default)]
    pub timeline_start: u64,
    /// The software that wrote it.
    pub writer: String,
}

impl SegmentHeader {
    /// The header of segment `seq` of `stream` starting at the given times.
    pub fn new(stream: &StreamId, seq: u64, start: WallTime, media_start: i64, timeline_start: u64) -> Self {
        SegmentHeader {
            format: FORMAT.to_owned(),
            version: 1,
            camera: stream.camera().to_owned(),
            stream: stream.kind().as_str().to_owned(),
            seq,
            start_us: start.as_micros(),
            media_start,
            timeline_start,
            writer: concat!("sharpeye ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The stream id it names.
    pub fn stream_id(&self) -> Option<StreamId> {
        Some(StreamId::new(self.camera.as_str(), StreamKind::parse(&self.stream)?))
    }
}

/// Appends `ftyp`, the header `uuid` box and `moov`: everything before the first fragment.
pub fn write_init(out: &mut Vec<u8>, header: &SegmentHeader, params: &StreamParams) -> Result<(), Mp4Error> {
    fmp4::write_ftyp(out)?;
    let json = serde_json::to_vec(header).map_err(|e| Mp4Error::Invalid(e.to_string()))?;
    out.extend_from_slice(&((8 + 16 + json.len()) as u32).to_be_bytes());
    out.extend_from_slice(b"uuid");
    out.extend_from_slice(&HEADER_UUID);
    out.extend_from_slice(&json);
    fmp4::write_moov(params, out)
}

/// One complete fragment found by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedFragment {
    /// Offset of its first box (`prft` if present, else `moof`).
    pub byte_offset: u64,
    /// Offset just past its `mdat`.
    pub end_offset: u64,
    /// `tfdt`: the file's decode time of its first sample (starts at the header's
    /// `timeline_start`).
    pub media_offset: u64,
    /// Sum of its sample durations.
    pub duration: u64,
    /// Wall time of its first sample (from `prft`), if present.
    pub wall: Option<WallTime>,
    /// Samples.
    pub frames: u32,
    /// First sample is a key frame.
    pub key: bool,
}

/// What [`scan`] found in a segment file.
#[derive(Clone, Debug)]
pub struct ScannedSegment {
    /// The header.
    pub header: SegmentHeader,
    /// The codec parameters from `moov`.
    pub params: StreamParams,
    /// Length of `ftyp + uuid + moov`.
    pub init_len: u64,
    /// Complete fragments, in order.
    pub fragments: Vec<ScannedFragment>,
    /// Length of the file up to the end of the last complete fragment.
    pub valid_len: u64,
    /// Length of the whole file.
    pub file_len: u64,
    /// Why scanning stopped before the end of the file, if it did.
    pub tail_problem: Option<String>,
    /// The complete fragments' samples, as a sample table (`crate::sample_table`).
    pub table: SampleTable,
    /// End of the sample table box that follows the fragments, when the file has a sound one
    /// that agrees with them.
    pub table_end: Option<u64>,
}

struct BoxHeader {
    kind: [u8; 4],
    start: u64,
    header_len: u64,
    size: u64,
}

impl BoxHeader {
    fn end(&self) -> u64 {
        // A hostile 64-bit size must not wrap around to a small offset.
        self.start.saturating_add(self.size)
    }
}

/// Reads the box header at `pos`; `Ok(None)` at exactly the end of the file.
fn box_header<R: Read + Seek>(r: &mut R, pos: u64, len: u64) -> Result<Option<BoxHeader>, String> {
    if pos == len {
        return Ok(None);
    }
    if pos > len {
        return Err(format!("a box extends past the end of the file ({len} bytes)"));
    }
    if len - pos < 8 {
        return Err(format!("{} stray bytes at offset {pos}", len - pos));
    }
    let mut h = [0u8; 16];
    r.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
    r.read_exact(&mut h[..8]).map_err(|e| e.to_string())?;
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let kind = [h[4], h[5], h[6], h[7]];
    let (size, header_len) = match size32 {
        0 => return Err(format!("box {} at {pos} has size 0", show(kind))),
        1 => {
            if len - pos < 16 {
                return Err(format!("truncated large box header at {pos}"));
            }
            r.read_exact(&mut h[8..16]).map_err(|e| e.to_string())?;
            (u64::from_be_bytes(h[8..16].try_into().unwrap_or_default()), 16)
        }
        s => (u64::from(s), 8),
    };
    if size < header_len {
        return Err(format!("box {} at {pos} has impossible size {size}", show(kind)));
    }
    Ok(Some(BoxHeader {
        kind,
        start: pos,
        header_len,
        size,
    }))
}

fn show(kind: [u8; 4]) -> String {
    kind.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

fn read_box<R: Read + Seek>(r: &mut R, b: &BoxHeader, len: u64, max: u64) -> Result<Vec<u8>, String> {
    if b.size > max {
        return Err(format!(
            "box {} at {} is {} bytes, above the {max}-byte limit",
            show(b.kind),
            b.start,
            b.size
        ));
    }
    if b.end() > len {
        return Err(format!(
            "box {} at {} ends past the end of the file",
            show(b.kind),
            b.start
        ));
    }
    let mut buf = vec![0u8; b.size as usize];
    r.seek(SeekFrom::Start(b.start)).map_err(|e| e.to_string())?;
    r.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// The part of a segment before its first fragment.
#[derive(Clone, Debug)]
pub struct Init {
    /// The header.
    pub header: SegmentHeader,
    /// The codec parameters.
    pub params: StreamParams,
    /// Length of `ftyp + uuid + moov`.
    pub len: u64,
}

/// Reads `ftyp`, the header and `moov`; fails if they are not a Sharpeye segment's.
pub fn read_init<R: Read + Seek>(r: &mut R, len: u64) -> Result<Init, String> {
    let next = |r: &mut R, pos: u64, want: &[u8; 4]| -> Result<BoxHeader, String> {
        match box_header(r, pos, len)? {
            Some(b) if &b.kind == want => Ok(b),
            Some(b) => Err(format!(
                "expected {} at offset {pos}, found {}",
                show(*want),
                show(b.kind)
            )),
            None => Err(format!("file ends before {}", show(*want))),
        }
    };
    let ftyp = next(r, 0, b"ftyp")?;
    let uuid = next(r, ftyp.end(), b"uuid")?;
    let body = read_box(r, &uuid, len, MAX_UUID)?;
    let body = &body[uuid.header_len as usize..];
    if body.len() < 16 || body[..16] != HEADER_UUID {
        return Err("no Sharpeye segment header".into());
    }
    let header: SegmentHeader = serde_json::from_slice(&body[16..]).map_err(|e| format!("segment header: {e}"))?;
    if header.format != FORMAT || header.version != 1 {
        return Err(format!(
            "unsupported segment format {} v{}",
            header.format, header.version
        ));
    }
    if header.stream_id().is_none() {
        return Err(format!("segment header names unknown stream kind {:?}", header.stream));
    }
    let moov_box = next(r, uuid.end(), b"moov")?;
    let moov = fmp4::decode_moov(&read_box(r, &moov_box, len, MAX_MOOV)?).map_err(|e| e.to_string())?;
    let params = fmp4::params_from_moov(&moov).map_err(|e| e.to_string())?;

    Ok(Init {
        header,
        params,
        len: moov_box.end(),
    })
}

/// Reads a segment file's structure from `r` (`len` bytes long).
///
/// Fails only if the start of the file (`ftyp`, header, `moov`) is not a Sharpeye segment;
/// problems after that end the scan at the last complete fragment and are described in
/// [`ScannedSegment::tail_problem`]. Never panics, whatever the bytes.
pub fn scan<R: Read + Seek>(r: &mut R, len: u64) -> Result<ScannedSegment, String> {
    let Init {
        header,
        params,
        len: init_len,
    } = read_init(r, len)?;
    let mut scanned = ScannedSegment {
        header,
        params,
        init_len,
        fragments: Vec::new(),
        valid_len: init_len,
        file_len: len,
        tail_problem: None,
        table: SampleTable::default(),
        table_end: None,
    };
    let mut pos = init_len;
    let mut expect_media = scanned.header.timeline_start;
    loop {
        match read_fragment(r, pos, len, expect_media) {
            Ok(None) => break,
            Ok(Some(FragmentTable {
                info: f,
                data_start,
                samples,
            })) => {
                pos = f.end_offset;
                expect_media = f.media_offset + f.duration;
                scanned.valid_len = pos;
                scanned.table.push(
                    f.byte_offset,
                    data_start,
                    f.media_offset,
                    f.wall.map(|w| w.as_micros()),
                    &samples,
                );
                scanned.fragments.push(f);
            }
            Err(problem) => {
                // The sample table a closed segment ends with is where the fragments end.
                match read_table_at(r, pos, len, scanned.header.start_us) {
                    Some((table, end)) if table == scanned.table => scanned.table_end = Some(end),
                    Some(_) => {
                        scanned.tail_problem = Some(format!("the sample table at {pos} does not match the fragments"))
                    }
                    None => scanned.tail_problem = Some(problem),
                }
                break;
            }
        }
    }
    Ok(scanned)
}

/// The sample table box at `pos` and where it ends, if there is a sound one (`start_us`: the
/// segment's start, from its header).
pub fn read_table_at<R: Read + Seek>(r: &mut R, pos: u64, len: u64, start_us: i64) -> Option<(SampleTable, u64)> {
    let b = box_header(r, pos, len).ok()??;
    if &b.kind != b"uuid" || b.size > crate::sample_table::MAX_BYTES {
        return None;
    }
    let bytes = read_box(r, &b, len, crate::sample_table::MAX_BYTES).ok()?;
    let (table, size) = SampleTable::from_box(&bytes, start_us).ok()?;
    Some((table, pos + size))
}

/// A fragment with its sample table.
#[derive(Clone, Debug)]
pub struct FragmentTable {
    /// Where it is and what it covers.
    pub info: ScannedFragment,
    /// File offset of its first sample's bytes; the others follow back to back.
    pub data_start: u64,
    /// Its samples.
    pub samples: Vec<fmp4::Sample>,
}

/// Reads the fragment whose first box (`prft` or `moof`) is at `pos`, checking that it starts
/// at media time `expect_media` and that its `mdat` is complete. `Ok(None)` at the end of the
/// file.
pub fn read_fragment<R: Read + Seek>(
    r: &mut R,
    pos: u64,
    len: u64,
    expect_media: u64,
) -> Result<Option<FragmentTable>, String> {
    let Some(mut b) = box_header(r, pos, len)? else {
        return Ok(None);
    };
    let mut wall = None;
    if &b.kind == b"prft" {
        let prft = fmp4::decode_prft(&read_box(r, &b, len, MAX_PRFT)?).map_err(|e| e.to_string())?;
        wall = Some(prft.wall);
        b = box_header(r, b.end(), len)?.ok_or_else(|| format!("file ends after prft at {pos}"))?;
    }
    if &b.kind != b"moof" {
        return Err(format!("expected moof at offset {}, found {}", b.start, show(b.kind)));
    }
    let frag = fmp4::decode_moof(&read_box(r, &b, len, MAX_MOOF)?).map_err(|e| e.to_string())?;
    let mdat = box_header(r, b.end(), len)?.ok_or_else(|| format!("file ends after moof at {}", b.start))?;
    if &mdat.kind != b"mdat" {
        return Err(format!(
            "expected mdat at offset {}, found {}",
            mdat.start,
            show(mdat.kind)
        ));
    }
    let payload = frag.payload_len();
    if mdat.size - mdat.header_len != payload || frag.data_offset != b.size + mdat.header_len {
        return Err(format!("mdat at {} does not match its moof", mdat.start));
    }
    if mdat.end() > len {
        return Err(format!(
            "mdat at {} ends past the end of the file (torn write)",
            mdat.start
        ));
    }
    if frag.samples.is_empty() {
        return Err(format!("empty fragment at {pos}"));
    }
    if frag.base_media_time != expect_media {
        return Err(format!(
            "fragment at {pos} starts at media time {} but the previous one ended at {expect_media}",
            frag.base_media_time
        ));
    }
    Ok(Some(FragmentTable {
        info: ScannedFragment {
            byte_offset: pos,
            end_offset: mdat.end(),
            media_offset: frag.base_media_time,
            duration: frag.duration(),
            wall,
            frames: frag.samples.len() as u32,
            key: frag.samples[0].key,
        },
        data_start: b.start + frag.data_offset,
        samples: frag.samples,
    }))
}

/// A `Read + Seek` over a file that reads through a window with `pread` and keeps the window
/// across seeks that land inside it. Walking a segment's boxes seeks before every box; a
/// `BufReader` would throw its buffer away each time, this reads each fragment's `prft`,
/// `moof` and `mdat` header with one system call.
pub struct PreadWindow<'a> {
    file: &'a File,
    pos: u64,
    start: u64,
    buf: Vec<u8>,
    filled: usize,
}

/// Size of a [`PreadWindow`]'s window: a fragment's headers for hundreds of frames.
const WINDOW: usize = 4 << 10;

impl<'a> PreadWindow<'a> {
    /// A reader at offset 0 of `file`.
    pub fn new(file: &'a File) -> Self {
        PreadWindow {
            file,
            pos: 0,
            start: 0,
            buf: vec![0; WINDOW],
            filled: 0,
        }
    }
}

impl Read for PreadWindow<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let inside = self.pos >= self.start && self.pos < self.start + self.filled as u64;
        if !inside {
            if out.len() >= WINDOW {
                let n = self.file.read_at(out, self.pos)?;
                self.pos += n as u64;
                return Ok(n);
            }
            self.filled = self.file.read_at(&mut self.buf, self.pos)?;
            self.start = self.pos;
            if self.filled == 0 {
                return Ok(0);
            }
        }
        let at = (self.pos - self.start) as usize;
        let n = out.len().min(self.filled - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PreadWindow<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(p) => return Ok(self.pos_set(p)),
            SeekFrom::Current(d) => self.pos as i64 + d,
            SeekFrom::End(d) => self.file.metadata()?.len() as i64 + d,
        };
        u64::try_from(base)
            .map(|p| self.pos_set(p))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the file"))
    }
}

impl PreadWindow<'_> {
    fn pos_set(&mut self, p: u64) -> u64 {
        self.pos = p;
        p
    }
}

/// Scans the file at `path`.
pub fn scan_file(path: &Path) -> Result<ScannedSegment, StoreError> {
    let f = File::open(path).map_err(StoreError::io(path, "open"))?;
    let len = f.metadata().map_err(StoreError::io(path, "stat"))?.len();
    scan(&mut PreadWindow::new(&f), len).map_err(|detail| StoreError::Segment {
        path: path.to_owned(),
        detail,
    })
}

impl ScannedSegment {
    /// The index entry for the scanned contents (closed), or `None` if there are no complete
    /// fragments. Fragments without `prft` get wall times from the header's anchor.
    pub fn to_record(&self) -> Option<SegmentRecord> {
        let stream = self.header.stream_id()?;
        let first = self.fragments.first()?;
        let start = first.wall.unwrap_or(WallTime::from_micros(self.header.start_us));
        let nominal = |media: u64| start.add_micros(media_to_micros((media - first.media_offset) as i64));
        let deviation = |f: &ScannedFragment| f.wall.map_or(0, |w| w.micros_since(nominal(f.media_offset)));
        let mut key_frames: Vec<KeyFrameEntry> = Vec::new();
        for f in &self.fragments {
            match key_frames.last_mut() {
                Some(gop) if !f.key => gop.frames += f.frames,
                _ => key_frames.push(KeyFrameEntry {
                    media_offset: f.media_offset - first.media_offset,
                    byte_offset: f.byte_offset,
                    wall_deviation_us: deviation(f),
                    frames: f.frames,
                }),
            }
        }
        let last = self.fragments.last()?;
        let media_end = last.media_offset + last.duration - first.media_offset;
        // As the writer computes it: from the last fragment's own anchor.
        let end = nominal(last.media_offset + last.duration).add_micros(deviation(last));
        Some(SegmentRecord {
            stream,
            seq: self.header.seq,
            start,
            end,
            media_start: self.header.media_start,
            timeline_start: first.media_offset,
            media_duration: media_end,
            frames: self.fragments.iter().map(|f| u64::from(f.frames)).sum(),
            bytes: self.valid_len,
            closed: true,
            codec: self.params.codec(),
            width: self.params.width(),
            height: self.params.height(),
            key_frames,
        })
    }
}
