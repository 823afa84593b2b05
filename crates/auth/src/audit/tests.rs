//! The audit log against concurrent appends, rotation, crashes, every kind of tampering and a
//! simulated clock.

use super::*;

fn ev(i: usize) -> Event {
    Event {
        actor: format!("user{}", i % 3),
        ip: Some("10.0.0.1".into()),
        action: if i.is_multiple_of(2) {
            "live.start".into()
        } else {
            "playback".into()
        },
        outcome: "ok".into(),
        camera: Some(format!("cam{}", i % 4)),
        target: None,
        reason: i.is_multiple_of(5).then(|| "case \"7\"\n\u{1F4F9}".into()),
        detail: serde_json::json!({ "i": i }),
        on_behalf_of: None,
    }
}

fn small() -> AuditConfig {
    AuditConfig {
        max_file_bytes: 2000,
        max_batch: 16,
        ..AuditConfig::default()
    }
}

fn log_with(n: usize, config: AuditConfig) -> (tempfile::TempDir, AuditLog) {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&d.path().join("audit"), config).unwrap();
    for i in 0..n {
        log.append_blocking(ev(i)).unwrap();
    }
    (d, log)
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_line_is_byte_for_byte_the_documented_form() {
    // The hash covers the line's bytes: the field order and forms must never change.
    let clock = Arc::new(media::clock::SimClock::new(media::WallTime::from_micros(
        1_795_420_800_123_456,
    )));
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("audit");
    let log = AuditLog::open(
        &dir,
        AuditConfig {
            clock,
            ..AuditConfig::default()
        },
    )
    .unwrap();
    let mut e = ev(5);
    e.ip = Some("10.0.0.1".into());
    log.append_blocking(e).unwrap();
    drop(log);
    let line = lines_of(&files(&dir).unwrap()[0].1).remove(0);
    let (sealed, _) = line.split_at(line.rfind(",\"hash\":\"").unwrap());
    let expected = concat!(
        r#"{"seq":1,"at":"2026-11-23T08:00:00.123456Z","actor":"user2","ip":"10.0.0.1","#,
        r#""action":"playback","outcome":"ok","camera":"cam1","target":null,"#,
        r#""reason":"case \"7\"\n📹","detail":{"i":5},"prev":""#,
    );
    assert_eq!(sealed, format!("{expected}{}\"", "0".repeat(64)));
    let r: Record = serde_json::from_str(&line).unwrap();
    assert_eq!(r.event.actor, "user2");
    assert_eq!(serde_json::to_string(&r).unwrap(), line);
}

#[test]
fn entries_carry_the_injected_clock_and_never_go_back_in_time() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("audit");
    let clock = Arc::new(media::clock::SimClock::new(media::WallTime::from_micros(
        1_800_000_000_000_000,
    )));
    let log = AuditLog::open(
        &dir,
        AuditConfig {
            clock: clock.clone(),
            ..AuditConfig::default()
        },
    )
    .unwrap();
    log.append_blocking(ev(0)).unwrap();
    clock.advance(std::time::Duration::from_secs(90 * 86_400));
    log.append_blocking(ev(1)).unwrap();
    // A clock stepped back (NTP, an operator) does not reorder the chain's times.
    clock.set(media::WallTime::from_micros(1_700_000_000_000_000));
    log.append_blocking(ev(2)).unwrap();
    let all = query(&dir, &Filter::default(), 10).unwrap().0;
    let at: Vec<i64> = all.iter().map(|r| r.at_us().unwrap()).collect();
    assert_eq!(
        at,
        [1_800_000_000_000_000, 1_807_776_000_000_000, 1_807_776_000_000_000]
    );
    assert_eq!(verify(&dir).unwrap().entries, 3);
    // Filters by time work on simulated days as on real ones.
    let late = query(
        &dir,
        &Filter {
            start_us: Some(1_807_000_000_000_000),
            ..Filter::default()
        },
        10,
    )
    .unwrap()
    .0;
    assert_eq!(late.len(), 2);
}

