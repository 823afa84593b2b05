//! Fragmented MP4 (ISO/IEC 14496-12 with 14496-15 sample entries): the init segment (`ftyp` +
//! `moov`) and one `moof`+`mdat` per fragment, built with `mp4-atom`; and the reverse, reading
//! the codec parameters and sample tables back.
//!
//! One video track, 90 kHz timescale, samples in the length-prefixed form [`crate::Frame`]
//! carries. The sample payloads themselves are not copied here: [`write_fragment_header`]
//! writes everything up to the first payload byte and the caller writes the payloads after it
//! (with `writev`), which keeps the recorder's write path free of copies.

use mp4_atom::{Atom, Decode, Encode};

use crate::params::DecoderConfig;
use crate::{StreamParams, WallTime};

/// The track id of the single video track.
pub const TRACK_ID: u32 = 1;
/// The media timescale: the 90 kHz clock frames carry.
pub const TIMESCALE: u32 = crate::MEDIA_CLOCK_HZ;

/// `sample_flags` of a sync sample: depends on no other sample.
pub const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: depends on others, `sample_is_non_sync_sample`.
pub const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Failure to build or read an MP4 structure.
#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    /// `mp4-atom` could not encode or decode a box.
    #[error("MP4 box {context}: {source}")]
    Atom {
        /// Which box or step.
        context: &'static str,
        /// The underlying error.
        source: mp4_atom::Error,
    },
    /// The file's structure is readable but not what Sharpeye writes or can use.
    #[error("MP4 {0}")]
    Invalid(String),
    /// The codec parameters inside the sample entry are unusable.
    #[error("MP4 sample entry: {0}")]
    Params(#[from] crate::ParamsError),
}

fn atom(context: &'static str) -> impl FnOnce(mp4_atom::Error) -> Mp4Error {
    move |source| Mp4Error::Atom { context, source }
}

/// One sample of a fragment as described in its `trun`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Duration in 90 kHz ticks (time to the next sample).
    pub duration: u32,
    /// Payload size in bytes.
    pub size: u32,
    /// Sync sample (key frame).
    pub key: bool,
}

/// The wall-clock time of a fragment's first sample, written as a `prft` box before its `moof`
/// so that a file alone tells when each fragment was recorded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ProducerTime {
    /// Wall-clock time of the sample at `media_time`.
    pub wall: WallTime,
    /// The media time (90 kHz) the wall time refers to: the fragment's base media decode time.
    pub media_time: u64,
}

/// Appends the `ftyp` box of Sharpeye's fragmented files.
pub fn write_ftyp(out: &mut Vec<u8>) -> Result<(), Mp4Error> {
    mp4_atom::Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    }
    .encode(out)
    .map_err(atom("ftyp"))
}

fn visual(params: &StreamParams) -> Result<mp4_atom::Visual, Mp4Error> {
    let dim = |v: u32| {
        u16::try_from(v).map_err(|_| Mp4Error::Invalid(format!("picture dimension {v} does not fit a sample entry")))
    };
    Ok(mp4_atom::Visual {
        data_reference_index: 1,
        width: dim(params.width())?,
        height: dim(params.height())?,
        horizresolution: 72.into(),
        vertresolution: 72.into(),
        frame_count: 1,
        compressor: "".into(),
        depth: 24,
    })
}

/// The sample entry (`avc1` or `hvc1`) for a stream.
pub fn sample_entry(params: &StreamParams) -> Result<mp4_atom::Codec, Mp4Error> {
    let visual = visual(params)?;
    Ok(match &params.decoder_config {
        DecoderConfig::Avc(avcc) => mp4_atom::Avc1 {
            visual,
            avcc: avcc.clone(),
            btrt: None,
            colr: None,
            pasp: None,
            taic: None,
            fiel: None,
            spatial: None,
        }
        .into(),
        DecoderConfig::Hevc(hvcc) => mp4_atom::Hvc1 {
            visual,
            hvcc: hvcc.clone(),
            ..Default::default()
        }
        .into(),
    })
}

