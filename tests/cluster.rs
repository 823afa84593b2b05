//! Several nodes of one level on etcd (issue 17): real `sharpeye` processes, a real etcd
//! (Debian's `etcd-server`, started by the test on loopback ports with its own data directory
//! and stopped at the end) and camsim's cameras.
//!
//! - three nodes share thirty cameras: each recorded by exactly one node (no two nodes' segments
//!   of a camera overlap), about ten each; one is killed with SIGKILL and its cameras are
//!   recorded by the others within ten seconds, starting after its last frame;
//! - a node frozen with SIGSTOP past its lease writes not one frame of the cameras it lost once
//!   it runs again (fencing), and rejoins: its cameras come back to it at a key frame.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A cluster member's config: the cameras of the level, all of them, and `[cluster]`.
fn member_config(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    name: &str,
    etcd: &str,
    sim: &Sim,
    n: usize,
) -> String {
    let cams: String = (0..n)
        .map(|i| camera_toml(&format!("cam{i}"), &sim.url(&format!("cam{i}"))))
        .collect();
    config_toml(addr, &dir.join("data"), "segment = \"4s\"", &cams).replace(
        "[[users]]",
        &format!(
            "[node]\nid = \"district-7\"\nname = \"District 7\"\nlevel = \"district\"\n\n[cluster]\netcd = [\"{etcd}\"]\nname = \"{name}\"\nadvertise_url = \"http://{addr}\"\nlease = \"3s\"\n\n[[users]]"
        ),
    )
}

struct Member {
    name: String,
    node: Option<Node>,
    addr: std::net::SocketAddr,
    // After the node: its log is printed from its drop when a test fails.
    dir: tempfile::TempDir,
}

fn start_members(names: &[&str], etcd: &str, sim: &Sim, n: usize) -> Vec<Member> {
    start_members_with(names, |dir, addr, name| member_config(dir, addr, name, etcd, sim, n))
}

/// Starts members `names`, each with the config `config(dir, addr, name)` makes.
fn start_members_with(
    names: &[&str],
    config: impl Fn(&std::path::Path, std::net::SocketAddr, &str) -> String,
) -> Vec<Member> {
    names
        .iter()
        .map(|name| {
            let dir = tempfile::tempdir().unwrap();
            let addr = free_addr();
            let node = Node::start(dir.path(), &config(dir.path(), addr, name), addr);
            Member {
                name: (*name).into(),
                dir,
                node: Some(node),
                addr,
            }
        })
        .collect()
}

/// etcd for a test, or `None` (the test is skipped, saying why) where it is not installed.
fn etcd() -> Option<testkit::Etcd> {
    let e = testkit::Etcd::start();
    if e.is_none() {
        eprintln!("skipped: etcd is not installed (scripts/test.sh installs etcd-server)");
    }
    e
}

/// `n` camsim cameras `cam0..` of the 240p H.264 fixture (a key frame every second).
fn cameras(n: usize) -> Sim {
    Sim::start(
        (0..n)
            .map(|i| camsim::CameraSpec::new(format!("cam{i}"), camsim::BuiltinFixture::H264_240p.load()))
            .collect(),
    )
}

