//! What a cluster member reads from others: another member's HLS playlist (the segments it
//! names), member entries from etcd, and the recording gate driven by any sequence of claims,
//! lease changes and frames — which must never admit a frame without a claim and a lease, nor
//! start anywhere but at a key frame.
#![no_main]

use std::time::{Duration, Instant};

use cluster::etcd::Kv;
use cluster::{Admit, Gates};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (seq, t) in cluster::peers::playlist_segments(&text) {
        assert!(text.contains(&format!("segments/{seq}.mp4?")), "{seq} {t}");
    }
    let kv = Kv {
        key: format!("/sharpeye/f/members/{}", text.chars().take(20).collect::<String>()),
        value: data.to_vec(),
        create_revision: 1,
        mod_revision: 1,
        lease: 1,
    };
    if let Some(m) = cluster::membership::member_from(&kv, "/sharpeye/f/members/") {
        assert!(m.weight.is_finite() && m.weight > 0.0 && m.weight <= 1000.0);
        assert!(m.url.chars().count() <= 512);
    }

    // The gate under any sequence of events.
    let t0 = Instant::now();
    let gates = Gates::default();
    let g = gates.camera("cam");
    let mut writing = false;
    let mut now = t0;
    for (i, op) in data.iter().enumerate() {
        now += Duration::from_millis(u64::from(op >> 4) * 50);
        let wall = i as i64 * 40_000;
        match op & 0x0f {
            0 => gates.lease().hold_until(now + Duration::from_millis(u64::from(op >> 4) * 200)),
            1 => gates.lease().lose(),
            2 => gates.open("cam", i64::from(*op), None),
            3 => {
                let _ = gates.close_at_key("cam");
            }
            4 => gates.close("cam"),
            k => {
                let key = k % 2 == 1;
                match g.admit(key, wall, now) {
                    Admit::Write(_) => assert!(
                        writing && gates.lease().holds(now) && g.claimed(),
                        "a frame written without its lease and claim, or outside a run started at a key frame"
                    ),
                    Admit::Await => {
                        if key && g.begin(wall, now).is_some() {
                            writing = true;
                        }
                    }
                    Admit::End => writing = false,
                    Admit::Skip => {}
                }
            }
        }
        writing = writing && g.writing();
    }
});