/// A `trak` for the video track with the given sample table (empty for fragmented files).
pub fn video_trak(
    params: &StreamParams,
    duration: u64,
    stbl: mp4_atom::Stbl,
    edts: Option<mp4_atom::Edts>,
) -> Result<mp4_atom::Trak, Mp4Error> {
    Ok(mp4_atom::Trak {
        tkhd: mp4_atom::Tkhd {
            track_id: TRACK_ID,
            duration,
            enabled: true,
            in_movie: true,
            width: (params.width() as u16).into(),
            height: (params.height() as u16).into(),
            ..Default::default()
        },
        edts,
        mdia: mp4_atom::Mdia {
            mdhd: mp4_atom::Mdhd {
                timescale: TIMESCALE,
                duration,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: mp4_atom::Hdlr {
                handler: b"vide".into(),
                name: "Sharpeye video".into(),
            },
            minf: mp4_atom::Minf {
                vmhd: Some(mp4_atom::Vmhd::default()),
                dinf: mp4_atom::Dinf {
                    dref: mp4_atom::Dref {
                        entries: vec![mp4_atom::Url::default().into()],
                    },
                },
                stbl,
                ..Default::default()
            },
        },
        ..Default::default()
    })
}

/// Appends the `moov` of a fragmented file: one video track with an empty sample table and an
/// `mvex` announcing fragments.
pub fn write_moov(params: &StreamParams, out: &mut Vec<u8>) -> Result<(), Mp4Error> {
    let stbl = mp4_atom::Stbl {
        stsd: mp4_atom::Stsd {
            codecs: vec![sample_entry(params)?],
        },
        stco: Some(mp4_atom::Stco::default()),
        ..Default::default()
    };
    mp4_atom::Moov {
        mvhd: mp4_atom::Mvhd {
            timescale: 1000,
            next_track_id: TRACK_ID + 1,
            ..Default::default()
        },
        mvex: Some(mp4_atom::Mvex {
            mehd: None,
            trex: vec![mp4_atom::Trex {
                track_id: TRACK_ID,
                default_sample_description_index: 1,
                ..Default::default()
            }],
        }),
        trak: vec![video_trak(params, 0, stbl, None)?],
        ..Default::default()
    }
    .encode(out)
    .map_err(atom("moov"))
}

/// Appends `[prft] moof mdat-header` for a fragment of `samples` starting at `base_media_time`;
/// the caller must append exactly the samples' payloads, in order, right after.
///
/// Returns the total number of payload bytes expected.
pub fn write_fragment_header(
    out: &mut Vec<u8>,
    sequence: u32,
    base_media_time: u64,
    samples: &[Sample],
    producer_time: Option<ProducerTime>,
) -> Result<u64, Mp4Error> {
    if let Some(p) = producer_time {
        mp4_atom::Prft {
            reference_track_id: TRACK_ID,
            ntp_timestamp: p.wall.to_ntp(),
            media_time: p.media_time,
            utc_time_semantics: mp4_atom::ReferenceTime::Input,
        }
        .encode(out)
        .map_err(atom("prft"))?;
    }
    let payload: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    let entries = samples
        .iter()
        .map(|s| mp4_atom::TrunEntry {
            duration: Some(s.duration),
            size: Some(s.size),
            flags: Some(if s.key {
                SAMPLE_FLAGS_SYNC
            } else {
                SAMPLE_FLAGS_NON_SYNC
            }),
            cts: None,
        })
        .collect();
    let mut moof = mp4_atom::Moof {
        mfhd: mp4_atom::Mfhd {
            sequence_number: sequence,
        },
        traf: vec![mp4_atom::Traf {
            tfhd: mp4_atom::Tfhd {
                track_id: TRACK_ID,
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(mp4_atom::Tfdt {
                base_media_decode_time: base_media_time,
            }),
            trun: vec![mp4_atom::Trun {
                data_offset: Some(0),
                samples: mp4_atom::TrunSamples::Explicit(entries),
            }],
            ..Default::default()
        }],
    };
    // The data offset counts from the start of the moof to the first payload byte, so the moof's
    // own size must be known first: encode once to measure, then again with the real offset.
    let mut measure = Vec::with_capacity(64 + samples.len() * 12);
    moof.encode(&mut measure).map_err(atom("moof"))?;
    let mdat_header_len: u64 = if payload + 8 > u64::from(u32::MAX) { 16 } else { 8 };
    let offset = measure.len() as u64 + mdat_header_len;
    moof.traf[0].trun[0].data_offset =
        Some(i32::try_from(offset).map_err(|_| Mp4Error::Invalid(format!("moof of {offset} bytes")))?);
    moof.encode(out).map_err(atom("moof"))?;
    if mdat_header_len == 16 {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&(payload + 16).to_be_bytes());
    } else {
        out.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
    }
    Ok(payload)
}

/// Reads the codec parameters from a decoded `moov`'s first video sample entry.
pub fn params_from_moov(moov: &mp4_atom::Moov) -> Result<StreamParams, Mp4Error> {
    let trak = moov
        .trak
        .first()
        .ok_or_else(|| Mp4Error::Invalid("moov has no track".into()))?;
    let codec = trak
        .mdia
        .minf
        .stbl
        .stsd
        .codecs
        .first()
        .ok_or_else(|| Mp4Error::Invalid("track has no sample entry".into()))?;
    match codec {
        mp4_atom::Codec::Avc1(avc1) => {
            let (Some(sps), Some(pps)) = (
                avc1.avcc.sequence_parameter_sets.first(),
                avc1.avcc.picture_parameter_sets.first(),
            ) else {
                return Err(Mp4Error::Invalid("avcC without SPS or PPS".into()));
            };
            Ok(StreamParams::h264(sps, pps)?)
        }
        mp4_atom::Codec::Hvc1(hvc1) => hevc_params(&hvc1.hvcc),
        mp4_atom::Codec::Hev1(hev1) => hevc_params(&hev1.hvcc),
        other => Err(Mp4Error::Invalid(format!(
            "unsupported sample entry {:?}",
            std::mem::discriminant(other)
        ))),
    }
}

fn hevc_params(hvcc: &mp4_atom::Hvcc) -> Result<StreamParams, Mp4Error> {
    let find = |ty: u8, what: &str| {
        hvcc.arrays
            .iter()
            .find(|a| a.nal_unit_type == ty)
            .and_then(|a| a.nalus.first())
            .ok_or_else(|| Mp4Error::Invalid(format!("hvcC without {what}")))
    };
    let vps = find(crate::h265::NAL_VPS, "VPS")?;
    let sps = find(crate::h265::NAL_SPS, "SPS")?;
    let pps = find(crate::h265::NAL_PPS, "PPS")?;
    Ok(StreamParams::h265(vps, sps, pps)?)
}

/// Decodes a `moov` box from its bytes (header included).
pub fn decode_moov(bytes: &[u8]) -> Result<mp4_atom::Moov, Mp4Error> {
    crate::moov_guard::check_moov(bytes)?;
    let mut buf = bytes;
    mp4_atom::Moov::decode(&mut buf).map_err(atom("moov"))
}

/// The samples one `moof` describes, as Sharpeye writes them: one track, one run, explicit
/// per-sample durations and sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentSamples {
    /// `mfhd` sequence number.
    pub sequence: u32,
    /// `tfdt` base media decode time (90 kHz).
    pub base_media_time: u64,
    /// Offset of the first payload byte from the start of the `moof`.
    pub data_offset: u64,
    /// The samples, in decode order.
    pub samples: Vec<Sample>,
}

