//! Annex B byte streams (start-code delimited NAL units), as encoders write `.h264`/`.h265`
//! files and as some cameras and PS streams carry video.

/// Iterates over the NAL units of an Annex B byte stream, without their start codes.
///
/// Accepts 3- and 4-byte start codes; bytes before the first start code are skipped; trailing
/// zero bytes of a NAL unit (part of the next 4-byte start code) are dropped. Empty NAL units are
/// not returned.
pub fn nal_units(stream: &[u8]) -> NalUnits<'_> {
    let start = find_start_code(stream, 0).map(|(_, end)| end);
    NalUnits { stream, next: start }
}

/// The iterator returned by [`nal_units`].
pub struct NalUnits<'a> {
    stream: &'a [u8],
    next: Option<usize>,
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let begin = self.next?;
            let (end, after) = match find_start_code(self.stream, begin) {
                Some((sc, after)) => (sc, Some(after)),
                None => (self.stream.len(), None),
            };
            self.next = after;
            let mut nal = &self.stream[begin..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    }
}

/// Finds the next `00 00 01` at or after `from`; returns (its position, position after it).
fn find_start_code(s: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= s.len() {
        if s[i + 2] > 1 {
            i += 3;
        } else if s[i] == 0 && s[i + 1] == 0 && s[i + 2] == 1 {
            return Some((i, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let s = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let nals: Vec<&[u8]> = nal_units(&s).collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
    }

    #[test]
    fn garbage_without_start_code_yields_nothing() {
        assert_eq!(nal_units(&[1, 2, 3, 4, 5]).count(), 0);
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1, 0, 0, 1]).count(), 0);
    }

    #[test]
    fn keeps_zero_bytes_inside_a_nal() {
        let s = [0, 0, 1, 0x41, 0, 0, 3, 0, 7];
        let nals: Vec<&[u8]> = nal_units(&s).collect();
        assert_eq!(nals, vec![&[0x41, 0, 0, 3, 0, 7][..]]);
    }
}
