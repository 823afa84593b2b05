//! The etcd client against a real etcd (Debian's `etcd-server`, which `scripts/test.sh`
//! installs), started by the test on loopback ports with its own data directory and stopped
//! at the end: leases expire and take their keys with them, claims are exclusive, and a member
//! whose lease expired can no longer write as the owner of what it claimed, even after someone
//! else claimed it (the claim's revision is its fencing token).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cluster::Etcd;

fn start_etcd() -> Option<testkit::Etcd> {
    testkit::Etcd::start()
}

#[test]
fn leases_claims_and_fencing_against_a_real_etcd() {
    let Some(etcd) = start_etcd() else {
        eprintln!("skipped: etcd is not installed (scripts/test.sh installs etcd-server)");
        return;
    };
    // The first endpoint is dead: calls go on to the next.
    let c = Etcd::new(&["http://127.0.0.1:1".into(), etcd.url.clone()], Duration::from_secs(2));

    // Members register under their leases.
    let a = c.grant(3).unwrap();
    let b = c.grant(30).unwrap();
    c.put("/sharpeye/t/members/rec-1", b"http://10.0.0.21:8080", a).unwrap();
    c.put("/sharpeye/t/members/rec-2", b"http://10.0.0.22:8080", b).unwrap();
    let members = c.prefix("/sharpeye/t/members/").unwrap();
    assert_eq!(
        members.iter().map(|m| (m.key.as_str(), m.lease)).collect::<Vec<_>>(),
        [("/sharpeye/t/members/rec-1", a), ("/sharpeye/t/members/rec-2", b)]
    );
    assert_eq!(members[0].value, b"http://10.0.0.21:8080");
    assert_eq!(c.keep_alive(a).unwrap(), Some(3));

    // rec-1 claims a camera; rec-2 cannot while it holds it.
    let key = "/sharpeye/t/owners/cam7";
    let fence = c.claim(key, b"rec-1", a).unwrap().expect("free, so claimed");
    assert_eq!(c.claim(key, b"rec-2", b).unwrap(), None);
    assert_eq!(c.prefix(key).unwrap()[0].create_revision, fence);
    // One key is read alone: cam7's neighbours that begin with its name are not.
    c.put("/sharpeye/t/owners/cam70", b"rec-2", b).unwrap();
    assert_eq!(c.prefix(key).unwrap().len(), 2);
    assert_eq!(c.get(key).unwrap().map(|kv| kv.create_revision), Some(fence));
    assert_eq!(c.get("/sharpeye/t/owners/cam8").unwrap(), None);
    c.delete("/sharpeye/t/owners/cam70").unwrap();
    // The owner writes under its claim.
    assert_eq!(c.put_if_held(key, b"rec-1 segment 41", a, fence).unwrap(), Some(fence));

    // rec-1 stops keeping its lease alive (killed, paused, cut off): within its TTL its
    // membership and its claim are gone.
    let t = Instant::now();
    while !c.prefix("/sharpeye/t/members/rec-1").unwrap().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(15), "the lease did not expire");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.prefix(key).unwrap().is_empty());
    assert_eq!(c.keep_alive(a).unwrap(), None, "an expired lease stays expired");

    // rec-2 takes the camera over; rec-1's stale write with its old token fails.
    let fence2 = c.claim(key, b"rec-2", b).unwrap().expect("free again");
    assert!(fence2 > fence);
    assert_eq!(c.put_if_held(key, b"rec-1 segment 42", a, fence).unwrap(), None);
    assert_eq!(c.prefix(key).unwrap()[0].value, b"rec-2");
    assert_eq!(c.put_if_held(key, b"rec-2 segment 1", b, 0).unwrap(), None);

    // A revoked lease takes its keys at once.
    c.revoke(b).unwrap();
    assert!(c.prefix("/sharpeye/t/").unwrap().is_empty());
    c.put("/sharpeye/t/x", b"1", 0).unwrap();
    c.delete("/sharpeye/t/x").unwrap();
    assert!(c.prefix("/sharpeye/t/").unwrap().is_empty());
}