impl FragmentSamples {
    /// Total payload bytes.
    pub fn payload_len(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.size)).sum()
    }

    /// Total duration in 90 kHz ticks.
    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }
}

/// Decodes a `moof` box (header included) into its sample table.
pub fn decode_moof(bytes: &[u8]) -> Result<FragmentSamples, Mp4Error> {
    let mut buf = bytes;
    let moof = mp4_atom::Moof::decode(&mut buf).map_err(atom("moof"))?;
    let [traf] = moof.traf.as_slice() else {
        return Err(Mp4Error::Invalid(format!("moof with {} tracks", moof.traf.len())));
    };
    let [trun] = traf.trun.as_slice() else {
        return Err(Mp4Error::Invalid(format!("traf with {} runs", traf.trun.len())));
    };
    let base_media_time = traf
        .tfdt
        .as_ref()
        .ok_or_else(|| Mp4Error::Invalid("traf without tfdt".into()))?
        .base_media_decode_time;
    let data_offset = trun
        .data_offset
        .and_then(|o| u64::try_from(o).ok())
        .ok_or_else(|| Mp4Error::Invalid("trun without a positive data offset".into()))?;
    let mp4_atom::TrunSamples::Explicit(entries) = &trun.samples else {
        return Err(Mp4Error::Invalid("trun without per-sample sizes".into()));
    };
    let samples = entries
        .iter()
        .map(|e| match (e.duration, e.size) {
            (Some(duration), Some(size)) => Ok(Sample {
                duration,
                size,
                key: e.flags.is_some_and(|f| f & 0x0001_0000 == 0),
            }),
            _ => Err(Mp4Error::Invalid("trun entry without duration or size".into())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FragmentSamples {
        sequence: moof.mfhd.sequence_number,
        base_media_time,
        data_offset,
        samples,
    })
}

/// Decodes a `prft` box (header included).
pub fn decode_prft(bytes: &[u8]) -> Result<ProducerTime, Mp4Error> {
    let mut buf = bytes;
    let prft = mp4_atom::Prft::decode(&mut buf).map_err(atom("prft"))?;
    Ok(ProducerTime {
        wall: WallTime::from_ntp(prft.ntp_timestamp),
        media_time: prft.media_time,
    })
}

/// Checks that `bytes` starts with a box of kind `T` (used by readers that walk boxes by hand).
pub fn is_kind<T: Atom>(fourcc: [u8; 4]) -> bool {
    T::KIND == mp4_atom::FourCC::new(&fourcc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annexb::nal_units;

    fn h264_params() -> StreamParams {
        let s: &[u8] = include_bytes!("../../../tests/fixtures/h264_240p.h264");
        let sps = nal_units(s).find(|n| n[0] & 0x1f == 7).unwrap();
        let pps = nal_units(s).find(|n| n[0] & 0x1f == 8).unwrap();
        StreamParams::h264(sps, pps).unwrap()
    }

    fn h265_params() -> StreamParams {
        let s: &[u8] = include_bytes!("../../../tests/fixtures/h265_240p.h265");
        let get = |t| nal_units(s).find(|n| crate::h265::nal_type(n[0]) == t).unwrap();
        StreamParams::h265(get(32), get(33), get(34)).unwrap()
    }

    #[test]
    fn init_segment_round_trips_params() {
        for params in [h264_params(), h265_params()] {
            let mut out = Vec::new();
            write_ftyp(&mut out).unwrap();
            let ftyp_len = out.len();
            write_moov(&params, &mut out).unwrap();
            let moov = decode_moov(&out[ftyp_len..]).unwrap();
            assert_eq!(params_from_moov(&moov).unwrap(), params);
        }
    }

    #[test]
    fn fragment_header_round_trips() {
        let samples = [
            Sample {
                duration: 3600,
                size: 1000,
                key: true,
            },
            Sample {
                duration: 3600,
                size: 200,
                key: false,
            },
            Sample {
                duration: 3599,
                size: 300,
                key: false,
            },
        ];
        let wall = WallTime::from_micros(1_763_000_000_000_000);
        let mut out = Vec::new();
        let payload = write_fragment_header(
            &mut out,
            7,
            90_000,
            &samples,
            Some(ProducerTime {
                wall,
                media_time: 90_000,
            }),
        )
        .unwrap();
        assert_eq!(payload, 1500);
        let prft_len = u32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(decode_prft(&out[..prft_len]).unwrap().wall, wall);
        let moof_len = u32::from_be_bytes(out[prft_len..prft_len + 4].try_into().unwrap()) as usize;
        let frag = decode_moof(&out[prft_len..prft_len + moof_len]).unwrap();
        assert_eq!(frag.samples, samples);
        assert_eq!(frag.sequence, 7);
        assert_eq!(frag.base_media_time, 90_000);
        assert_eq!(frag.data_offset, moof_len as u64 + 8);
        assert_eq!(&out[prft_len + moof_len + 4..prft_len + moof_len + 8], b"mdat");
        assert_eq!(out.len(), prft_len + moof_len + 8);
    }

    #[test]
    fn decode_moof_rejects_garbage() {
        assert!(decode_moof(&[]).is_err());
        assert!(decode_moof(&[0, 0, 0, 8, b'm', b'o', b'o', b'f']).is_err());
        assert!(decode_moof(&[0xff; 64]).is_err());
    }
}
