//! What a lower node may send an upper: its camera listing (any JSON), its event stream (any
//! bytes) and signed audit heads: read, checked and left out where wrong, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok((ok, _)) = hierarchy::catalog::parse_listing(&v, "lower") {
            for c in ok {
                assert!(c.id.len() <= 64 && !c.id.contains('/'));
                let _ = c.path_from_here("lower");
            }
        }
        if let Ok(h) = serde_json::from_value::<auth::audit::heads::SignedHead>(v) {
            let _ = h.verify(None);
        }
    }
    let mut p = hierarchy::sse::SseParser::default();
    if p.push(data).is_ok() {
        while p.poll().is_some() {}
    }
});