fn status(m: &mut Member) -> Value {
    let (code, body) = m.node.as_mut().unwrap().get("/api/v1/cluster");
    assert_eq!(code, 200, "{body}");
    body
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Which member writes each camera now (from each live member's own status).
fn writers(members: &mut [Member]) -> BTreeMap<String, Vec<String>> {
    let mut w: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in members.iter_mut().filter(|m| m.node.is_some()) {
        for c in strings(&status(m)["recording"]) {
            w.entry(c).or_default().push(m.name.clone());
        }
    }
    w
}

/// What `node` itself recorded of `camera` since `from_us` (`local=1`: not merged with the
/// other members').
fn local_ranges(node: &mut Node, camera: &str, from_us: i64) -> Vec<(i64, i64)> {
    node.ranges_with(camera, from_us, now_us(), "&local=1")
}

/// `DELETE path` on `node` as its admin: the status.
fn delete(node: &mut Node, path: &str) -> u16 {
    let token = node.token();
    agent()
        .delete(&node.url(path))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

/// Every live member's own recorded ranges of `camera` since `from_us`, by member.
fn ranges_by_member(members: &mut [Member], camera: &str, from_us: i64) -> Vec<(String, (i64, i64))> {
    let mut out = Vec::new();
    for m in members.iter_mut().filter(|m| m.node.is_some()) {
        for r in local_ranges(m.node.as_mut().unwrap(), camera, from_us) {
            out.push((m.name.clone(), r));
        }
    }
    out.sort_by_key(|(_, r)| r.0);
    out
}

/// No two members' ranges of one camera overlap (beyond the few milliseconds two pulls of the
/// same camera stamp the same frame differently).
fn assert_no_overlap(camera: &str, ranges: &[(String, (i64, i64))]) {
    for w in ranges.windows(2) {
        let ((a, ra), (b, rb)) = (&w[0], &w[1]);
        if a != b {
            assert!(
                rb.0 >= ra.1 - 20_000,
                "{camera}: {a} recorded until {} and {b} from {}: recorded twice",
                rfc3339(ra.1),
                rfc3339(rb.0)
            );
        }
    }
}

#[test]
fn three_nodes_share_thirty_cameras_once_each_and_a_killed_node_s_cameras_move_within_ten_seconds() {
    let Some(etcd) = etcd() else { return };
    let n = 30;
    let sim = cameras(n);
    let t0 = now_us();
    let mut members = start_members(&["rec-1", "rec-2", "rec-3"], &etcd.url, &sim, n);

    // Every camera written by exactly one member: the one every member's view says owns it.
    let mut w = BTreeMap::new();
    let all = wait_until(Duration::from_secs(30), || {
        w = writers(&mut members);
        let settled = members.iter_mut().all(|m| {
            let s = status(m);
            s["members"].as_array().is_some_and(|a| {
                a.len() == 3
                    && a.iter().all(|x| {
                        strings(&x["cameras"]).iter().all(|c| {
                            w.get(c)
                                .is_some_and(|v| v == &vec![x["name"].as_str().unwrap_or("").to_owned()])
                        })
                    })
            })
        });
        settled && w.len() == n && w.values().all(|v| v.len() == 1)
    });
    assert!(all, "not every camera written once: {w:?}\n{}", status(&mut members[0]));
    let s = status(&mut members[0]);
    assert_eq!(s["members"].as_array().unwrap().len(), 3, "{s}");
    assert_eq!(s["state"], "ok", "{s}");
    for m in s["members"].as_array().unwrap() {
        let load = m["load"].as_u64().unwrap();
        assert!((5..=15).contains(&load), "uneven: {s}");
    }
    let metrics = members[0].node.as_mut().unwrap().metrics();
    for line in [
        "sharpeye_cluster_members 3",
        "sharpeye_cluster_lease_held 1",
        "sharpeye_cluster_degraded 0",
    ] {
        assert!(metrics.contains(line), "{line} not in the metrics:\n{metrics}");
    }
    assert!(
        metrics.contains("sharpeye_cluster_cameras_owned{member=\"rec-2\"}"),
        "{metrics}"
    );
    let mut owner: BTreeMap<String, String> = w.iter().map(|(c, v)| (c.clone(), v[0].clone())).collect();
    std::thread::sleep(Duration::from_secs(5));

    // Kill one: its cameras are written by the others within 10 s.
    let victim = members[2].name.clone();
    let lost: Vec<String> = owner
        .iter()
        .filter(|(_, o)| **o == victim)
        .map(|(c, _)| c.clone())
        .collect();
    assert!(!lost.is_empty());
    let killed_at = Instant::now();
    let killed_us = now_us();
    members[2].node.take().unwrap().kill();
    let mut moved = BTreeMap::new();
    let took_over = wait_until(Duration::from_secs(15), || {
        moved = writers(&mut members);
        lost.iter().all(|c| moved.get(c).is_some_and(|v| v.len() == 1))
    });
    let failover = killed_at.elapsed();
    assert!(took_over, "{victim}'s cameras {lost:?} not taken over: {moved:?}");
    assert!(failover < Duration::from_secs(10), "failover took {failover:?}");
    eprintln!("failover of {} cameras: {failover:?}", lost.len());
    // The others kept theirs.
    for (c, o) in &owner {
        if *o != victim {
            assert_eq!(
                moved.get(c),
                Some(&vec![o.clone()]),
                "{c} moved though its member lives"
            );
        }
    }
    for c in &lost {
        owner.insert(c.clone(), moved[c][0].clone());
    }
    std::thread::sleep(Duration::from_secs(5));

    // Each camera's recordings, from the two survivors' listings and the killed one's index
    // (what it closed; it wrote nothing after its death): one member at a time, and the moved
    // ones recorded again, after the kill, within 10 s of it.
    let dead_dir = members[2].dir.path().join("data");
    let dead: Vec<(String, (i64, i64))> = indexed_segments(&dead_dir)
        .into_iter()
        .map(|(_, r)| (r.stream.camera().to_string(), (r.start.as_micros(), r.end.as_micros())))
        .collect();
    for i in 0..n {
        let cam = format!("cam{i}");
        let mut ranges = ranges_by_member(&mut members, &cam, t0);
        ranges.extend(
            dead.iter()
                .filter(|(c, _)| *c == cam)
                .map(|(_, r)| (victim.clone(), *r)),
        );
        ranges.sort_by_key(|(_, r)| r.0);
        assert!(!ranges.is_empty(), "{cam} recorded nowhere");
        assert_no_overlap(&cam, &ranges);
        if lost.contains(&cam) {
            let first_new = ranges
                .iter()
                .filter(|(m, r)| *m != victim && r.1 > killed_us)
                .map(|(_, r)| r.0)
                .min()
                .unwrap_or_else(|| panic!("{cam} not recorded after the kill: {ranges:?}"));
            assert!(
                first_new >= killed_us,
                "{cam}: recorded elsewhere before its member died: {ranges:?}"
            );
            let gap = first_new - killed_us;
            assert!(
                gap < 10_000_000,
                "{cam}: {gap} µs from the kill to the first frame recorded elsewhere"
            );
        }
    }

    // While it is down, the survivors say so: a merged listing names it (what it recorded is
    // on its disk, not in the ranges), as do the cluster's status, metrics and CLI.
    let cam = &lost[0];
    let (code, listing) = members[0].node.as_mut().unwrap().get(&format!(
        "/api/v1/cameras/{cam}/recordings?start={}&end={}",
        rfc3339(t0),
        rfc3339(now_us())
    ));
    assert_eq!(code, 200, "{listing}");
    assert_eq!(listing["members_down"], serde_json::json!([victim]), "{listing}");
    let (_, status) = members[1].node.as_mut().unwrap().get("/api/v1/cluster");
    assert_eq!(status["members_down"], serde_json::json!([victim]), "{status}");
    assert!(
        members[1]
            .node
            .as_mut()
            .unwrap()
            .metrics()
            .contains("sharpeye_cluster_members_down 1")
    );
    let (ok, out) = cli(&members[0], &["status"]);
    assert!(ok && out.contains(&format!("{victim}: down")), "{out}");
    // A live member cannot be forgotten; a dead one can (decommissioned), and is no longer said
    // down. (It is known again when it rejoins below.)
    let (ok, out) = cli(&members[0], &["forget", &members[0].name]);
    assert!(!ok && out.contains("is live"), "{out}");
    let (ok, out) = cli(&members[0], &["forget", &victim]);
    assert!(ok, "{out}");
    assert!(
        wait_until(Duration::from_secs(3), || members[0]
            .node
            .as_mut()
            .unwrap()
            .get("/api/v1/cluster")
            .1["members_down"]
            == serde_json::json!([])),
        "forgotten, still said down"
    );

    // The killed member comes back (recovering its data) and rejoins. Any member's listing of
    // a moved camera is now every member's recordings merged: one gap, at the failover, from
    // the killed member's last frame to the first one recorded elsewhere.
    let m = &mut members[2];
    let config = std::fs::read_to_string(m.dir.path().join("sharpeye.toml")).unwrap();
    m.node = Some(Node::start(m.dir.path(), &config, m.addr));
    settle(&mut members, 3, n, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let (_, status) = members[0].node.as_mut().unwrap().get("/api/v1/cluster");
    assert_eq!(status["members_down"], serde_json::json!([]), "{status}");
    for cam in &lost {
        for m in members.iter_mut() {
            let merged = m.node.as_mut().unwrap().ranges(cam, t0, now_us());
            let gaps: Vec<(i64, i64)> = merged
                .windows(2)
                .map(|w| (w[0].1, w[1].0))
                .filter(|(a, b)| b - a > 1_500_000)
                .collect();
            assert_eq!(gaps.len(), 1, "{cam} from {}: {merged:?}", m.name);
            let (from, to) = gaps[0];
            assert!(
                from <= killed_us && from > killed_us - 2_000_000,
                "{cam}: the gap starts at {}",
                rfc3339(from)
            );
            assert!(
                to > killed_us && to - killed_us < 10_000_000,
                "{cam}: the gap ends at {}",
                rfc3339(to)
            );
        }
    }

    // Playback across the failover, from a member that recorded only the part after it: one
    // file, as long as what was recorded in the window (the gap collapsed), that decodes.
    let cam = &lost[0];
    let (from, to) = (killed_us - 4_000_000, killed_us + 12_000_000);
    let taker = owner[cam].clone();
    let m = members.iter_mut().find(|m| m.name == taker).unwrap();
    let node = m.node.as_mut().unwrap();
    let merged = node.ranges(cam, from, to);
    let recorded: i64 = merged
        .iter()
        .map(|r| r.1.min(to) - r.0.max(from))
        .filter(|d| *d > 0)
        .sum();
    let url = node.url(&format!(
        "/api/v1/cameras/{cam}/playback.mp4?start={}&end={}",
        rfc3339(from),
        rfc3339(to)
    ));
    let token = node.token();
    let (status, _, body) = fetch(&url, &token, &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (_, _, own) = fetch(&format!("{url}&local=1"), &token, &[]);
    let file = m.dir.path().join("across.mp4");
    std::fs::write(&file, &body).unwrap();
    let secs = duration(&file);
    assert!(
        (secs - recorded as f64 / 1e6).abs() < 0.5,
        "{secs} s played of {} s recorded in the window: {merged:?}\n{}",
        recorded as f64 / 1e6,
        m.node
            .as_ref()
            .unwrap()
            .log_text()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(body.len() > own.len(), "the file holds only what {taker} recorded");
    let (errors, frames) = decode(file.to_str().unwrap());
    assert!(errors.is_empty(), "{errors}");
    assert!(frames as f64 >= secs * 25.0 * 0.95, "{frames} frames in {secs} s");

    // An export of the same window: one package signed by the member that assembled it, its
    // manifest naming both members whose recordings are in it, verified intact.
    let (code, job) = node.post(
        "/api/v1/exports",
        &serde_json::json!({"camera": cam, "start": rfc3339(from), "end": rfc3339(to), "reason": "case across a failover"}),
    );
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let mut done = Value::Null;
    assert!(wait_until(Duration::from_secs(30), || {
        done = node.get(&format!("/api/v1/exports/{id}")).1;
        done["status"] == "done" || done["status"] == "failed"
    }));
    assert_eq!(done["status"], "done", "{done}");
    let (code, v) = node.get(&format!("/api/v1/exports/{id}/verify"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["intact"], true, "{v}");
    let mut sources = strings(&v["manifest"]["source_nodes"]);
    sources.sort();
    let mut expected = vec![taker.clone(), victim.clone()];
    expected.sort();
    assert_eq!(sources, expected, "{v}");
}

fn signal(m: &Member, sig: i32) {
    let pid = m.node.as_ref().unwrap().child.id() as i32;
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Waits until every live member's view has `count` members and each camera is written by the
/// one member that view says owns it; returns the owners.
fn settle(members: &mut [Member], count: usize, n: usize, limit: Duration) -> BTreeMap<String, String> {
    let mut w = BTreeMap::new();
    let ok = wait_until(limit, || {
        w = writers(members);
        let settled = members.iter_mut().filter(|m| m.node.is_some()).all(|m| {
            let s = status(m);
            s["members"].as_array().is_some_and(|a| {
                a.len() == count
                    && a.iter().all(|x| {
                        let name = x["name"].as_str().unwrap_or("").to_owned();
                        strings(&x["cameras"])
                            .iter()
                            .all(|c| w.get(c) == Some(&vec![name.clone()]))
                    })
            })
        });
        settled && w.len() == n && w.values().all(|v| v.len() == 1)
    });
    assert!(ok, "the cluster did not settle on {count} members: {w:?}");
    w.into_iter().map(|(c, v)| (c, v[0].clone())).collect()
}

#[test]
fn a_frozen_node_writes_nothing_it_lost_rejoins_and_a_joining_node_takes_cameras_at_key_frames() {
    let Some(etcd) = etcd() else { return };
    let n = 12;
    let sim = cameras(n);
    let t0 = now_us();
    let mut members = start_members(&["rec-1", "rec-2"], &etcd.url, &sim, n);
    let owners = settle(&mut members, 2, n, Duration::from_secs(30));
    let frozen: Vec<String> = owners
        .iter()
        .filter(|(_, o)| *o == "rec-2")
        .map(|(c, _)| c.clone())
        .collect();
    assert!(!frozen.is_empty());
    std::thread::sleep(Duration::from_secs(2));

    // Freeze rec-2 past its lease (3 s): rec-1 takes its cameras.
    let stopped_us = now_us();
    signal(&members[1], libc::SIGSTOP);
    let taken = wait_until(Duration::from_secs(10), || {
        let w = writers(&mut members[..1]);
        frozen.iter().all(|c| w.contains_key(c))
    });
    assert!(taken, "rec-1 did not take the frozen member's cameras");
    std::thread::sleep(Duration::from_secs(2));
    let resumed_us = now_us();
    signal(&members[1], libc::SIGCONT);

    // It finds its lease gone, writes none of what it lost, rejoins and gets its cameras back.
    let back = settle(&mut members, 2, n, Duration::from_secs(30));
    assert_eq!(back, owners, "the same members own the same cameras again");
    let log = members[1].node.as_ref().unwrap().log_text();
    assert!(log.contains("lease"), "rec-2 does not say it lost its lease:\n{log}");
    std::thread::sleep(Duration::from_secs(3));
    for c in &frozen {
        let ranges = ranges_by_member(&mut members, c, t0);
        assert_no_overlap(c, &ranges);
        // Between the freeze and the end of its lease rec-2 may have written what it had
        // received; after that, nothing until rec-1 handed the camera back.
        let theirs: Vec<&(i64, i64)> = ranges.iter().filter(|(m, _)| m == "rec-2").map(|(_, r)| r).collect();
        for r in &theirs {
            assert!(
                r.1 <= stopped_us + 3_000_000 || r.0 >= resumed_us,
                "{c}: rec-2 wrote {}..{} across its freeze ({}..{})",
                rfc3339(r.0),
                rfc3339(r.1),
                rfc3339(stopped_us),
                rfc3339(resumed_us)
            );
        }
        assert!(
            theirs.iter().any(|r| r.0 >= resumed_us),
            "{c}: rec-2 did not record it again"
        );
    }

    // A third member joins: it takes about a third of the cameras, each at a key frame of the
    // one who had it (a gap of at most a key-frame interval, 1 s here), none recorded twice.
    let joined_us = now_us();
    members.extend(start_members(&["rec-3"], &etcd.url, &sim, n));
    let three = settle(&mut members, 3, n, Duration::from_secs(30));
    let moved: Vec<&String> = three
        .iter()
        .filter(|(c, o)| owners[*c] != **o)
        .map(|(c, _)| c)
        .collect();
    assert!(
        moved.iter().all(|c| three[*c] == "rec-3"),
        "only the newcomer wins cameras: {three:?}"
    );
    assert!((2..=7).contains(&moved.len()), "{} of {n} moved", moved.len());
    std::thread::sleep(Duration::from_secs(3));
    let mut worst = 0;
    for c in &moved {
        let ranges = ranges_by_member(&mut members, c, joined_us - 2_000_000);
        assert_no_overlap(c, &ranges);
        let handover = ranges
            .windows(2)
            .find(|w| w[0].0 != w[1].0 && w[1].0 == "rec-3")
            .unwrap_or_else(|| panic!("{c}: no handover to rec-3 in {ranges:?}"));
        let gap = handover[1].1.0 - handover[0].1.1;
        worst = worst.max(gap);
        assert!(gap <= 1_150_000, "{c}: a gap of {gap} µs at the handover: {ranges:?}");
    }
    eprintln!(
        "{} cameras moved to the newcomer, worst handover gap {worst} µs",
        moved.len()
    );
}

#[test]
fn with_etcd_down_the_owners_go_on_recording_the_api_says_degraded_and_nothing_is_owned_twice_after() {
    let Some(mut etcd) = etcd() else { return };
    let n = 8;
    let sim = cameras(n);
    let t0 = now_us();
    let mut members = start_members(&["rec-1", "rec-2"], &etcd.url, &sim, n);
    let owners = settle(&mut members, 2, n, Duration::from_secs(30));

    // etcd down for 30 s, ten times the lease: every owner goes on with what it holds.
    etcd.stop();
    let down_us = now_us();
    let until = Instant::now() + Duration::from_secs(30);
    let mut degraded_seen = false;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(3));
        let w = writers(&mut members);
        let now: BTreeMap<String, String> = w.iter().map(|(c, v)| (c.clone(), v.join(","))).collect();
        assert_eq!(now, owners, "recording changed hands with etcd down");
        for m in members.iter_mut() {
            let s = status(m);
            if s["state"] == "degraded" {
                degraded_seen = true;
                assert_eq!(s["lease"]["state"], "etcd_down", "{s}");
                let (code, h) = m.node.as_mut().unwrap().get("/api/v1/health");
                assert_eq!(code, 200);
                assert_eq!(h["status"], "degraded", "{h}");
                assert!(
                    h["cluster_degraded"].as_str().is_some_and(|d| d.contains("etcd")),
                    "{h}"
                );
            }
        }
    }
    assert!(degraded_seen, "the API never said the cluster is degraded");
    etcd.resume();
    let back_us = now_us();
    let after = settle(&mut members, 2, n, Duration::from_secs(30));
    assert_eq!(after, owners);
    for m in members.iter_mut() {
        assert!(
            wait_until(Duration::from_secs(10), || status(m)["state"] == "ok"),
            "{}",
            status(m)
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..n {
        let cam = format!("cam{i}");
        let ranges = ranges_by_member(&mut members, &cam, t0);
        assert_no_overlap(&cam, &ranges);
        // Recorded through the outage without a break longer than a segment's boundary.
        let covering: Vec<&(i64, i64)> = ranges
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.1 > down_us && r.0 < back_us)
            .collect();
        let covered: i64 = covering.iter().map(|r| r.1.min(back_us) - r.0.max(down_us)).sum();
        assert!(
            covered as f64 >= 0.95 * (back_us - down_us) as f64,
            "{cam}: only {covered} µs of the {} µs outage recorded: {ranges:?}",
            back_us - down_us
        );
    }
}

/// Places a hold on `camera` over `(start, end)` µs through member `m`: its id.
fn place_hold(m: &mut Member, camera: &str, (start, end): (i64, i64), reason: &str) -> String {
    let (code, hold) = m.node.as_mut().unwrap().post(
        "/api/v1/holds",
        &serde_json::json!({
            "camera": camera, "start": rfc3339(start), "end": rfc3339(end), "reason": reason
        }),
    );
    assert_eq!(code, 201, "{hold}");
    hold["id"].as_str().unwrap().to_owned()
}

/// Whether member `m` lists hold `id`.
fn holds(m: &mut Member, id: &str) -> bool {
    let (code, v) = m.node.as_mut().unwrap().get("/api/v1/holds");
    assert_eq!(code, 200, "{v}");
    v.as_array().is_some_and(|a| a.iter().any(|h| h["id"] == id))
}

/// `sharpeye cluster ARGS --config` of member `m`: (exit success, output).
fn cli(m: &Member, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(bin())
        .arg("cluster")
        .arg("--config")
        .arg(m.dir.path().join("sharpeye.toml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_drained_member_hands_every_camera_over_at_key_frames_and_takes_its_share_back_when_undrained() {
    let Some(etcd) = etcd() else { return };
    let n = 8;
    let sim = cameras(n);
    let t0 = now_us();
    let mut members = start_members(&["rec-1", "rec-2"], &etcd.url, &sim, n);
    let owners = settle(&mut members, 2, n, Duration::from_secs(30));
    let (ok, out) = cli(&members[0], &["status"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("2 live member(s)") && out.contains("rec-1") && out.contains("rec-2"),
        "{out}"
    );

    // Live through the member that does not record a camera: relayed from the one that does,
    // so the camera serves one session whatever member its viewers use.
    let (cam, _) = owners.iter().find(|(_, o)| *o == "rec-1").unwrap();
    let sessions = sim.cam(cam).sessions().len();
    let node = members[1].node.as_mut().unwrap();
    let url = format!(
        "{}?token={}",
        node.url(&format!("/api/v1/cameras/{cam}/live.mp4")),
        media_token(node, cam, "live")
    );
    let (errors, frames) = decode_args(&["-t", "3", "-i", &url]);
    assert!(frames >= 25, "{frames} frames through rec-2: {errors}");
    assert_eq!(
        sim.cam(cam).sessions().len(),
        sessions,
        "watching {cam} through rec-2 opened another session to the camera"
    );

    let (ok, out) = cli(&members[0], &["drain", "rec-1"]);
    assert!(ok, "{out}");
    let all_on_2 = wait_until(Duration::from_secs(15), || {
        let w = writers(&mut members);
        w.len() == n && w.values().all(|v| v == &vec!["rec-2".to_owned()])
    });
    assert!(all_on_2, "rec-1 still records: {:?}", writers(&mut members));
    let (_, out) = cli(&members[1], &["status"]);
    assert!(out.contains("drained"), "{out}");
    let s = status(&mut members[0]);
    let rec1 = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "rec-1")
        .unwrap();
    assert!(
        strings(&rec1["cameras"]).is_empty(),
        "a drained member owns nothing: {s}"
    );

    let (ok, out) = cli(&members[1], &["undrain", "rec-1"]);
    assert!(ok, "{out}");
    let returned = wait_until(Duration::from_secs(30), || {
        let w = writers(&mut members);
        owners.iter().all(|(c, o)| w.get(c) == Some(&vec![o.clone()]))
    });
    assert!(
        returned,
        "rec-1 did not get its cameras back: {:?}",
        writers(&mut members)
    );
    let back = settle(&mut members, 2, n, Duration::from_secs(30));
    assert_eq!(back, owners);
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..n {
        let cam = format!("cam{i}");
        let ranges = ranges_by_member(&mut members, &cam, t0);
        assert_no_overlap(&cam, &ranges);
        for w in ranges.windows(2).filter(|w| w[0].0 != w[1].0) {
            let gap = w[1].1.0 - w[0].1.1;
            assert!(gap <= 1_150_000, "{cam}: a gap of {gap} µs at a handover: {ranges:?}");
        }
    }
    let (ok, out) = cli(&members[0], &["drain"]);
    assert!(!ok, "a drain without a name: {out}");
}

#[test]
fn tokens_users_and_holds_are_the_cluster_s_and_a_hold_survives_retention_on_the_member_that_recorded_it() {
    let Some(etcd) = etcd() else { return };
    let n = 4;
    let sim = cameras(n);
    let t0 = now_us();
    let mut members = start_members_with(&["rec-1", "rec-2"], |dir, addr, name| {
        member_config(dir, addr, name, &etcd.url, &sim, n)
            .replace("segment = \"4s\"", "segment = \"2s\"")
            .replace(
                "[cluster]",
                "[retention]\nstandard = \"14s\"\ninterval = \"1s\"\n\n[cluster]",
            )
    });
    let owners = settle(&mut members, 2, n, Duration::from_secs(30));
    let (camera, _) = owners.iter().find(|(_, o)| *o == "rec-2").expect("rec-2 owns a camera");

    // API tokens, like users and grants, are the cluster's: made through rec-1, honoured by
    // rec-2; revoked through rec-2, refused by rec-1.
    let (code, t) = members[0].node.as_mut().unwrap().post(
        "/api/v1/tokens",
        &serde_json::json!({"name": "grid-module", "actions": ["live", "playback"], "resources": ["*"]}),
    );
    assert_eq!(code, 201, "{t}");
    let (token, token_id) = (
        t["token"].as_str().unwrap().to_owned(),
        t["id"].as_str().unwrap().to_owned(),
    );
    let lists = |m: &Member, token: &str| get_json(&m.node.as_ref().unwrap().url("/api/v1/cameras"), Some(token)).0;
    assert!(
        wait_until(Duration::from_secs(5), || lists(&members[1], &token) == 200),
        "rec-1's API token is not honoured by rec-2"
    );
    let (code, u) = members[1].node.as_mut().unwrap().post(
        "/api/v1/users",
        &serde_json::json!({"name": "duty-officer", "password": "password-123", "role": "viewer"}),
    );
    assert_eq!(code, 201, "{u}");
    let url = members[0].node.as_ref().unwrap().url("/api/v1/login");
    let logs_in = || {
        post_json(
            &url,
            &serde_json::json!({"username": "duty-officer", "password": "password-123"}),
            None,
        )
        .0
    };
    assert!(
        wait_until(Duration::from_secs(5), || logs_in() == 200),
        "a user made through rec-2 cannot log in on rec-1"
    );
    // Two administrators at once, one through each member, between two syncs: both users
    // exist everywhere (the members merge entry by entry; taking either file whole would lose
    // the other's user).
    for (m, name) in [(0, "east-officer"), (1, "west-officer")] {
        let (code, u) = members[m].node.as_mut().unwrap().post(
            "/api/v1/users",
            &serde_json::json!({"name": name, "password": "password-123", "role": "viewer"}),
        );
        assert_eq!(code, 201, "{u}");
    }
    for m in &members {
        let url = m.node.as_ref().unwrap().url("/api/v1/login");
        for name in ["east-officer", "west-officer"] {
            assert!(
                wait_until(Duration::from_secs(8), || post_json(
                    &url,
                    &serde_json::json!({"username": name, "password": "password-123"}),
                    None
                )
                .0 == 200),
                "{name}, made at the same time as another user through the other member, cannot log in on {}",
                m.name
            );
        }
    }
    let code = delete(members[1].node.as_mut().unwrap(), &format!("/api/v1/tokens/{token_id}"));
    assert_eq!(code, 200);
    assert!(
        wait_until(Duration::from_secs(5), || lists(&members[0], &token) == 401),
        "a token revoked through rec-2 still works on rec-1"
    );
    std::thread::sleep(Duration::from_secs(4));

    // Through rec-1, which never recorded the camera.
    let (hold_start, hold_end) = (now_us() - 5_000_000, now_us() - 2_000_000);
    let id = place_hold(&mut members[0], camera, (hold_start, hold_end), "case 2026-117");
    let listed = |m: &mut Member| holds(m, &id);
    assert!(
        wait_until(Duration::from_secs(5), || listed(&mut members[1])),
        "the hold did not reach rec-2"
    );

    // Past retention (14 s): rec-2 deleted the camera's older recordings but kept the held ones.
    let before = local_ranges(members[1].node.as_mut().unwrap(), camera, t0);
    assert!(
        before.first().is_some_and(|r| r.0 < hold_start - 3_000_000),
        "{before:?}"
    );
    let expired = wait_until(Duration::from_secs(40), || {
        local_ranges(members[1].node.as_mut().unwrap(), camera, t0)
            .first()
            .is_some_and(|r| r.0 >= hold_start - 3_000_000)
    });
    let after = local_ranges(members[1].node.as_mut().unwrap(), camera, t0);
    assert!(expired, "retention deleted nothing on rec-2: {after:?}");
    let covered: i64 = after
        .iter()
        .map(|r| (r.1.min(hold_end) - r.0.max(hold_start)).max(0))
        .sum();
    assert!(
        covered >= hold_end - hold_start - 100_000,
        "the held range {}..{} is not all kept on rec-2: {after:?}",
        rfc3339(hold_start),
        rfc3339(hold_end)
    );

    // Released through rec-2: gone from rec-1 too.
    let code = delete(
        members[1].node.as_mut().unwrap(),
        &format!("/api/v1/holds/{id}?reason=closed"),
    );
    assert_eq!(code, 200);
    assert!(
        wait_until(Duration::from_secs(5), || !listed(&mut members[0])),
        "the release did not reach rec-1"
    );

    // One audit query over both members' logs: the hold placed through rec-1 and released
    // through rec-2, each entry tagged with the member whose chain holds it.
    let (code, a) = members[1]
        .node
        .as_mut()
        .unwrap()
        .get(&format!("/api/v1/audit?members=all&camera={camera}"));
    assert_eq!(code, 200, "{a}");
    let seen: Vec<(String, String)> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().is_some_and(|x| x.starts_with("hold.")))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["node"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(seen.contains(&("hold.create".into(), "rec-1".into())), "{seen:?}");
    assert!(seen.contains(&("hold.release".into(), "rec-2".into())), "{seen:?}");
    let (code, _) = members[1]
        .node
        .as_mut()
        .unwrap()
        .get("/api/v1/audit?members=all&after=3");
    assert_eq!(code, 400, "after pages one member's log");

    // A hold released while a member is down stays released when it returns: it finds the
    // release's tombstone instead of sharing the hold again as one of its own.
    let id2 = place_hold(&mut members[1], camera, (hold_start, hold_end), "case 2026-118");
    let holds_it = |m: &mut Member| holds(m, &id2);
    assert!(
        wait_until(Duration::from_secs(5), || holds_it(&mut members[0])),
        "the second hold did not reach rec-1"
    );
    assert!(members[0].node.take().unwrap().terminate().success());
    let code = delete(
        members[1].node.as_mut().unwrap(),
        &format!("/api/v1/holds/{id2}?reason=closed"),
    );
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_secs(2));
    let m = &mut members[0];
    let config = std::fs::read_to_string(m.dir.path().join("sharpeye.toml")).unwrap();
    m.node = Some(Node::start(m.dir.path(), &config, m.addr));
    assert!(
        wait_until(Duration::from_secs(10), || !holds_it(&mut members[0])),
        "rec-1, down while the hold was released, still holds it"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!holds_it(&mut members[1]), "rec-1 shared the released hold again");
    assert!(!holds_it(&mut members[0]));
}

#[test]
fn a_member_whose_disk_fills_gives_its_cameras_away_and_takes_them_back_when_there_is_room() {
    let Some(etcd) = etcd() else { return };
    let small = testkit::SmallFs::new(24);
    small.clear("cluster-");
    // Whatever happens below, the small file system is left empty for the other tests.
    struct Cleared<'a>(&'a testkit::SmallFs);
    impl Drop for Cleared<'_> {
        fn drop(&mut self) {
            self.0.clear("cluster-");
        }
    }
    let _cleared = Cleared(&small);
    let n = 6;
    let sim = cameras(n);
    let mut members = start_members_with(&["rec-1", "rec-2"], |dir, addr, name| {
        let config = member_config(dir, addr, name, &etcd.url, &sim, n);
        if name != "rec-2" {
            return config;
        }
        // rec-2 records onto the small file system, keeping a quarter of it free.
        config
            .replace(
                "[cluster]",
                "[retention]\nmin_free = \"25%\"\ninterval = \"1s\"\n\n[cluster]",
            )
            .replace(
                &format!("data_dirs = [\"{}\"]", dir.join("data").display()),
                &format!("data_dirs = [\"{}\"]", small.path.join("cluster-rec-2").display()),
            )
    });
    let owners = settle(&mut members, 2, n, Duration::from_secs(30));
    assert!(owners.values().any(|o| o == "rec-2"), "{owners:?}");

    // Something else fills rec-2's disk: its recording is blocked, and within 10 s every camera
    // is recorded by rec-1.
    let filler_path = small.path.join("cluster-filler");
    // Full but for 2 MB: below rec-2's 6 MB floor, with room left for its index, as a disk
    // filling up meets the floor before it meets ENOSPC.
    let filler = testkit::fill(&filler_path);
    let len = filler.metadata().unwrap().len();
    filler.set_len(len.saturating_sub(2 << 20)).unwrap();
    let t = Instant::now();
    let moved = wait_until(Duration::from_secs(10), || {
        let w = writers(&mut members);
        w.len() == n && w.values().all(|v| v == &vec!["rec-1".to_owned()])
    });
    assert!(
        moved,
        "rec-2 kept cameras with a full disk: {:?}\n{}\n{}\n{}\n{}",
        writers(&mut members),
        members[0]
            .node
            .as_ref()
            .unwrap()
            .log_text()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(10)
            .collect::<Vec<_>>()
            .join("\n"),
        status(&mut members[1]),
        members[1].node.as_mut().unwrap().get("/api/v1/health").1["disks"],
        members[1]
            .node
            .as_ref()
            .unwrap()
            .log_text()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("a full disk's cameras moved in {:?}", t.elapsed());
    let s = status(&mut members[0]);
    let rec2 = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "rec-2")
        .cloned();
    assert!(rec2.is_some_and(|m| m["drained"] == true), "{s}");

    // Room again: rec-2 takes its cameras back.
    drop(filler);
    std::fs::remove_file(&filler_path).unwrap();
    let back = wait_until(Duration::from_secs(20), || {
        let w = writers(&mut members);
        owners.iter().all(|(c, o)| w.get(c) == Some(&vec![o.clone()]))
    });
    assert!(back, "rec-2 did not take its cameras back: {:?}", writers(&mut members));
    for m in &mut members {
        m.node.take();
    }
}

/// A TCP proxy to etcd that the test can cut (a member partitioned from etcd while the others
/// still reach it) and mend.
struct EtcdProxy {
    url: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl EtcdProxy {
    fn start(etcd_url: &str) -> EtcdProxy {
        use std::sync::atomic::Ordering;
        let target = etcd_url.trim_start_matches("http://").to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::<std::net::TcpStream>::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::Acquire) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut o = o.lock().unwrap();
                    o.push(client.try_clone().unwrap());
                    o.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        EtcdProxy { url, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Release);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Release);
    }
}

#[test]
fn a_member_cut_off_from_etcd_stops_before_the_others_take_its_cameras_and_rejoins_when_mended() {
    let Some(etcd) = etcd() else { return };
    let proxy = EtcdProxy::start(&etcd.url);
    let n = 6;
    let sim = cameras(n);
    let t0 = now_us();
    // rec-1 reaches etcd only through the proxy.
    let mut members = start_members_with(&["rec-1", "rec-2"], |dir, addr, name| {
        let url = if name == "rec-1" { &proxy.url } else { &etcd.url };
        member_config(dir, addr, name, url, &sim, n)
    });
    let owners = settle(&mut members, 2, n, Duration::from_secs(30));
    let cut_off: Vec<String> = owners
        .iter()
        .filter(|(_, o)| *o == "rec-1")
        .map(|(c, _)| c.clone())
        .collect();
    assert!(!cut_off.is_empty());

    // rec-1 loses etcd; rec-2 still reaches it and says so when asked: rec-1 must stop at its
    // lease's end, and rec-2 takes the cameras once etcd expires that lease.
    let cut_us = now_us();
    let t = Instant::now();
    proxy.cut();
    let taken = wait_until(Duration::from_secs(10), || {
        let w = writers(&mut members);
        w.len() == n && w.values().all(|v| v == &vec!["rec-2".to_owned()])
    });
    assert!(taken, "rec-2 did not take rec-1's cameras: {:?}", writers(&mut members));
    eprintln!("a member cut off from etcd lost its cameras in {:?}", t.elapsed());
    let s = status(&mut members[0]);
    assert_eq!(s["state"], "degraded", "{s}");
    assert!(
        s["lease"]["state"] == "lost" || s["lease"]["state"] == "unreachable",
        "{s}"
    );
    assert_ne!(s["lease"]["others_confirm_etcd_down"], true, "{s}");
    std::thread::sleep(Duration::from_secs(2));
    for c in &cut_off {
        let ranges = ranges_by_member(&mut members, c, t0);
        assert_no_overlap(c, &ranges);
        let last_rec1 = ranges
            .iter()
            .filter(|(m, _)| m == "rec-1")
            .map(|(_, r)| r.1)
            .max()
            .unwrap_or(0);
        assert!(
            last_rec1 <= cut_us + 3_000_000,
            "{c}: rec-1 wrote until {} though cut off at {}",
            rfc3339(last_rec1),
            rfc3339(cut_us)
        );
    }

    // Mended: rec-1 rejoins and records its cameras again.
    proxy.mend();
    let back = wait_until(Duration::from_secs(30), || {
        let w = writers(&mut members);
        owners.iter().all(|(c, o)| w.get(c) == Some(&vec![o.clone()]))
    });
    assert!(back, "rec-1 did not get its cameras back: {:?}", writers(&mut members));
    for c in &cut_off {
        assert_no_overlap(c, &ranges_by_member(&mut members, c, t0));
    }
}
