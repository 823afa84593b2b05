//! Which member records a camera: weighted rendezvous (highest random weight) hashing. Each
//! (camera, member) pair gets a pseudo-random score from a hash of both; the camera goes to the
//! member with the highest `-weight / ln(u)` for `u` the score in (0, 1), which gives each
//! member a share of the cameras proportional to its weight. No state and no coordination: any
//! node with the same member list gets the same owner, and when a member joins or leaves only
//! the cameras it wins or held move.

/// A live member and its capacity weight (cameras it can take relative to the others).
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Its name (`[cluster] name`).
    pub name: String,
    /// Capacity weight, > 0 (1.0 for equal machines).
    pub weight: f64,
}

/// FNV-1a over `camera`, a separator and `member`, then a 64-bit finalizer (splitmix) so that
/// similar names spread over the whole range.
fn hash(camera: &str, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in camera.bytes().chain(std::iter::once(0xff)).chain(member.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The score of member `name` of `weight` for `camera`.
fn score(camera: &str, name: &str, weight: f64) -> f64 {
    // u in (0, 1): never 0 (ln would be -inf) nor 1 (ln 0).
    let u = ((hash(camera, name) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -weight.max(f64::MIN_POSITIVE) / u.ln()
}

/// The member that records `camera`, or `None` without members. Ties (practically impossible)
/// go to the smaller name, so every node agrees.
pub fn owner<'a>(camera: &str, members: &'a [Member]) -> Option<&'a Member> {
    let name = owner_among(camera, members.iter().map(|m| (m.name.as_str(), m.weight)))?;
    members.iter().find(|m| m.name == name)
}

/// [`owner`] over `(name, weight)` pairs, borrowed: each member scored once and nothing
/// allocated, since a member asks this of every camera several times a round.
pub fn owner_among<'a>(camera: &str, candidates: impl IntoIterator<Item = (&'a str, f64)>) -> Option<&'a str> {
    let mut best: Option<(f64, &'a str)> = None;
    for (name, weight) in candidates {
        let s = score(camera, name, weight);
        let better = best.is_none_or(|(bs, bn)| s.total_cmp(&bs).then_with(|| bn.cmp(name)).is_gt());
        if better {
            best = Some((s, name));
        }
    }
    best.map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn members(names: &[(&str, f64)]) -> Vec<Member> {
        names
            .iter()
            .map(|(n, w)| Member {
                name: (*n).to_owned(),
                weight: *w,
            })
            .collect()
    }

    fn cameras(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("3402000000132{i:07}")).collect()
    }

    fn shares(cams: &[String], m: &[Member]) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for c in cams {
            *out.entry(owner(c, m).unwrap().name.clone()).or_default() += 1;
        }
        out
    }

    #[test]
    fn equal_members_share_evenly_and_weights_share_in_proportion() {
        let cams = cameras(30_000);
        let s = shares(&cams, &members(&[("rec-1", 1.0), ("rec-2", 1.0), ("rec-3", 1.0)]));
        for n in ["rec-1", "rec-2", "rec-3"] {
            assert!((9_500..=10_500).contains(&s[n]), "{s:?}");
        }
        let s = shares(&cams, &members(&[("big", 2.0), ("small", 1.0)]));
        assert!((19_400..=20_600).contains(&s["big"]), "{s:?}");
        assert!(owner("x", &[]).is_none());
    }

    #[test]
    fn a_join_moves_only_what_the_newcomer_wins_and_a_leave_only_what_the_leaver_held() {
        let cams = cameras(10_000);
        let three = members(&[("rec-1", 1.0), ("rec-2", 1.0), ("rec-3", 1.0)]);
        let mut four = three.clone();
        four.push(Member {
            name: "rec-4".into(),
            weight: 1.0,
        });
        let mut moved = 0;
        for c in &cams {
            let (before, after) = (owner(c, &three).unwrap(), owner(c, &four).unwrap());
            if before != after {
                assert_eq!(after.name, "rec-4", "{c} moved between old members");
                moved += 1;
            }
        }
        // A quarter of the cameras, as few as a fair share for the newcomer allows.
        assert!((2_300..=2_700).contains(&moved), "{moved}");
        let two: Vec<Member> = three.iter().filter(|m| m.name != "rec-2").cloned().collect();
        for c in &cams {
            let (before, after) = (owner(c, &three).unwrap(), owner(c, &two).unwrap());
            assert!(before == after || before.name == "rec-2", "{c}");
        }
    }

    #[test]
    fn every_node_agrees_whatever_order_it_lists_the_members_in() {
        let a = members(&[("rec-1", 1.0), ("rec-2", 1.5), ("rec-3", 0.5)]);
        let mut b = a.clone();
        b.reverse();
        for c in cameras(2_000) {
            assert_eq!(owner(&c, &a).unwrap().name, owner(&c, &b).unwrap().name);
        }
    }
}