#[test]
fn concurrent_appends_chain_and_query() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("audit");
    let log = Arc::new(AuditLog::open(&dir, AuditConfig::default()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..125)
                    .map(|i| log.append_blocking(ev(t * 125 + i)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    assert!(log.stats().syncs <= 1000 && log.stats().entries == 1000);
    let r = verify(&dir).unwrap();
    assert_eq!((r.entries, r.files), (1000, 1));
    let all = query(&dir, &Filter::default(), 10_000).unwrap().0;
    assert_eq!(all.len(), 1000);
    assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq && w[0].at <= w[1].at));
    let f = |f: Filter| query(&dir, &f, 10_000).unwrap().0;
    let user1 = f(Filter {
        actor: Some("user1".into()),
        ..Default::default()
    });
    assert!(!user1.is_empty() && user1.iter().all(|r| r.event.actor == "user1"));
    let live = f(Filter {
        action: Some("live.".into()),
        camera: Some("cam2".into()),
        ..Default::default()
    });
    assert!(
        !live.is_empty()
            && live
                .iter()
                .all(|r| r.event.action == "live.start" && r.event.camera.as_deref() == Some("cam2"))
    );
    assert!(
        f(Filter {
            action: Some("live".into()),
            ..Default::default()
        })
        .is_empty()
    );
    let (page, more) = query(
        &dir,
        &Filter {
            after_seq: Some(990),
            ..Default::default()
        },
        5,
    )
    .unwrap();
    assert!(more);
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [991, 992, 993, 994, 995]
    );
    let mid = all[500].at_us().unwrap();
    let later = f(Filter {
        start_us: Some(mid),
        ..Default::default()
    });
    assert!(later.iter().all(|r| r.at_us().unwrap() >= mid) && later.len() >= 499);
    let none = f(Filter {
        end_us: Some(all[0].at_us().unwrap()),
        ..Default::default()
    });
    assert!(none.is_empty());
}

#[test]
fn rotates_and_continues_across_reopen() {
    let (d, log) = log_with(60, small());
    let dir = d.path().join("audit");
    drop(log);
    let n_files = files(&dir).unwrap().len();
    assert!(n_files >= 5, "{n_files} files");
    let log = AuditLog::open(&dir, small()).unwrap();
    assert_eq!(log.append_blocking(ev(60)).unwrap(), 61);
    drop(log);
    let r = verify(&dir).unwrap();
    assert_eq!(r.entries, 61);
    let after = query(
        &dir,
        &Filter {
            after_seq: Some(50),
            ..Default::default()
        },
        100,
    )
    .unwrap()
    .0;
    assert_eq!(after.first().map(|r| r.seq), Some(51));
    assert_eq!(after.len(), 11);
    // The files are named after their first entries.
    for (first, path) in files(&dir).unwrap() {
        let l = lines_of(&path);
        let r: Record = serde_json::from_str(&l[0]).unwrap();
        assert_eq!(r.seq, first);
    }
}

/// Tampers with a fresh 20-entry log's file and returns verify's verdict.
fn tampered(f: impl FnOnce(&mut Vec<String>)) -> VerifyError {
    let (d, log) = log_with(20, AuditConfig::default());
    drop(log);
    let dir = d.path().join("audit");
    let path = files(&dir).unwrap()[0].1.clone();
    let mut l = lines_of(&path);
    f(&mut l);
    std::fs::write(&path, l.join("\n") + "\n").unwrap();
    verify(&dir).unwrap_err()
}

#[test]
fn every_kind_of_tampering_is_found_at_its_entry() {
    let e = tampered(|l| l[6] = l[6].replacen("user", "usEr", 1));
    assert_eq!((e.line, e.seq), (7, Some(7)));
    assert!(e.why.contains("edited"), "{e}");
    let e = tampered(|l| {
        l.remove(6);
    });
    assert_eq!((e.line, e.seq), (7, Some(8)));
    let e = tampered(|l| l.swap(6, 7));
    assert_eq!((e.line, e.seq), (7, Some(8)));
    let e = tampered(|l| {
        let dup = l[6].clone();
        l.insert(7, dup);
    });
    assert_eq!((e.line, e.seq), (8, Some(7)));
    // Re-hashing an edited entry does not help: the next entry's prev gives it away.
    let e = tampered(|l| {
        let mut r: Record = serde_json::from_str(&l[6]).unwrap();
        r.event.actor = "someone-else".into();
        let sealed_end = l[6].rfind(",\"hash\":\"").unwrap();
        let edited = l[6][..sealed_end].replace(&format!("\"actor\":\"user{}\"", 6 % 3), "\"actor\":\"someone-else\"");
        let h = seal(&r.prev, edited.as_bytes());
        l[6] = format!("{edited},\"hash\":\"{h}\"}}");
    });
    assert_eq!((e.line, e.seq), (8, Some(8)));
    assert!(e.why.contains("prev"), "{e}");
    let e = tampered(|l| l[3] = "{not json".into());
    assert_eq!((e.line, e.seq), (4, None));
    assert!(
        e.to_string()
            .starts_with("audit-000000000001.jsonl line 4: not an audit entry"),
        "{e}"
    );
}

