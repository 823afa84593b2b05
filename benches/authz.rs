//! Permission and audit benchmark.
//!
//! 1. Authorization decisions with 10,000 cameras, 500 groups, 1,000 grants and 1,000 users in
//!    100 departments (two levels): each `decide(user, action, camera)` is timed alone; p50, p99
//!    and p99.9 are reported, against a baseline measured in the same run: one lookup in a
//!    precomputed `HashMap<(user, camera), actions>` (the least any per-check design can cost).
//!    Also the cost of a caller's first listing (visible cameras, computed once per change).
//! 2. Audit appends: entries/s made durable (written and fdatasync'd) by 1, 8 and 64 concurrent
//!    appenders, against the same run's baseline of appending and fdatasync-ing each entry
//!    alone.
//!
//! ```text
//! cargo bench --bench authz -- [--checks 1000000] [--entries 200000] [--dir /path/on/disk]
//! ```
//! Run by hand (`scripts/bench-authz.sh`), not in CI.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use auth::audit::{AuditConfig, AuditLog, Event};
use auth::{
    Action, Actions, CameraRef, DepartmentRecord, Directory, GrantRecord, GroupRecord, Policy, Principal, Resource,
    Role, Source, Subject, UserRecord, Via,
};
use common::pct;
use rand::{Rng, SeedableRng};

/// Command-line arguments (`cargo bench --bench authz -- --flag value`).
#[derive(clap::Parser)]
struct Args {
    /// `--checks`.
    #[arg(long, default_value_t = 1_000_000)]
    checks: usize,
    /// `--entries`.
    #[arg(long, default_value_t = 200_000)]
    entries: usize,
    /// `--dir`.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    clap::Parser::parse()
}

/// A city: 10 districts × 50 streets × 20 cameras; departments per district with 9
/// sub-departments each; groups of 20 cameras; grants to departments over groups and streets,
/// to roles, and to single users over single cameras.
fn city(rng: &mut rand::rngs::StdRng) -> (Directory, Vec<CameraRef>, Vec<Principal>) {
    let cameras: Vec<CameraRef> = (0..10_000)
        .map(|i| CameraRef {
            id: format!("3402000000132{i:07}"),
            org: format!("dalian/d{}/s{}", i / 1000, (i / 20) % 50),
        })
        .collect();
    let mut departments = Vec::new();
    for d in 0..10 {
        departments.push(DepartmentRecord {
            id: format!("d{d}"),
            name: format!("district {d}"),
            parent: None,
            source: Source::Api,
        });
        for s in 0..9 {
            departments.push(DepartmentRecord {
                id: format!("d{d}-s{s}"),
                name: format!("station {d}/{s}"),
                parent: Some(format!("d{d}")),
                source: Source::Api,
            });
        }
    }
    let groups: Vec<GroupRecord> = (0..500)
        .map(|g| GroupRecord {
            id: format!("g{g}"),
            name: format!("group {g}"),
            cameras: (0..20)
                .map(|_| cameras[rng.random_range(0..cameras.len())].id.clone())
                .collect(),
            source: Source::Api,
        })
        .collect();
    let roles = [Role::Viewer, Role::Operator, Role::Dispatcher, Role::Auditor];
    let users: Vec<UserRecord> = (0..1000)
        .map(|u| UserRecord {
            name: format!("user{u}"),
            role: if u == 0 { Role::Admin } else { roles[u % roles.len()] },
            department: Some(departments[u % departments.len()].id.clone()),
            password_hash: String::new(),
            disabled: false,
            source: Source::Api,
        })
        .collect();
    let acts = |a: &[Action]| Actions::of(a);
    let mut grants = Vec::new();
    for i in 0..1000 {
        let (subject, resource) = match i % 10 {
            0..=4 => (
                Subject::Department(departments[rng.random_range(0..departments.len())].id.clone()),
                Resource::Group(format!("g{}", rng.random_range(0..500))),
            ),
            5..=7 => (
                Subject::Department(departments[rng.random_range(0..departments.len())].id.clone()),
                Resource::Org(format!(
                    "dalian/d{}/s{}",
                    rng.random_range(0..10),
                    rng.random_range(0..50)
                )),
            ),
            8 => (
                Subject::User(format!("user{}", rng.random_range(0..1000))),
                Resource::Camera(cameras[rng.random_range(0..cameras.len())].id.clone()),
            ),
            _ => (
                Subject::Role(roles[rng.random_range(0..roles.len())]),
                Resource::Group(format!("g{}", rng.random_range(0..500))),
            ),
        };
        grants.push(GrantRecord {
            id: format!("grant{i}"),
            subject,
            actions: acts(&[Action::Live, Action::Playback, Action::Export, Action::Hold]),
            resource,
            source: Source::Api,
        });
    }
    let principals = users
        .iter()
        .map(|u| Principal {
            user: u.name.clone(),
            role: u.role,
            department: u.department.clone(),
            via: Via::Session,
        })
        .collect();
    let dir = Directory {
        users,
        departments,
        groups,
        grants,
        tokens: Vec::new(),
    };
    dir.validate().expect("the benchmark's directory is valid");
    (dir, cameras, principals)
}