/// Shared state two members change goes through compare-and-swap on the key's revision: the
/// second of two writers that read the same revision is refused, and so is a create over a key
/// that exists. The store's revision tells a reader whether anything changed at all.
#[test]
fn a_write_over_a_revision_someone_else_moved_is_refused() {
    let Some(etcd) = start_etcd() else {
        eprintln!("skipped: etcd is not installed (scripts/test.sh installs etcd-server)");
        return;
    };
    let c = Etcd::new(std::slice::from_ref(&etcd.url), Duration::from_secs(2));
    let key = "/sharpeye/t/directory";
    let r1 = c.put_if_unchanged(key, b"v1", 0).unwrap().expect("absent, so created");
    assert_eq!(
        c.put_if_unchanged(key, b"v1 again", 0).unwrap(),
        None,
        "a create over a key"
    );
    assert_eq!(c.get(key).unwrap().map(|kv| kv.mod_revision), Some(r1));
    // Two members read r1; the first write wins, the second is told.
    let r2 = c
        .put_if_unchanged(key, b"rec-1's", r1)
        .unwrap()
        .expect("unchanged, so written");
    assert!(r2 > r1);
    assert_eq!(c.put_if_unchanged(key, b"rec-2's", r1).unwrap(), None);
    let kv = c.get(key).unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"rec-1's"[..], r2));
    c.delete(key).unwrap();
    assert!(
        c.put_if_unchanged(key, b"v3", 0).unwrap().is_some(),
        "deleted, so absent again"
    );

    // The store's revision moves with writes and with a lease taking its keys, never with
    // keep-alives or reads (members read the claims again only when it moved).
    let lease = c.grant(2).unwrap();
    c.put("/sharpeye/t/owners/cam1", b"rec-1", lease).unwrap();
    let r = c.revision().unwrap();
    assert_eq!(c.keep_alive(lease).unwrap(), Some(2));
    let _ = c.prefix("/sharpeye/t/").unwrap();
    assert_eq!(c.revision().unwrap(), r, "a keep-alive or a read moved the revision");
    c.put("/sharpeye/t/owners/cam2", b"rec-1", lease).unwrap();
    let r2 = c.revision().unwrap();
    assert!(r2 > r);
    let t = Instant::now();
    while c.revision().unwrap() == r2 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the lease's expiry did not move the revision"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.prefix("/sharpeye/t/owners/").unwrap().is_empty());
}

