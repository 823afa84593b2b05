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
    dir: tempfile::TempDir,
    node: Option<Node>,
}

fn start_members(names: &[&str], etcd: &str, sim: &Sim, n: usize) -> Vec<Member> {
    names
        .iter()
        .map(|name| {
            let dir = tempfile::tempdir().unwrap();
            let addr = free_addr();
            let node = Node::start(dir.path(), &member_config(dir.path(), addr, name, etcd, sim, n), addr);
            Member {
                name: (*name).into(),
                dir,
                node: Some(node),
            }
        })
        .collect()
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

/// Every member's recorded ranges of `camera` over the last `window_us`, from its own listing.
fn ranges_by_member(members: &mut [Member], camera: &str, from_us: i64) -> Vec<(String, (i64, i64))> {
    let mut out = Vec::new();
    for m in members.iter_mut().filter(|m| m.node.is_some()) {
        for r in m.node.as_mut().unwrap().ranges(camera, from_us, now_us()) {
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
    let Some(etcd) = testkit::Etcd::start() else {
        eprintln!("skipped: etcd is not installed (scripts/test.sh installs etcd-server)");
        return;
    };
    let n = 30;
    let sim = Sim::start(
        (0..n)
            .map(|i| camsim::CameraSpec::new(format!("cam{i}"), camsim::BuiltinFixture::H264_240p.load()))
            .collect(),
    );
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
}
