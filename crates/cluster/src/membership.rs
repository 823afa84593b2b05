//! A member's presence in its cluster: a lease kept alive, its entry
//! (`/sharpeye/<cluster>/members/<name>` = its URL and weight) under that lease, and the list
//! of live members read back, every third of the lease's TTL on a thread of its own. What it
//! knows is a [`View`]: who is live, and whether this member still holds its lease — when etcd
//! cannot be reached for longer than the TTL, the lease must be taken as lost (another member
//! may already own this one's cameras), and the view says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::etcd::Etcd;
use crate::gate::LeaseClock;

/// How long before etcd would expire the lease this member stops counting on it: a keep-alive's
/// answer may have been delayed, and the lease's time ran from when etcd received it.
const MARGIN: Duration = Duration::from_millis(500);

/// Asked, while etcd does not answer, whether etcd is down for the other members too (so that
/// nobody can take this member's cameras and it should go on recording them); `false` when it
/// cannot be told, and then the lease is taken as lost after its TTL.
pub type Confirm = Box<dyn Fn(&[MemberInfo]) -> bool + Send>;

/// A live member as its entry says.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberInfo {
    /// Its name (`[cluster] name`).
    pub name: String,
    /// Where its API is reached (`[cluster] advertise_url`).
    pub url: String,
    /// Its capacity weight.
    pub weight: f64,
}

/// This member's hold on its lease.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseState {
    /// Not registered yet.
    Starting,
    /// Held, with the seconds etcd last said it has left.
    Held {
        /// The lease.
        id: i64,
        /// Its TTL at the last keep-alive.
        ttl: u32,
    },
    /// etcd has not answered since `since`; within the TTL the lease may still hold.
    Unreachable {
        /// When etcd last answered.
        since: Instant,
        /// Why not.
        why: String,
        /// Whether the other members said etcd is down for them too: nobody can claim this
        /// member's cameras, so it goes on recording them (degraded) past the lease's TTL.
        confirmed: bool,
    },
    /// Lost: it expired, or etcd was unreachable longer than its TTL. Whatever this member
    /// owned may be another's now: it must not claim anything until it holds a new lease.
    Lost {
        /// Why.
        why: String,
    },
}

/// What a member knows of its cluster.
#[derive(Clone, Debug)]
pub struct View {
    /// Its lease.
    pub lease: LeaseState,
    /// The live members (itself included while its lease holds), by name.
    pub members: Vec<MemberInfo>,
    /// Whether etcd answered the last round.
    pub etcd_reachable: bool,
    /// Members being drained for maintenance (`sharpeye cluster drain`): live, but given no
    /// camera while another member is not drained.
    pub drained: Vec<String>,
    /// Every member that has joined and not been forgotten, live or not, by name.
    pub known: Vec<String>,
}

impl View {
    /// Members that have joined before but are not live now (killed, stopped, cut off): what
    /// they recorded is on their disks, missing from merged answers until they return.
    pub fn down(&self) -> Vec<String> {
        self.known
            .iter()
            .filter(|k| !self.members.iter().any(|m| &m.name == *k))
            .cloned()
            .collect()
    }

    /// Which of `cameras` member `me` should record: one owner computed per camera (in name order), for a
    /// round's plan and pins together.
    pub fn owned_by<'a>(&self, me: &str, cameras: &'a [String]) -> std::collections::BTreeSet<&'a str> {
        cameras
            .iter()
            .filter(|c| self.owner_of(c) == Some(me))
            .map(String::as_str)
            .collect()
    }

    /// The member that should record `camera`, among the live ones (the drained ones only
    /// while every member is drained).
    pub fn owner_of(&self, camera: &str) -> Option<&str> {
        let serving = self.members.iter().any(|m| !self.drained.contains(&m.name));
        let candidates = self
            .members
            .iter()
            .filter(|m| !serving || !self.drained.contains(&m.name))
            .map(|m| (m.name.as_str(), m.weight));
        crate::assign::owner_among(camera, candidates)
    }
}

/// A running membership: its view, and a way to leave.
pub struct Membership {
    view: Arc<Mutex<View>>,
    clock: Arc<LeaseClock>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A member's entry as etcd holds it (`prefix` + name = `{url, weight}`), or `None` when it is
/// not one (hostile or damaged entries are left out of the view).
pub fn member_from(kv: &crate::etcd::Kv, prefix: &str) -> Option<MemberInfo> {
    let name = kv.key.strip_prefix(prefix)?.to_owned();
    let v: Value = serde_json::from_slice(&kv.value).ok()?;
    let weight = v["weight"]
        .as_f64()
        .filter(|w| w.is_finite() && *w > 0.0 && *w <= 1000.0)?;
    Some(MemberInfo {
        name,
        url: v["url"].as_str()?.chars().take(512).collect(),
        weight,
    })
}

impl Membership {
    /// Joins cluster `cluster` on `etcd` as `me`, with a lease of `ttl` seconds.
    pub fn join(etcd: Etcd, cluster: &str, me: MemberInfo, ttl: u32) -> Membership {
        Membership::join_confirming(etcd, cluster, me, ttl, Box::new(|_| false))
    }

