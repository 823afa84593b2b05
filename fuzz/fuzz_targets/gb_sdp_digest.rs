//! The small GB/T 28181 text parsers: the device's SDP answer, a digest `Authorization` value
//! and a device-local time. The input is cut in three at its first two 0xFF bytes (neither
//! UTF-8 nor GB18030 text holds one); any part gives a value or an error, never a panic.
#![no_main]
use gb28181::digest::Credentials;
use gb28181::gbtime;
use gb28181::sdp::Answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0xFF);
    let sdp = parts.next().unwrap_or_default();
    let auth = parts.next().unwrap_or_default();
    let time = parts.next().unwrap_or_default();

    if let Ok(a) = Answer::parse(sdp) {
        let _ = (a.ip, a.port, a.tcp, a.ssrc);
    }

    let auth = String::from_utf8_lossy(auth);
    if let Ok(c) = Credentials::parse(&auth) {
        let _ = c.verify("REGISTER", "pw");
        assert_eq!(c.expected("REGISTER", "pw").len(), 32);
    }

    let time = String::from_utf8_lossy(time);
    if let Some(t) = gbtime::parse(&time, 28_800) {
        // Whatever parses maps back to the same second (leap second 60 excepted).
        let again = gbtime::format_secs(t, 28_800);
        if !time.trim().get(17..19).is_some_and(|s| s == "60") {
            assert_eq!(gbtime::parse(&again, 28_800), Some(t), "{time:?} -> {t} -> {again:?}");
        }
    }
});
