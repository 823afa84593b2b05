//! Department isolation across HTTP, RTSP and WHEP, and the audit log: every audited action
//! makes exactly one entry, and `sharpeye audit verify` finds any edit, deletion or reordering
//! of the file at the entry where it was made.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `rtsp://user:password@.../cameras/{camera}` answered: the DESCRIBE status.
fn rtsp_describe(rtsp: std::net::SocketAddr, camera: &str, user: &str) -> u16 {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"));
    raw_rtsp(
        rtsp,
        &format!("DESCRIBE rtsp://{rtsp}/cameras/{camera} RTSP/1.0\r\nCSeq: 1\r\nAuthorization: Basic {basic}\r\n\r\n"),
    )
    .0
}

/// `sharpeye user add NAME --role viewer --department DEPT` with the test node's config and the
/// test password on stdin.
fn user_add(dir: &std::path::Path, name: &str, dept: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut add = Command::new(bin())
        .args([
            "user",
            "add",
            name,
            "--role",
            "viewer",
            "--department",
            dept,
            "--config",
        ])
        .arg(dir.join("sharpeye.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    add.wait_with_output().unwrap()
}

/// Reads a few bytes of live.mp4 and hangs up.
fn watch_live_mp4(url: &str, token: &str) -> u16 {
    let resp = ureq::get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        let mut buf = [0u8; 4096];
        resp.into_body().into_reader().read_exact(&mut buf).unwrap();
    }
    status
}

/// Listens to `/api/v1/events` with `token` for up to `secs`, collecting (kind, data).

#[test]
fn departments_are_isolated_and_every_access_is_audited_once() {
    let (sim, dir, mut node, rtsp) = permissions_node();
    let data = dir.path().join("data");
    let base = node.url("");
    let admin = node.token();
    let (a, b) = (login(&base, "viewer"), login(&base, "bviewer"));
    // Events, as each department sees them, while the test runs.
    let events_a = listen(&base, &login(&base, "dispatcher"), 25);
    let events_b = listen(&base, &b, 25);
    // A camera of department B stops sending (it goes offline about 10 s later).
    sim.cam("cam2").go_dark();

    // --- Isolation: each department's viewer sees and reaches only its own cameras. ---
    assert_eq!(
        ids(&get_json(&format!("{base}/api/v1/cameras"), Some(&a)).1),
        ["cam0", "cam1"]
    );
    assert_eq!(
        ids(&get_json(&format!("{base}/api/v1/cameras"), Some(&b)).1),
        ["cam2", "cam3"]
    );
    assert_eq!(
        ids(&get_json(&format!("{base}/api/v1/cameras"), Some(&admin)).1).len(),
        4
    );
    for (token, own, other) in [(&a, "cam0", "cam2"), (&b, "cam3", "cam1")] {
        let detail = |cam: &str| get_json(&format!("{base}/api/v1/cameras/{cam}"), Some(token));
        assert_eq!(detail(own).0, 200);
        let (s, body) = detail(other);
        assert_eq!(s, 404);
        // The answer for another department's camera is the one for a camera that does not exist.
        let (_, missing) = detail("no-such-camera");
        assert_eq!(
            body["error"]["message"].as_str().unwrap().replace(other, "X"),
            missing["error"]["message"]
                .as_str()
                .unwrap()
                .replace("no-such-camera", "X")
        );
        // Live over HTTP.
        assert_eq!(
            watch_live_mp4(&format!("{base}/api/v1/cameras/{own}/live.mp4"), token),
            200
        );
        assert_eq!(
            watch_live_mp4(&format!("{base}/api/v1/cameras/{other}/live.mp4"), token),
            404
        );
        // WHEP: a real session on their own camera; the other department's is not there.
        let frames = testkit::whep_watch(&base, own, token, 2.0);
        assert!(frames >= 10, "WHEP on {own}: {frames} frames");
        let (s, _) = post_raw(
            &format!("{base}/api/v1/cameras/{other}/whep"),
            "application/sdp",
            &testkit::whep_offer(),
            Some(token),
        );
        assert_eq!(s, 404);
        // A media token cannot be had for the other camera, and one for their own does not
        // open the other.
        let (s, _) = post_json(
            &format!("{base}/api/v1/cameras/{other}/media-token"),
            &json!({"action": "live"}),
            Some(token),
        );
        assert_eq!(s, 404);
        let (s, t) = post_json(
            &format!("{base}/api/v1/cameras/{own}/media-token"),
            &json!({"action": "live"}),
            Some(token),
        );
        assert_eq!(s, 200);
        let t = t["token"].as_str().unwrap();
        let (s, _) = get_json(&format!("{base}/api/v1/cameras/{other}/live.mp4?token={t}"), None);
        assert_eq!(s, 401);
    }
    // RTSP with each viewer's password: their own camera plays in ffmpeg, the other is refused.
    let out = dir.path().join("rtsp.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-rtsp_transport", "tcp", "-i"])
        .arg(format!("rtsp://viewer:{PASSWORD}@{rtsp}/cameras/cam1"))
        .args(["-t", "2", "-c", "copy"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let (errors, frames) = decode(out.to_str().unwrap());
    assert!(errors.is_empty() && frames >= 40, "{errors} {frames}");
    assert_eq!(rtsp_describe(rtsp, "cam0", "viewer"), 200);
    assert_eq!(rtsp_describe(rtsp, "cam2", "viewer"), 401);
    assert_eq!(rtsp_describe(rtsp, "cam3", "bviewer"), 200);
    assert_eq!(rtsp_describe(rtsp, "cam1", "bviewer"), 401);

    // --- Audit: one more of each action, each exactly once. ---
    let auditor = login(&base, "auditor");
    let entries = |query: &str| -> Vec<Value> {
        let (s, body) = get_json(&format!("{base}/api/v1/audit?limit=10000&{query}"), Some(&auditor));
        assert_eq!(s, 200, "{body}");
        body["entries"].as_array().unwrap().clone()
    };
    let mark = entries("").last().map_or(0, |e| e["seq"].as_u64().unwrap());
    let after = format!("after={mark}");
    let dispatcher = login(&base, "dispatcher");
    let (s, _) = post_json(
        &format!("{base}/api/v1/login"),
        &json!({"username": "dispatcher", "password": "wrong"}),
        None,
    );
    assert_eq!(s, 401);
    assert_eq!(
        watch_live_mp4(&format!("{base}/api/v1/cameras/cam1/live.mp4"), &dispatcher),
        200
    );
    // A playback fetched by Range in several requests is one playback.
    let t0 = now_us();
    let ranges = node.ranges("cam0", t0 - 120_000_000, t0);
    let (r0, r1) = ranges[0];
    let window = format!(
        "start={}&end={}",
        rfc3339(r0 + 200_000),
        rfc3339(r0.max(r1 - 2_000_000))
    );
    for range in ["bytes=0-99", "bytes=100-", "bytes=0-"] {
        let (s, _, _) = fetch(
            &format!("{base}/api/v1/cameras/cam0/playback.mp4?{window}"),
            &dispatcher,
            &[("Range", range)],
        );
        assert_eq!(s, 206, "{range}");
    }
    let (s, export) = post_json(
        &format!("{base}/api/v1/exports"),
        &json!({"camera": "cam0", "start": rfc3339(r0 + 200_000), "end": rfc3339(r0 + 2_000_000), "reason": "case 2026-117"}),
        Some(&dispatcher),
    );
    assert_eq!(s, 202, "{export}");
    let (s, hold) = post_json(
        &format!("{base}/api/v1/holds"),
        &json!({"camera": "cam1", "start": rfc3339(r0), "end": rfc3339(r1), "reason": "incident 42"}),
        Some(&dispatcher),
    );
    assert_eq!(s, 201, "{hold}");
    let hold_id = hold["id"].as_str().unwrap();
    let (s, _) = ureq::delete(&format!("{base}/api/v1/holds/{hold_id}?reason=closed"))
        .header("Authorization", &format!("Bearer {dispatcher}"))
        .call()
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(s, 200);
    let (s, _) = post_json(
        &format!("{base}/api/v1/users"),
        &json!({"name": "newbie", "password": PASSWORD, "role": "viewer", "department": "dept-b"}),
        Some(&admin),
    );
    assert_eq!(s, 201);
    let (s, grant) = post_json(
        &format!("{base}/api/v1/grants"),
        &json!({"subject": "user:newbie", "actions": ["playback"], "resource": "camera:cam0"}),
        Some(&admin),
    );
    assert_eq!(s, 201);
    // The grant takes effect at once, without a restart.
    let newbie = login(&base, "newbie");
    assert_eq!(
        ids(&get_json(&format!("{base}/api/v1/cameras"), Some(&newbie)).1),
        ["cam0", "cam2", "cam3"]
    );
    let gid = grant["id"].as_str().unwrap();
    let s = ureq::delete(&format!("{base}/api/v1/grants/{gid}"))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 200);
    assert_eq!(
        ids(&get_json(&format!("{base}/api/v1/cameras"), Some(&newbie)).1),
        ["cam2", "cam3"]
    );
    // An RTSP viewing: start when it plays, stop when it ends.
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-rtsp_transport", "tcp", "-i"])
        .arg(format!("rtsp://bviewer:{PASSWORD}@{rtsp}/cameras/cam3"))
        .args(["-t", "1", "-f", "null", "-"])
        .status()
        .unwrap();
    assert!(status.success());

    // B is told its camera went offline, A is not; A is told its export is done, B is not.
    let events_a = events_a.join().unwrap();
    let events_b = events_b.join().unwrap();
    let kinds = |ev: &[(String, Value)]| {
        ev.iter()
            .map(|(k, d)| format!("{k} {}", d["camera"].as_str().unwrap_or("-")))
            .collect::<Vec<_>>()
    };
    assert!(
        kinds(&events_b).contains(&"camera.offline cam2".to_owned()),
        "{events_b:?}"
    );
    assert!(
        !kinds(&events_a)
            .iter()
            .any(|k| k.ends_with("cam2") || k.ends_with("cam3")),
        "{events_a:?}"
    );
    assert!(
        kinds(&events_a).contains(&"export.done cam0".to_owned()),
        "{events_a:?}"
    );
    assert!(
        !kinds(&events_b).iter().any(|k| k.starts_with("export.")),
        "{events_b:?}"
    );

    // Viewings end asynchronously (the server notices the hang-up): wait for the stops.
    let count = |query: &str| entries(&format!("{after}&{query}")).len();
    assert!(wait_until(Duration::from_secs(10), || count("action=live.stop") == 2));
    let expect = [
        ("action=login&user=dispatcher", 2), // one ok, one failed
        ("action=login&user=newbie", 1),
        ("action=live.start&user=dispatcher&camera=cam1", 1),
        ("action=live.stop&user=dispatcher&camera=cam1", 1),
        ("action=live.start&user=bviewer&camera=cam3", 1),
        ("action=live.stop&user=bviewer&camera=cam3", 1),
        ("action=playback&user=dispatcher&camera=cam0", 1),
        ("action=export.create&user=dispatcher&camera=cam0", 1),
        ("action=hold.create&user=dispatcher&camera=cam1", 1),
        ("action=hold.release&user=dispatcher&camera=cam1", 1),
        ("action=user.create&user=admin", 1),
        ("action=grant.create&user=admin", 1),
        ("action=grant.delete&user=admin", 1),
    ];
    for (q, n) in expect {
        let got = entries(&format!("{after}&{q}"));
        assert_eq!(got.len(), n, "{q}: {got:#?}");
    }
    let login_outcomes: Vec<Value> = entries(&format!("{after}&action=login&user=dispatcher"))
        .iter()
        .map(|e| e["outcome"].clone())
        .collect();
    assert_eq!(login_outcomes, [json!("ok"), json!("failed")]);
    let export_entry = &entries(&format!("{after}&action=export.create"))[0];
    assert_eq!(export_entry["reason"], "case 2026-117");
    assert_eq!(export_entry["ip"], "127.0.0.1");
    assert_eq!(entries(&format!("{after}&action=hold.release"))[0]["reason"], "closed");
    // Prefix filters, time windows and paging.
    assert!(count("action=live.") >= 4);
    let page = entries(&format!("{after}&limit=3"));
    assert_eq!(page.len(), 3);
    let (_, body) = get_json(&format!("{base}/api/v1/audit?{after}&limit=3"), Some(&auditor));
    let next = body["next"].as_u64().unwrap();
    assert_eq!(next, page[2]["seq"].as_u64().unwrap());
    // Non-auditors cannot read it.
    assert_eq!(get_json(&format!("{base}/api/v1/audit"), Some(&dispatcher)).0, 403);

    // `sharpeye user add` beside the running server: the user can log in within a second or
    // two, and the server audits the outside change.
    let out = user_add(dir.path(), "cli-user", "dept-b");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_until(Duration::from_secs(5), || {
        post_json(
            &format!("{base}/api/v1/login"),
            &json!({"username": "cli-user", "password": PASSWORD}),
            None,
        )
        .0 == 200
    }));
    let reload = entries(&format!("{after}&action=directory.reload"));
    assert_eq!(reload.len(), 1, "{reload:#?}");
    assert_eq!(reload[0]["detail"]["users"]["added"], json!(["cli-user"]));
    // A second add of the same name, and an unknown department, are refused with the reason.
    for (name, dept, why) in [
        ("cli-user", "dept-b", "already exists"),
        ("other", "nowhere", "does not exist"),
    ] {
        let out = user_add(dir.path(), name, dept);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{name}: {err}");
    }

    // --- Tamper evidence: verify passes, then fails at the entry that was changed. ---
    assert!(node.terminate().success());
    let verify = |data: &std::path::Path| {
        let out = Command::new(bin())
            .args(["audit", "verify", "--data"])
            .arg(data)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = verify(&data);
    assert!(ok, "{text}");
    let audit_dir = data.join("audit");
    let file = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .min()
        .unwrap();
    let original = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() > 20, "{} entries", lines.len());
    let k = lines.len() / 2; // 0-based line of the entry tampered with
    let seq_k: u64 = serde_json::from_str::<Value>(lines[k]).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let join = |ls: Vec<&str>| ls.join("\n") + "\n";
    let edited = lines[k].replacen("\"actor\":\"", "\"actor\":\"x", 1);
    let cases: Vec<(&str, String, u64)> = vec![
        (
            "edited",
            join([&lines[..k], &[edited.as_str()], &lines[k + 1..]].concat()),
            seq_k,
        ),
        ("deleted", join([&lines[..k], &lines[k + 1..]].concat()), seq_k + 1),
        (
            "reordered",
            join([&lines[..k], &[lines[k + 1], lines[k]], &lines[k + 2..]].concat()),
            seq_k + 1,
        ),
    ];
    for (what, text, bad_seq) in cases {
        std::fs::write(&file, text).unwrap();
        let (ok, out) = verify(&data);
        assert!(!ok, "{what}: verify passed");
        assert!(
            out.contains(&format!("seq {bad_seq}")) || out.contains(&format!("line {}", k + 1)),
            "{what}: the report does not name the entry (seq {bad_seq}, line {}): {out}",
            k + 1
        );
    }
    std::fs::write(&file, original).unwrap();
    assert!(verify(&data).0);
    drop(sim);
}