    /// As [`Membership::join`], asking `confirm` while etcd does not answer whether it is down
    /// for the other members too.
    pub fn join_confirming(etcd: Etcd, cluster: &str, me: MemberInfo, ttl: u32, confirm: Confirm) -> Membership {
        let clock = Arc::new(LeaseClock::default());
        let view = Arc::new(Mutex::new(View {
            lease: LeaseState::Starting,
            members: Vec::new(),
            etcd_reachable: false,
            drained: Vec::new(),
            known: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s, c) = (view.clone(), stop.clone(), clock.clone());
        let cluster = cluster.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("cluster-{}", me.name))
            .spawn(move || {
                run(
                    &Loop {
                        etcd: &etcd,
                        cluster: &cluster,
                        me: &me,
                        ttl: ttl.max(2),
                        view: &v,
                        stop: &s,
                        clock: &c,
                    },
                    &confirm,
                )
            })
            .ok();
        Membership {
            view,
            clock,
            stop,
            thread: Mutex::new(thread),
        }
    }

    /// Until when this member's lease is known to hold: what its recording gates read.
    pub fn clock(&self) -> &Arc<LeaseClock> {
        &self.clock
    }

    /// What it knows now.
    pub fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops keeping the lease alive without revoking it, as a killed process would: the
    /// others see this member go when the lease expires. For tests of failover.
    pub fn abandon(self) {
        self.stop();
    }

    /// Stops keeping the lease alive and waits for the loop to end (the member leaves: revoke
    /// the lease afterwards, or let it expire).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The members of `cluster` as etcd holds them: the live ones (by name), the drained ones and
/// every one known.
struct Members {
    live: Vec<MemberInfo>,
    drained: Vec<String>,
    known: Vec<String>,
}

/// Names under `prefix`, in key order.
fn names(etcd: &Etcd, prefix: &str) -> Result<Vec<String>, crate::etcd::EtcdError> {
    Ok(etcd
        .prefix(prefix)?
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(prefix).map(str::to_owned))
        .collect())
}

/// The members of `cluster`, as etcd holds them.
fn read_members(etcd: &Etcd, cluster: &str) -> Result<Members, crate::etcd::EtcdError> {
    let prefix = crate::keys::members(cluster);
    let mut members: Vec<MemberInfo> = etcd
        .prefix(&prefix)?
        .iter()
        .filter_map(|kv| member_from(kv, &prefix))
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Members {
        live: members,
        drained: names(etcd, &crate::keys::drains(cluster))?,
        known: names(etcd, &crate::keys::known(cluster))?,
    })
}

/// Forgets member `name` of `cluster` (decommissioned: no longer reported down). Refused while
/// it is live, since it would only be known again at its next join.
pub fn forget(etcd: &Etcd, cluster: &str, name: &str) -> Result<bool, crate::etcd::EtcdError> {
    if etcd.get(&crate::keys::member(cluster, name))?.is_some() {
        return Ok(false);
    }
    etcd.delete(&crate::keys::known_member(cluster, name))?;
    Ok(true)
}

/// Drains member `name` of `cluster` (`on`: its cameras go to the others, each at a key frame,
/// until it is undrained) or undrains it. Kept in etcd without a lease: a drained member stays
/// drained across its restarts, which is what maintenance needs.
pub fn set_drained(etcd: &Etcd, cluster: &str, name: &str, on: bool, why: &str) -> Result<(), crate::etcd::EtcdError> {
    let key = crate::keys::drain(cluster, name);
    if on {
        etcd.put(&key, why.as_bytes(), 0).map(|_| ())
    } else {
        etcd.delete(&key)
    }
}

/// The cluster as etcd holds it, for `sharpeye cluster status`: its live members and the
/// drained ones, and who claims each camera.
pub fn read_cluster(etcd: &Etcd, cluster: &str) -> Result<View, crate::etcd::EtcdError> {
    let m = read_members(etcd, cluster)?;
    Ok(View {
        lease: LeaseState::Starting,
        members: m.live,
        etcd_reachable: true,
        drained: m.drained,
        known: m.known,
    })
}

/// What the membership loop works with.
struct Loop<'a> {
    etcd: &'a Etcd,
    cluster: &'a str,
    me: &'a MemberInfo,
    ttl: u32,
    view: &'a Mutex<View>,
    stop: &'a AtomicBool,
    clock: &'a LeaseClock,
}