fn decisions(a: &Args) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (dir, cameras, principals) = city(&mut rng);
    let t = Instant::now();
    let policy = Policy::build(&dir, &cameras);
    let build = t.elapsed();
    let actions = [Action::Live, Action::Playback, Action::Export, Action::Ptz];
    let queries: Vec<(usize, usize, Action)> = (0..a.checks)
        .map(|_| {
            (
                rng.random_range(0..principals.len()),
                rng.random_range(0..cameras.len()),
                actions[rng.random_range(0..actions.len())],
            )
        })
        .collect();
    // Baseline: the answers precomputed into a hash map, looked up by (user, camera).
    let table: HashMap<(String, String), Actions> = queries
        .iter()
        .map(|&(p, c, _)| {
            let (u, cam) = (&principals[p], &cameras[c].id);
            ((u.user.clone(), cam.clone()), policy.camera_actions(u, cam))
        })
        .collect();
    let time = |f: &mut dyn FnMut(usize) -> bool| {
        let mut ns = Vec::with_capacity(queries.len());
        let mut allowed = 0usize;
        for i in 0..queries.len() {
            let t = Instant::now();
            let ok = std::hint::black_box(f(i));
            ns.push(t.elapsed().as_nanos() as f64);
            allowed += usize::from(ok);
        }
        (ns, allowed)
    };
    let key = |i: usize| {
        let (p, c, _) = queries[i];
        (principals[p].user.clone(), cameras[c].id.clone())
    };
    // Keys are built outside the timed part for the baseline too: both time the lookup only.
    let keys: Vec<(String, String)> = (0..queries.len()).map(key).collect();
    let (base_ns, _) = time(&mut |i| table.get(&keys[i]).is_some_and(|m| m.contains(queries[i].2)));
    let (ns, allowed) = time(&mut |i| {
        let (p, c, act) = queries[i];
        policy.decide(&principals[p], act, Some(&cameras[c].id)) == auth::Decision::Allow
    });
    let listing: Vec<f64> = principals
        .iter()
        .take(200)
        .map(|p| {
            let t = Instant::now();
            std::hint::black_box(policy.visible_cameras(p).len());
            t.elapsed().as_nanos() as f64
        })
        .collect();
    let visible: Vec<f64> = principals
        .iter()
        .take(200)
        .map(|p| policy.visible_cameras(p).len() as f64)
        .collect();
    println!(
        "authz: 10000 cameras, 500 groups, {} grants, {} users, {} departments; policy built in {:.1} ms",
        dir.grants.len(),
        dir.users.len(),
        dir.departments.len(),
        build.as_secs_f64() * 1e3
    );
    println!(
        "authz decide: {} checks ({:.1}% allowed): p50 {:.0} ns, p99 {:.0} ns, p99.9 {:.0} ns (goal p99 < 5000 ns)",
        ns.len(),
        allowed as f64 * 100.0 / ns.len() as f64,
        pct(ns.clone(), 0.5),
        pct(ns.clone(), 0.99),
        pct(ns.clone(), 0.999)
    );
    println!(
        "authz baseline (precomputed HashMap lookup): p50 {:.0} ns, p99 {:.0} ns; ratio p99 decide/baseline {:.2}",
        pct(base_ns.clone(), 0.5),
        pct(base_ns.clone(), 0.99),
        pct(ns.clone(), 0.99) / pct(base_ns, 0.99)
    );
    println!(
        "authz first listing per caller (visible cameras, p50 {:.0} of them): p50 {:.2} ms, p99 {:.2} ms",
        pct(visible, 0.5),
        pct(listing.clone(), 0.5) / 1e6,
        pct(listing, 0.99) / 1e6
    );
}

fn event(i: usize) -> Event {
    Event {
        actor: format!("user{}", i % 1000),
        ip: Some("10.1.2.3".into()),
        action: "live.start".into(),
        outcome: "ok".into(),
        camera: Some(format!("3402000000132{:07}", i % 10_000)),
        target: None,
        reason: None,
        detail: serde_json::json!({ "stream": "main", "output": "rtsp" }),
        on_behalf_of: None,
    }
}

fn audit(a: &Args) {
    let root = match &a.dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap(),
    };
    // Baseline: each entry written and fdatasync'd alone (what an unbatched log costs).
    let base_n = (a.entries / 50).clamp(200, 5000);
    let mut f = std::fs::File::create(root.path().join("baseline.log")).unwrap();
    let line = serde_json::to_string(&event(0)).unwrap() + "\n";
    let t = Instant::now();
    for _ in 0..base_n {
        f.write_all(line.as_bytes()).unwrap();
        f.sync_data().unwrap();
    }
    let base_rate = base_n as f64 / t.elapsed().as_secs_f64();
    println!("audit baseline (one write + fdatasync per entry): {base_rate:.0} entries/s");
    for threads in [1usize, 8, 64] {
        let dir = root.path().join(format!("audit-{threads}"));
        let log = Arc::new(AuditLog::open(&dir, AuditConfig::default()).unwrap());
        let per = a.entries / threads;
        let t = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let log = log.clone();
                std::thread::spawn(move || {
                    if threads == 1 {
                        // One appender cannot wait for each entry and still batch: it queues
                        // them all and waits for durability at the end, as a busy server does.
                        for i in 0..per {
                            log.record(event(i));
                        }
                        log.flush().unwrap();
                    } else {
                        for i in 0..per {
                            log.append_blocking(event(k * per + i)).unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        let rate = (per * threads) as f64 / secs;
        let stats = log.stats();
        println!(
            "audit append, {threads} appenders{}: {rate:.0} durable entries/s ({:.1}× baseline), {:?} (goal >= 50000/s)",
            if threads == 1 {
                " (queued, one flush)"
            } else {
                " (each waits for durability)"
            },
            rate / base_rate,
            stats
        );
        drop(log);
        let report = auth::audit::verify(&dir).expect("the chain verifies");
        println!("  verified: {report}");
    }
}

fn main() {
    let a = args();
    decisions(&a);
    audit(&a);
}
