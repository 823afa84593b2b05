//! What choosing owners costs a member each round, at district scale.
//!
//! Every 250 ms a member asks who owns each of its level's cameras two or three times (its
//! claims' plan, its pins, its status). This times [`cluster::View::owner_of`] over 25,000
//! cameras and 3 members, against the same answers computed the way `owner_of` used to: the
//! serving members' list built (names cloned) for every camera. Both must agree on every owner.
//! Then a settled member's plan of its claims, against the plan as it was (a scan of the camera
//! list per held claim).
//!
//! ```text
//! cargo bench -p cluster --bench assign [-- --cameras 25000 --members 3]
//! ```

use std::time::{Duration, Instant};

use cluster::assign::{Member, owner};
use cluster::{LeaseState, MemberInfo, View};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fastest of `reps` runs of `f`, per camera.
fn per_camera(reps: usize, cameras: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut check = 0;
    for _ in 0..reps {
        let t = Instant::now();
        check = std::hint::black_box(f());
        best = best.min(t.elapsed());
    }
    (best / cameras as u32, check)
}

fn main() {
    let (n, m) = (arg("--cameras", 25_000), arg("--members", 3));
    let cameras: Vec<String> = (0..n).map(|i| format!("3402000000132{i:07}")).collect();
    let view = View {
        lease: LeaseState::Starting,
        members: (1..=m)
            .map(|i| MemberInfo {
                name: format!("rec-{i}"),
                url: format!("http://10.0.0.{i}:8080"),
                weight: 1.0,
            })
            .collect(),
        etcd_reachable: true,
        drained: Vec::new(),
        known: Vec::new(),
    };
    // The way owner_of used to answer: the serving members' list built for every camera.
    let rebuilt = |camera: &str| -> Option<String> {
        let serving = view.members.iter().any(|x| !view.drained.contains(&x.name));
        let members: Vec<Member> = view
            .members
            .iter()
            .filter(|x| !serving || !view.drained.contains(&x.name))
            .map(|x| Member {
                name: x.name.clone(),
                weight: x.weight,
            })
            .collect();
        owner(camera, &members).map(|x| x.name.clone())
    };
    for c in &cameras {
        assert_eq!(view.owner_of(c), rebuilt(c).as_deref(), "{c}");
    }
    let mine = "rec-1";
    let (now, a) = per_camera(20, n, || {
        cameras.iter().filter(|c| view.owner_of(c) == Some(mine)).count()
    });
    let (before, b) = per_camera(20, n, || {
        cameras.iter().filter(|c| rebuilt(c).as_deref() == Some(mine)).count()
    });
    assert_eq!(a, b);
    // Three passes per round, four rounds a second.
    let core = |d: Duration| d.as_secs_f64() * n as f64 * 3.0 * 4.0 * 100.0;
    println!("{n} cameras, {m} members: {a} owned by {mine}");
    println!(
        "owner_of: {:.0} ns a camera = {:.2} % of a core for 3 passes × 4 rounds a second",
        now.as_nanos(),
        core(now)
    );
    println!(
        "members' list built per camera (before): {:.0} ns a camera = {:.2} % of a core",
        before.as_nanos(),
        core(before)
    );
    println!("ratio: {:.1}× less", before.as_secs_f64() / now.as_secs_f64());

    // A settled round's plan: this member holds what it owns, and nothing is to be done.
    let held: Vec<(String, i64)> = cameras
        .iter()
        .filter(|c| view.owner_of(c) == Some(mine))
        .enumerate()
        .map(|(i, c)| (c.clone(), i as i64 + 1))
        .collect();
    let view = View {
        lease: LeaseState::Held { id: 1, ttl: 3 },
        ..view
    };
    let mut claims = cluster::claims::Claims::holding(held);
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let steps = claims.plan(mine, &view, &cameras);
        best = best.min(t.elapsed());
        assert!(
            steps.is_empty(),
            "a settled member has nothing to do: {} steps",
            steps.len()
        );
    }
    // The plan as it was: each held claim looked up by a scan of the camera list, and owners
    // worked out per claim and again per camera.
    let held: Vec<&str> = claims.held().map(|(c, _)| c).collect();
    let t = Instant::now();
    let old_steps = held
        .iter()
        .filter(|c| view.owner_of(c) != Some(mine) || !cameras.iter().any(|x| x == *c))
        .count()
        + cameras
            .iter()
            .filter(|c| claims.fence(c).is_none() && view.owner_of(c) == Some(mine))
            .count();
    let old = t.elapsed();
    assert_eq!(old_steps, 0);
    println!(
        "a settled round's plan ({a} held): {:.2} ms = {:.1} % of a core at 4 rounds a second; as it was: {:.1} ms ({:.0}× more)",
        best.as_secs_f64() * 1e3,
        best.as_secs_f64() * 4.0 * 100.0,
        old.as_secs_f64() * 1e3,
        old.as_secs_f64() / best.as_secs_f64()
    );
}
