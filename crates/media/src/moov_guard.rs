//! A pre-check of a `moov` box's sample-group descriptions before `mp4-atom` decodes it.
//!
//! Why this exists: `mp4-atom` 0.17 decodes a version-0 `sgpd` entry of a grouping type it does
//! not know by reading the rest of the box, so every later entry reads nothing — and it runs the
//! loop `entry_count` times, a number taken from the input. A `moov` under 1 KB could ask for
//! billions of entries (found by the `fmp4_stream` fuzz target; the stream a lower node relays
//! is outside input). `mp4-atom` decodes an `sgpd` wherever one appears, also among the child
//! boxes of a sample entry, so every place in the `moov` that could hold one is checked: each
//! `sgpd` box header that fits must be able to hold the entries it declares. No maintained crate
//! offers this, so it is written here.

use crate::fmp4::Mp4Error;

/// The one grouping type `mp4-atom` decodes with a structure of its own (at least 5 bytes).
const REFS: &[u8; 4] = b"refs";

/// Checks every `sgpd` inside the `moov` box that `bytes` starts with (header included; bytes
/// after the box, such as the next box's header, are not looked at).
pub fn check_moov(bytes: &[u8]) -> Result<(), Mp4Error> {
    if bytes.len() < 8 {
        return Err(malformed("cut short before its header"));
    }
    let (_, _, size) = header(bytes)?;
    let moov = &bytes[..size];
    // Every `sgpd` type code with a box size before it that fits what follows is a box the
    // decoder may read; a size that does not fit makes the decoder stop before the body.
    for at in 4..moov.len().saturating_sub(3) {
        if &moov[at..at + 4] != b"sgpd" {
            continue;
        }
        if let Ok((_, head, len)) = header(&moov[at - 4..]) {
            check_sgpd(&moov[at - 4 + head..at - 4 + len])?;
        }
    }
    Ok(())
}

/// Returns the box type, its header length and its whole length, checked against `bytes`.
fn header(bytes: &[u8]) -> Result<([u8; 4], usize, usize), Mp4Error> {
    if bytes.len() < 8 {
        return Err(malformed("box header cut short"));
    }
    let size32 = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let kind = [bytes[4], bytes[5], bytes[6], bytes[7]];
    let (header, size) = match size32 {
        0 => (8, bytes.len() as u64),
        1 => {
            let large = bytes.get(8..16).ok_or_else(|| malformed("64-bit box size cut short"))?;
            let mut be = [0u8; 8];
            be.copy_from_slice(large);
            (16, u64::from_be_bytes(be))
        }
        n => (8, u64::from(n)),
    };
    if size < header as u64 || size > bytes.len() as u64 {
        return Err(malformed(&format!(
            "box {} claims {size} bytes but {} remain",
            String::from_utf8_lossy(&kind),
            bytes.len()
        )));
    }
    Ok((kind, header, size as usize))
}

