//! MANSRTSP (GB/T 28181 Annex B): RTSP-style playback control carried in INFO bodies of an
//! established playback dialog.

/// `PLAY` at `scale` (1.0 normal, 2.0 double speed, 0.5 half; negative is reverse in the 2022
/// edition), from `npt_from` seconds after the playback's start if given, else from now.
pub fn play(cseq: u32, scale: Option<f64>, npt_from: Option<f64>) -> String {
    let mut s = format!("PLAY RTSP/1.0\r\nCSeq: {cseq}\r\n");
    if let Some(x) = scale {
        s.push_str(&format!("Scale: {x:.2}\r\n"));
    }
    match npt_from {
        Some(t) => s.push_str(&format!("Range: npt={t:.3}-\r\n")),
        None if scale.is_none() => s.push_str("Range: npt=now-\r\n"),
        None => {}
    }
    s
}

/// `PAUSE` now.
pub fn pause(cseq: u32) -> String {
    format!("PAUSE RTSP/1.0\r\nCSeq: {cseq}\r\nPauseTime: now\r\n")
}

/// The `Scale:` of a MANSRTSP body, if any (what a device reads).
pub fn scale_of(body: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("scale"))
        })
        .and_then(|(_, v)| v.trim().parse().ok())
        .filter(|x: &f64| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(play(7, None, None), "PLAY RTSP/1.0\r\nCSeq: 7\r\nRange: npt=now-\r\n");
        assert_eq!(play(9, Some(2.0), None), "PLAY RTSP/1.0\r\nCSeq: 9\r\nScale: 2.00\r\n");
        assert!(play(10, None, Some(100.0)).contains("Range: npt=100.000-"));
        assert!(pause(8).starts_with("PAUSE RTSP/1.0\r\nCSeq: 8\r\n"));
        assert_eq!(scale_of(&play(9, Some(0.5), None)), Some(0.5));
        assert_eq!(scale_of("PLAY RTSP/1.0\r\nScale: fast\r\n"), None);
        assert_eq!(scale_of("PLAY RTSP/1.0\r\nScale: NaN\r\n"), None);
    }
}