/// The membership loop: register, keep alive, read the members, until told to stop.
fn run(l: &Loop<'_>, confirm: &Confirm) {
    let (etcd, me, ttl) = (l.etcd, l.me, l.ttl);
    let period = Duration::from_millis(u64::from(ttl) * 1000 / 3);
    let mut lease: Option<i64> = None;
    let mut answered = Instant::now();
    let set = |f: &dyn Fn(&mut View)| f(&mut l.view.lock().unwrap_or_else(|p| p.into_inner()));
    let entry = json!({ "url": me.url, "weight": me.weight }).to_string();
    let lost = |why: String| {
        l.clock.lose();
        set(&|v| {
            v.lease = LeaseState::Lost { why: why.clone() };
            v.members.retain(|m| m.name != me.name);
        });
    };
    loop {
        let sent = Instant::now();
        // The lease runs from when etcd received the call, later than `sent`.
        let until = |ttl: u32| sent + Duration::from_secs(u64::from(ttl)).saturating_sub(MARGIN);
        let round = (|| -> Result<(), crate::etcd::EtcdError> {
            match lease {
                Some(id) => match etcd.keep_alive(id)? {
                    Some(left) => {
                        l.clock.hold_until(until(left));
                        set(&|v| v.lease = LeaseState::Held { id, ttl: left });
                    }
                    None => {
                        lease = None;
                        lost("the lease expired (this member was paused or cut off longer than its TTL)".into());
                        return Ok(());
                    }
                },
                None => {
                    let id = etcd.grant(ttl)?;
                    etcd.put(&crate::keys::member(l.cluster, &me.name), entry.as_bytes(), id)?;
                    // Known from now on, down or not, until forgotten.
                    etcd.put(&crate::keys::known_member(l.cluster, &me.name), entry.as_bytes(), 0)?;
                    lease = Some(id);
                    l.clock.hold_until(until(ttl));
                    set(&|v| v.lease = LeaseState::Held { id, ttl });
                }
            }
            let m = read_members(etcd, l.cluster)?;
            set(&|v| {
                v.members = m.live.clone();
                v.drained = m.drained.clone();
                v.known = m.known.clone();
            });
            Ok(())
        })();
        match round {
            Ok(()) => {
                answered = Instant::now();
                set(&|v| v.etcd_reachable = true);
            }
            Err(e) => {
                let why = e.to_string();
                let others: Vec<MemberInfo> = {
                    let mut v = l.view.lock().unwrap_or_else(|p| p.into_inner());
                    v.etcd_reachable = false;
                    v.members.iter().filter(|m| m.name != me.name).cloned().collect()
                };
                let confirmed = lease.is_some() && confirm(&others);
                if confirmed {
                    // etcd is down for everyone: nobody can claim this member's cameras.
                    l.clock.hold_until(Instant::now() + Duration::from_secs(u64::from(ttl)));
                    set(&|v| {
                        v.lease = LeaseState::Unreachable {
                            since: answered,
                            why: why.clone(),
                            confirmed: true,
                        }
                    });
                } else if answered.elapsed() > Duration::from_secs(u64::from(ttl)) {
                    // Its lease would have expired by now: another member may own its cameras.
                    lease = None;
                    lost(format!("etcd unreachable for longer than the lease's {ttl} s: {why}"));
                } else {
                    set(&|v| {
                        v.lease = LeaseState::Unreachable {
                            since: answered,
                            why: why.clone(),
                            confirmed: false,
                        }
                    });
                }
            }
        }
        let t = Instant::now();
        while t.elapsed() < period {
            if l.stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::Kv;

    fn kv(key: &str, value: &str) -> Kv {
        Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: 1,
        }
    }

    #[test]
    fn member_entries_are_read_and_hostile_ones_left_out() {
        let p = "/sharpeye/t/members/";
        let ok = member_from(&kv("/sharpeye/t/members/rec-1", r#"{"url":"http://a","weight":2}"#), p);
        assert_eq!(ok.unwrap().weight, 2.0);
        for value in [
            "not json",
            r#"{"url":"http://a"}"#,
            r#"{"url":"http://a","weight":-1}"#,
            r#"{"url":"http://a","weight":1e9}"#,
            r#"{"weight":1}"#,
        ] {
            assert_eq!(member_from(&kv("/sharpeye/t/members/x", value), p), None, "{value}");
        }
        assert_eq!(member_from(&kv("/elsewhere/x", r#"{"url":"u","weight":1}"#), p), None);
    }

    #[test]
    fn an_unreachable_etcd_is_said_and_the_lease_taken_as_lost_after_its_ttl() {
        let etcd = Etcd::new(&["http://127.0.0.1:1".into()], Duration::from_millis(200));
        let m = Membership::join(
            etcd,
            "t",
            MemberInfo {
                name: "rec-1".into(),
                url: "http://10.0.0.21:8080".into(),
                weight: 1.0,
            },
            2,
        );
        let t = Instant::now();
        loop {
            match m.view().lease {
                LeaseState::Lost { why } => {
                    assert!(why.contains("unreachable") && why.contains("127.0.0.1:1"), "{why}");
                    break;
                }
                LeaseState::Held { .. } => panic!("no etcd, no lease"),
                _ => {}
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", m.view());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