fn check_sgpd(body: &[u8]) -> Result<(), Mp4Error> {
    let mut at = 0usize;
    let mut word = |what: &str| -> Result<u32, Mp4Error> {
        let b = body
            .get(at..at + 4)
            .ok_or_else(|| malformed(&format!("sgpd cut short before its {what}")))?;
        at += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let version = word("version")? >> 24;
    let grouping = word("grouping type")?.to_be_bytes();
    let default_length = if version >= 1 {
        Some(word("default length")?)
    } else {
        None
    };
    if version >= 2 {
        word("default description index")?;
    }
    let count = u64::from(word("entry count")?);
    let room = (body.len() - at) as u64;
    let needed = if &grouping == REFS {
        count * 5
    } else {
        match default_length {
            // Each entry says its own length in 4 bytes.
            Some(0) => count * 4,
            Some(len) => count * u64::from(len),
            // Version 0: the first entry takes the rest of the box, so only one can be real.
            None if count > 1 => {
                return Err(malformed(&format!(
                    "version 0 sgpd of an unknown grouping type declares {count} entries; only one fits"
                )));
            }
            None => 0,
        }
    };
    if needed > room {
        return Err(malformed(&format!(
            "sgpd declares {count} entries needing {needed} bytes but holds {room}"
        )));
    }
    Ok(())
}

fn malformed(why: &str) -> Mp4Error {
    Mp4Error::Invalid(format!("moov: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn sgpd(version: u8, grouping: &[u8; 4], extra: &[u32], count: u32, entries: &[u8]) -> Vec<u8> {
        let mut body = vec![version, 0, 0, 0];
        body.extend_from_slice(grouping);
        for w in extra {
            body.extend_from_slice(&w.to_be_bytes());
        }
        body.extend_from_slice(&count.to_be_bytes());
        body.extend_from_slice(entries);
        boxed(b"sgpd", &body)
    }

    fn in_moov(inner: Vec<u8>) -> Vec<u8> {
        let stbl = boxed(b"stbl", &inner);
        let minf = boxed(b"minf", &stbl);
        let mdia = boxed(b"mdia", &minf);
        let trak = boxed(b"trak", &mdia);
        boxed(b"moov", &trak)
    }

    #[test]
    fn a_huge_entry_count_in_a_tiny_sgpd_is_refused() {
        let moov = in_moov(sgpd(0, b"vide", &[], 0x7669_6465, b""));
        let err = check_moov(&moov).unwrap_err().to_string();
        assert!(err.contains("only one fits"), "{err}");
        let moov = in_moov(sgpd(1, b"roll", &[2], 1000, &[0; 10]));
        let err = check_moov(&moov).unwrap_err().to_string();
        assert!(err.contains("needing 2000 bytes but holds 10"), "{err}");
        let moov = in_moov(sgpd(2, b"refs", &[0, 1], 3, &[0; 14]));
        assert!(check_moov(&moov).is_err());
    }

    #[test]
    fn sample_groups_that_fit_pass() {
        assert!(check_moov(&in_moov(sgpd(0, b"roll", &[], 1, &[0, 1]))).is_ok());
        assert!(check_moov(&in_moov(sgpd(1, b"roll", &[2], 3, &[0; 6]))).is_ok());
        assert!(check_moov(&in_moov(sgpd(1, b"seig", &[0], 2, &[0; 8]))).is_ok());
        assert!(check_moov(&in_moov(sgpd(2, b"refs", &[0, 1], 2, &[0; 10]))).is_ok());
        assert!(check_moov(&in_moov(Vec::new())).is_ok());
    }

    #[test]
    fn an_sgpd_hidden_among_a_sample_entry_s_children_is_found() {
        // mp4-atom decodes the child boxes of a sample entry as any box, sgpd included.
        let mut entry = vec![0u8; 78];
        entry.extend(sgpd(0, b"vide", &[], 0x7669_6465, b""));
        let moov = in_moov(boxed(b"stsd", &boxed(b"hvc1", &entry)));
        assert!(check_moov(&moov).unwrap_err().to_string().contains("only one fits"));
    }

    #[test]
    fn a_moov_overrunning_its_bytes_or_cut_short_is_refused() {
        let mut moov = in_moov(sgpd(0, b"roll", &[], 1, &[0, 1]));
        moov[3] += 1;
        assert!(check_moov(&moov).is_err());
        assert!(check_moov(&[0, 0, 0, 1, b'm', b'o', b'o', b'v', 0]).is_err());
        assert!(check_moov(&[0, 0, 0]).is_err());
        // An sgpd too short for its own fields.
        assert!(check_moov(&in_moov(boxed(b"sgpd", &[0, 0, 0]))).is_err());
        // "sgpd" bytes inside other data, with no size that fits before them, are not a box.
        let mut name = b"free".to_vec();
        name.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        name.extend_from_slice(b"sgpd");
        assert!(check_moov(&in_moov(boxed(b"udta", &name))).is_ok());
        let mut followed = in_moov(sgpd(0, b"roll", &[], 1, &[0, 1]));
        followed.extend_from_slice(&[0, 0, 0x10, 0, b'm', b'd', b'a', b't']);
        assert!(
            check_moov(&followed).is_ok(),
            "the next box's header is not the moov's business"
        );
    }
}