/// A peer that answers every request with `body` (status 200), for `n` requests.
fn fake(body: &'static str, n: usize) -> String {
    use std::io::{Read, Write};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn malformed_answers_are_errors_that_name_the_endpoint_never_panics() {
    for (body, call) in [
        ("hello", "grant"),
        (r#"{"ID":"0"}"#, "grant"),
        (r#"{"kvs":[{"key":"***","value":""}]}"#, "prefix"),
        (r#"{"kvs":[{"key":"L2E=","value":"","create_revision":"x"}]}"#, "prefix"),
        (r#"{"kvs":[{"key":"/w==","value":""}]}"#, "prefix"),
        (r#"{"header":{}}"#, "put"),
        (r#"{"result":{"TTL":"soon"}}"#, "keep_alive"),
    ] {
        let url = fake(body, 1);
        let c = Etcd::new(std::slice::from_ref(&url), Duration::from_secs(2));
        let err = match call {
            "grant" => c.grant(5).map(|_| ()),
            "prefix" => c.prefix("/a").map(|_| ()),
            "put" => c.put("/a", b"1", 0).map(|_| ()),
            _ => c.keep_alive(1).map(|_| ()),
        }
        .unwrap_err()
        .to_string();
        assert!(err.contains(url.trim_start_matches("http://")), "{body}: {err}");
    }
}

fn member(name: &str) -> cluster::MemberInfo {
    cluster::MemberInfo {
        name: name.into(),
        url: format!("http://{name}.example:8080"),
        weight: 1.0,
    }
}

/// Waits until `m`'s view satisfies `f`.
fn until(m: &cluster::Membership, limit: Duration, f: impl Fn(&cluster::View) -> bool) -> cluster::View {
    let t = Instant::now();
    loop {
        let v = m.view();
        if f(&v) {
            return v;
        }
        assert!(t.elapsed() < limit, "{v:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three members see each other and share 300 cameras; one stops keeping its lease alive (a
/// killed node): within its TTL the others see it gone, and only its cameras move, to them.
#[test]
fn members_see_each_other_and_a_dead_one_s_cameras_move_to_the_others_within_its_ttl() {
    let Some(etcd) = start_etcd() else {
        eprintln!("skipped: etcd is not installed (scripts/test.sh installs etcd-server)");
        return;
    };
    let client = || Etcd::new(std::slice::from_ref(&etcd.url), Duration::from_secs(2));
    let ttl = 3;
    let a = cluster::Membership::join(client(), "district-7", member("rec-1"), ttl);
    let b = cluster::Membership::join(client(), "district-7", member("rec-2"), ttl);
    let c = cluster::Membership::join(client(), "district-7", member("rec-3"), ttl);
    let all3 = |v: &cluster::View| v.members.len() == 3 && matches!(v.lease, cluster::LeaseState::Held { .. });
    for m in [&a, &b, &c] {
        until(m, Duration::from_secs(10), all3);
    }
    let cams: Vec<String> = (0..300).map(|i| format!("cam{i}")).collect();
    let before: Vec<String> = cams
        .iter()
        .map(|cam| a.view().owner_of(cam).unwrap().to_owned())
        .collect();
    // Every member computes the same owners.
    for m in [&b, &c] {
        let v = m.view();
        assert!(
            cams.iter()
                .zip(&before)
                .all(|(cam, o)| v.owner_of(cam) == Some(o.as_str()))
        );
    }
    for name in ["rec-1", "rec-2", "rec-3"] {
        let n = before.iter().filter(|o| *o == name).count();
        assert!((70..=130).contains(&n), "{name} owns {n} of 300");
    }
    // rec-2 dies without a word.
    let died = Instant::now();
    b.abandon();
    let gone = |v: &cluster::View| v.members.iter().all(|m| m.name != "rec-2");
    until(&a, Duration::from_secs(u64::from(ttl) + 5), gone);
    let noticed = died.elapsed();
    until(&c, Duration::from_secs(2), gone);
    assert!(noticed <= Duration::from_secs(u64::from(ttl) + 2), "{noticed:?}");
    let after = a.view();
    for (cam, o) in cams.iter().zip(&before) {
        let now = after.owner_of(cam).unwrap();
        if o == "rec-2" {
            assert_ne!(now, "rec-2");
        } else {
            assert_eq!(&now, o, "{cam} moved though its owner lives");
        }
    }
    eprintln!("rec-2's death noticed after {noticed:?} (lease TTL {ttl} s)");
    // rec-2 is down, not gone: the others say so (its recordings are missing from merged
    // answers), until it is forgotten. A live member cannot be.
    let down = |v: &cluster::View| v.down() == ["rec-2"];
    until(&a, Duration::from_secs(2), down);
    until(&c, Duration::from_secs(2), down);
    assert!(!cluster::membership::forget(&client(), "district-7", "rec-1").unwrap());
    assert!(cluster::membership::forget(&client(), "district-7", "rec-2").unwrap());
    until(&a, Duration::from_secs(3), |v| {
        v.down().is_empty() && v.known.len() == 2
    });
}

/// The lease id a membership holds (waiting for it).
fn lease_of(m: &cluster::Membership) -> i64 {
    let v = until(m, Duration::from_secs(10), |v| {
        matches!(v.lease, cluster::LeaseState::Held { .. })
    });
    match v.lease {
        cluster::LeaseState::Held { id, .. } => id,
        _ => unreachable!(),
    }
}

/// Two members claim their cameras in etcd, each claim fenced by its revision; one dies: the
/// other claims its cameras after the lease expires, with newer tokens, and the dead one's
/// fenced writes for them fail. At no time do two members hold a camera's key.
#[test]
fn claims_follow_ownership_and_a_dead_member_s_tokens_stop_working() {
    use cluster::claims::{Claims, reconcile};
    use cluster::keys::owner;
    let Some(etcd) = start_etcd() else {
        eprintln!("skipped: etcd is not installed (scripts/test.sh installs etcd-server)");
        return;
    };
    let client = || Etcd::new(std::slice::from_ref(&etcd.url), Duration::from_secs(2));
    let cams: Vec<String> = (0..40).map(|i| format!("cam{i}")).collect();
    let a = cluster::Membership::join(client(), "street-9", member("rec-1"), 3);
    let b = cluster::Membership::join(client(), "street-9", member("rec-2"), 3);
    for m in [&a, &b] {
        until(m, Duration::from_secs(10), |v| v.members.len() == 2);
    }
    let (la, lb) = (lease_of(&a), lease_of(&b));
    let (mut ca, mut cb) = (Claims::default(), Claims::default());
    let c = client();
    for _ in 0..3 {
        let steps = ca.plan("rec-1", &a.view(), &cams);
        reconcile(&c, "street-9", "rec-1", la, &mut ca, &steps).unwrap();
        let steps = cb.plan("rec-2", &b.view(), &cams);
        reconcile(&c, "street-9", "rec-2", lb, &mut cb, &steps).unwrap();
    }
    assert_eq!(
        ca.held().count() + cb.held().count(),
        cams.len(),
        "every camera held once"
    );
    // The key of exactly `cam` (a prefix read of `cam1` also finds `cam10`...).
    let exact = |cam: &str| -> Vec<cluster::Kv> {
        let k = owner("street-9", cam);
        c.prefix(&k).unwrap().into_iter().filter(|kv| kv.key == k).collect()
    };
    for cam in &cams {
        let kv = exact(cam);
        assert_eq!(kv.len(), 1);
        let owner = String::from_utf8(kv[0].value.clone()).unwrap();
        assert_eq!(Some(owner.as_str()), a.view().owner_of(cam));
        let fence = if owner == "rec-1" { ca.fence(cam) } else { cb.fence(cam) };
        assert_eq!(fence, Some(kv[0].create_revision));
    }
    let theirs: Vec<(String, i64)> = cb.held().map(|(c, f)| (c.to_owned(), f)).collect();
    assert!(!theirs.is_empty());
    // rec-2 dies; rec-1 takes its cameras once it sees it gone (its claims went with its lease).
    b.abandon();
    until(&a, Duration::from_secs(10), |v| v.members.len() == 1);
    let steps = ca.plan("rec-1", &a.view(), &cams);
    reconcile(&c, "street-9", "rec-1", la, &mut ca, &steps).unwrap();
    assert_eq!(ca.held().count(), cams.len());
    for (cam, old) in &theirs {
        let new = ca.fence(cam).unwrap();
        assert!(new > *old, "{cam}: a newer token");
        assert_eq!(
            c.put_if_held(&owner("street-9", cam), b"rec-2", lb, *old).unwrap(),
            None,
            "{cam}: the dead member's token no longer writes"
        );
        assert_eq!(exact(cam)[0].value, b"rec-1");
    }
}
