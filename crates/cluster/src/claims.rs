//! A member's claims on the cameras it should record: `/sharpeye/<cluster>/owners/<camera>` =
//! its name, under its lease, each with the revision it was made at — the fencing token the
//! member attaches to what it writes for that camera, so that once the claim is lost (the lease
//! expired, the camera went to another member) nothing it still writes counts as the owner's.
//!
//! [`Claims::plan`] is sans-IO: from the [`View`] and the cameras of the level, the claims to
//! make and to give up. [`reconcile`] applies a plan to etcd. A camera whose key another member
//! still holds (it has not let go yet during a rebalance) is simply claimed again next round.

use std::collections::{BTreeMap, BTreeSet};

use crate::etcd::{Etcd, EtcdError};
use crate::membership::{LeaseState, View};

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Claim this camera.
    Claim(String),
    /// Give this camera up.
    Release(String),
}

/// The cameras a member holds, with each claim's revision.
#[derive(Clone, Debug, Default)]
pub struct Claims {
    held: BTreeMap<String, i64>,
}

impl Claims {
    /// What to do so that this member (`me`) holds exactly the cameras it owns in `view`, of
    /// `cameras`. Without its lease it holds nothing: every claim is forgotten (etcd deleted
    /// them with the lease) and nothing is claimed.
    pub fn plan(&mut self, me: &str, view: &View, cameras: &[String]) -> Vec<Step> {
        self.plan_owned(view, &view.owned_by(me, cameras))
    }

    /// [`Claims::plan`] from the cameras this member owns in `view`, computed once a round
    /// by the caller ([`View::owned_by`]) since its pins need them too. Linear in the cameras:
    /// at 25,000 a scan of the camera list per held claim had cost 241 ms a round
    /// (`cargo bench -p cluster --bench assign`).
    pub fn plan_owned(&mut self, view: &View, owned: &BTreeSet<&str>) -> Vec<Step> {
        if !matches!(view.lease, LeaseState::Held { .. }) {
            if matches!(view.lease, LeaseState::Lost { .. }) {
                self.held.clear();
            }
            return Vec::new();
        }
        let mut steps: Vec<Step> = self
            .held
            .keys()
            .filter(|c| !owned.contains(c.as_str()))
            .map(|c| Step::Release(c.clone()))
            .collect();
        steps.extend(
            owned
                .iter()
                .filter(|c| !self.held.contains_key(**c))
                .map(|c| Step::Claim((*c).to_owned())),
        );
        steps
    }

    /// Claims already held, camera by camera with their fencing tokens: a member's state
    /// after [`reconcile`] made them, for tests and benches that start from there.
    pub fn holding(held: impl IntoIterator<Item = (String, i64)>) -> Claims {
        Claims {
            held: held.into_iter().collect(),
        }
    }

    /// The fencing token of this member's claim on `camera`, while it holds it.
    pub fn fence(&self, camera: &str) -> Option<i64> {
        self.held.get(camera).copied()
    }

    /// The cameras held, by name.
    pub fn held(&self) -> impl Iterator<Item = (&str, i64)> {
        self.held.iter().map(|(c, f)| (c.as_str(), *f))
    }
}

/// Applies `steps` for member `me` of `cluster`, under `lease`: claims made are held with
/// their revision; releases delete only this member's own claims.
pub fn reconcile(
    etcd: &Etcd,
    cluster: &str,
    me: &str,
    lease: i64,
    claims: &mut Claims,
    steps: &[Step],
) -> Result<(), EtcdError> {
    for step in steps {
        match step {
            Step::Claim(c) => {
                if let Some(fence) = etcd.claim(&crate::keys::owner(cluster, c), me.as_bytes(), lease)? {
                    claims.held.insert(c.clone(), fence);
                }
            }
            Step::Release(c) => {
                if let Some(fence) = claims.held.remove(c) {
                    etcd.delete_if_held(&crate::keys::owner(cluster, c), fence)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberInfo;

    fn view(names: &[&str], lease: LeaseState) -> View {
        View {
            lease,
            members: names
                .iter()
                .map(|n| MemberInfo {
                    name: (*n).into(),
                    url: String::new(),
                    weight: 1.0,
                })
                .collect(),
            etcd_reachable: true,
            known: names.iter().map(|n| (*n).into()).collect(),
            drained: Vec::new(),
        }
    }

    #[test]
    fn a_member_claims_what_it_owns_gives_up_what_it_no_longer_does_and_nothing_without_its_lease() {
        let cams: Vec<String> = (0..50).map(|i| format!("cam{i}")).collect();
        let held = LeaseState::Held { id: 1, ttl: 3 };
        let two = view(&["rec-1", "rec-2"], held.clone());
        let mut c = Claims::default();
        let steps = c.plan("rec-1", &two, &cams);
        let mine: Vec<&String> = cams.iter().filter(|x| two.owner_of(x) == Some("rec-1")).collect();
        assert_eq!(steps.len(), mine.len());
        assert!(steps.iter().all(|s| matches!(s, Step::Claim(_))));
        for (i, s) in steps.iter().enumerate() {
            if let Step::Claim(cam) = s {
                c.held.insert(cam.clone(), 100 + i as i64);
            }
        }
        assert!(c.plan("rec-1", &two, &cams).is_empty(), "converged");
        // A third member joins: rec-1 gives up exactly what the newcomer wins from it.
        let three = view(&["rec-1", "rec-2", "rec-3"], held.clone());
        let steps = c.plan("rec-1", &three, &cams);
        for s in &steps {
            let Step::Release(cam) = s else { panic!("{s:?}") };
            assert_eq!(three.owner_of(cam), Some("rec-3"));
        }
        // A camera removed from the level is given up too.
        let fewer: Vec<String> = cams.iter().filter(|x| *x != mine[0]).cloned().collect();
        assert!(c.plan("rec-1", &two, &fewer).contains(&Step::Release(mine[0].clone())));
        // Unreachable: hold on, do nothing; lost: hold nothing.
        let unreachable = view(
            &["rec-1"],
            LeaseState::Unreachable {
                since: std::time::Instant::now(),
                why: "x".into(),
                confirmed: false,
            },
        );
        assert!(c.plan("rec-1", &unreachable, &cams).is_empty());
        assert!(c.fence(mine[0]).is_some());
        assert!(
            c.plan("rec-1", &view(&[], LeaseState::Lost { why: "x".into() }), &cams)
                .is_empty()
        );
        assert_eq!(c.held().count(), 0);
    }

    #[test]
    fn a_drained_member_owns_nothing_while_another_serves() {
        let cams: Vec<String> = (0..30).map(|i| format!("cam{i}")).collect();
        let mut v = view(&["rec-1", "rec-2", "rec-3"], LeaseState::Held { id: 1, ttl: 3 });
        let before: Vec<Option<String>> = cams.iter().map(|c| v.owner_of(c).map(str::to_owned)).collect();
        v.drained = vec!["rec-2".into()];
        for (c, was) in cams.iter().zip(&before) {
            let now = v.owner_of(c);
            assert_ne!(now, Some("rec-2"));
            if was.as_deref() != Some("rec-2") {
                assert_eq!(now, was.as_deref(), "{c}: only the drained member's cameras move");
            }
        }
        v.drained = vec!["rec-1".into(), "rec-2".into(), "rec-3".into()];
        assert!(
            cams.iter().all(|c| v.owner_of(c).is_some()),
            "all drained: still recorded"
        );
    }
}