#[test]
fn a_missing_middle_file_is_found() {
    let (d, log) = log_with(60, small());
    drop(log);
    let dir = d.path().join("audit");
    let list = files(&dir).unwrap();
    std::fs::remove_file(&list[2].1).unwrap();
    let e = verify(&dir).unwrap_err();
    assert_eq!(e.file, list[3].1.file_name().unwrap().to_str().unwrap());
    assert!(e.why.contains("missing"), "{e}");
}

#[test]
fn a_torn_last_line_is_cut_at_open_and_the_chain_goes_on() {
    let (d, log) = log_with(10, AuditConfig::default());
    drop(log);
    let dir = d.path().join("audit");
    let path = files(&dir).unwrap()[0].1.clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let torn = b"{\"seq\":11,\"at\":\"2026-";
    bytes.extend_from_slice(torn);
    std::fs::write(&path, &bytes).unwrap();
    let e = verify(&dir).unwrap_err();
    assert_eq!(e.line, 11);
    assert!(e.why.contains("incomplete"), "{e}");
    let log = AuditLog::open(&dir, AuditConfig::default()).unwrap();
    assert_eq!(log.recovered_bytes(), torn.len() as u64);
    assert_eq!(log.append_blocking(ev(10)).unwrap(), 11);
    drop(log);
    assert_eq!(verify(&dir).unwrap().entries, 11);
}

#[test]
fn a_broken_last_entry_closes_the_log_for_appends() {
    let (d, log) = log_with(5, AuditConfig::default());
    drop(log);
    let dir = d.path().join("audit");
    let path = files(&dir).unwrap()[0].1.clone();
    let mut l = lines_of(&path);
    let last = l.len() - 1;
    l[last] = l[last].replacen("\"actor\":\"user", "\"actor\":\"User", 1);
    std::fs::write(&path, l.join("\n") + "\n").unwrap();
    let log = AuditLog::open(&dir, AuditConfig::default()).unwrap();
    let e = log.append_blocking(ev(5)).unwrap_err();
    assert!(matches!(e, AuditError::Closed { .. }), "{e}");
    assert!(e.to_string().contains("audit verify"), "{e}");
    assert!(log.flush().is_err());
    assert_eq!(log.stats().failures, 1);
}

#[test]
fn fire_and_forget_entries_become_durable_by_flush_and_drop() {
    let (d, log) = log_with(0, AuditConfig::default());
    for i in 0..100 {
        log.record(ev(i));
    }
    log.flush().unwrap();
    assert_eq!(log.stats().entries, 100);
    log.record(ev(100));
    drop(log);
    assert_eq!(verify(&d.path().join("audit")).unwrap().entries, 101);
}

#[test]
fn one_writer_per_directory() {
    let (d, log) = log_with(1, AuditConfig::default());
    let dir = d.path().join("audit");
    let e = AuditLog::open(&dir, AuditConfig::default()).unwrap_err();
    assert!(matches!(e, AuditError::Locked { .. }), "{e}");
    drop(log);
    let again = AuditLog::open(&dir, AuditConfig::default()).unwrap();
    assert_eq!(again.append_blocking(ev(1)).unwrap(), 2);
}

#[test]
fn huge_lines_are_not_read_whole() {
    let (d, log) = log_with(3, AuditConfig::default());
    drop(log);
    let dir = d.path().join("audit");
    let path = files(&dir).unwrap()[0].1.clone();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&vec![b'x'; MAX_LINE * 3]).unwrap();
    f.write_all(b"\n").unwrap();
    let e = verify(&dir).unwrap_err();
    assert_eq!(e.line, 4);
    assert!(e.why.contains("longer than"), "{e}");
    assert!(query(&dir, &Filter::default(), 10).is_err());
}

#[test]
fn hostile_directories_give_errors_not_panics() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("audit");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.join("audit-xyz.jsonl"), b"junk").unwrap();
    assert_eq!(verify(&dir).unwrap().entries, 0);
    std::fs::write(dir.join(file_name(1)), [0xff, 0xfe, 0, 1, b'\n']).unwrap();
    assert!(verify(&dir).is_err());
    assert!(query(&dir, &Filter::default(), 10).unwrap().0.is_empty());
    let log = AuditLog::open(&dir, AuditConfig::default()).unwrap();
    assert!(
        log.append_blocking(ev(0)).is_err(),
        "a garbage last entry is not continued"
    );
    std::fs::write(dir.join(file_name(1)), b"").unwrap();
    drop(log);
    let log = AuditLog::open(&dir, AuditConfig::default()).unwrap();
    assert_eq!(log.append_blocking(ev(0)).unwrap(), 1);
    assert!(matches!(verify(&d.path().join("missing")), Ok(r) if r.entries == 0));
}
