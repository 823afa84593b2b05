//! The event log's files and the webhook subscriptions are read back at start-up: any bytes as
//! a log line, a segment file or a subscriptions file are decoded or cut, never a panic, and a
//! log opened over damaged bytes still numbers on from its last whole event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(e) = eventlog::Stored::parse(text) {
            assert!(e.seq > 0);
            assert_eq!(eventlog::Stored::parse(&e.line).unwrap(), e);
        }
    }
    if let Ok(n) = serde_json::from_slice::<eventlog::webhook::NewSubscription>(data) {
        let _ = n.check("w".into(), "fuzz", 0, 10, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events-00000000000000000001.jsonl"), data).unwrap();
    std::fs::write(dir.path().join("webhooks.json"), data).unwrap();
    let _ = eventlog::webhook::Subscriptions::open(&dir.path().join("webhooks.json"));
    let opened = eventlog::EventLog::open(dir.path(), eventlog::Limits { keep_events: 100, segment_events: 10, tail: 4 }).unwrap();
    let last = opened.last_seq;
    let all = opened.log.read_after(0, 1000).unwrap();
    assert_eq!(all.last().map_or(0, |e| e.seq), last);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(opened.log.append(0, "fuzz", None, serde_json::Value::Null).seq, last + 1);
});
