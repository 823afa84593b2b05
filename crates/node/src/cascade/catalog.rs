//! Our catalog as an upper platform sees it: the cameras shared with it, placed in a tree of
//! organisation nodes made from our org paths (a business group for the node, a virtual
//! organisation per path segment), each with a stable 20-digit id and the right `ParentID`, so
//! the tree survives being cascaded further up (wvp loses it past two levels).
//!
//! Cameras whose ids are 20-digit GB ids keep them; others get a mapped id, stable across
//! restarts (derived from the camera id), and the mapping is kept to find the camera again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gb28181::manscdp_out::{CatalogEntry, EntryKind};

/// One shared camera as the catalog needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedCamera {
    /// Our camera id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Org path (`dalian/xigang/renmin`).
    pub org: String,
    /// Online now.
    pub online: bool,
    /// (lat, lon).
    pub location: Option<(f64, f64)>,
    /// It can be steered.
    pub ptz: bool,
}

/// True for a GB/T 28181 id: 20 digits.
pub fn is_gb_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// A stable 6-digit serial for `key` (FNV-1a; stable across builds, unlike std's hasher).
fn serial(key: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 1_000_000) as u32
}

/// The ids of one upper's catalog: org nodes and channels, both ways.
#[derive(Debug, Default)]
pub struct Ids {
    /// Channel id toward the upper → our camera id.
    pub camera_of: HashMap<String, String>,
    /// Our camera id → channel id.
    pub channel_of: HashMap<String, String>,
}

/// Builds catalogs for an upper.
pub struct CatalogBuilder<'a> {
    /// Our platform id toward the upper (the tree's root).
    pub own_id: &'a str,
    /// Our node's name (the business group's).
    pub node_name: &'a str,
}

impl CatalogBuilder<'_> {
    /// The first ten digits of our id: centre code and industry, which made ids share.
    fn prefix(&self) -> String {
        if is_gb_id(self.own_id) {
            self.own_id[..10].to_owned()
        } else {
            "3402000000".to_owned()
        }
    }

    /// `prefix` + `kind` (3 digits) + network 0 + a serial from `key`, probing past ids taken.
    fn make_id(&self, kind: &str, key: &str, taken: &mut BTreeSet<String>) -> String {
        let mut n = serial(key);
        loop {
            let id = format!("{}{kind}0{n:06}", self.prefix());
            if taken.insert(id.clone()) {
                return id;
            }
            n = (n + 1) % 1_000_000;
        }
    }

    /// The business group's id (fixed per node).
    pub fn group_id(&self) -> String {
        format!("{}2150{:06}", self.prefix(), serial(self.own_id))
    }

    /// The catalog of `cameras` (in a stable order) and its ids.
    pub fn build(&self, cameras: &[SharedCamera]) -> (Vec<CatalogEntry>, Ids) {
        let civil = self.prefix()[..6].to_owned();
        let group = self.group_id();
        let mut taken: BTreeSet<String> = [group.clone(), self.own_id.to_owned()].into();
        let mut entries = vec![CatalogEntry {
            id: group.clone(),
            name: self.node_name.to_owned(),
            parent_id: self.own_id.to_owned(),
            civil_code: civil.clone(),
            kind: EntryKind::BusinessGroup,
        }];
        // Every prefix of every org path is a node, parents before children.
        let mut paths: BTreeSet<String> = BTreeSet::new();
        for c in cameras {
            let mut acc = String::new();
            for part in c.org.split('/').filter(|p| !p.is_empty()) {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(part);
                paths.insert(acc.clone());
            }
        }
        let mut org_ids: BTreeMap<String, String> = BTreeMap::new();
        for p in &paths {
            let id = self.make_id("216", &format!("org:{p}"), &mut taken);
            let parent = p
                .rsplit_once('/')
                .and_then(|(up, _)| org_ids.get(up).cloned())
                .unwrap_or_else(|| group.clone());
            entries.push(CatalogEntry {
                id: id.clone(),
                name: p.rsplit('/').next().unwrap_or(p).to_owned(),
                parent_id: parent,
                civil_code: civil.clone(),
                kind: EntryKind::VirtualOrg {
                    business_group: group.clone(),
                },
            });
            org_ids.insert(p.clone(), id);
        }
        // Cameras with GB ids keep them; the rest are mapped after, so a mapped id never takes
        // a real one.
        let mut ids = Ids::default();
        let mut sorted: Vec<&SharedCamera> = cameras.iter().collect();
        sorted.sort_by_key(|c| (!is_gb_id(&c.id), c.id.clone()));
        for c in sorted {
            let channel = if is_gb_id(&c.id) && taken.insert(c.id.clone()) {
                c.id.clone()
            } else {
                self.make_id("132", &format!("camera:{}", c.id), &mut taken)
            };
            let org = c.org.trim_matches('/');
            entries.push(CatalogEntry {
                id: channel.clone(),
                name: c.name.clone(),
                parent_id: org_ids.get(org).cloned().unwrap_or_else(|| group.clone()),
                civil_code: civil.clone(),
                kind: EntryKind::Channel {
                    online: c.online,
                    location: c.location,
                    ptz_type: c.ptz.then_some(1),
                    business_group: Some(group.clone()),
                },
            });
            ids.camera_of.insert(channel.clone(), c.id.clone());
            ids.channel_of.insert(c.id.clone(), channel);
        }
        (entries, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(id: &str, org: &str) -> SharedCamera {
        SharedCamera {
            id: id.into(),
            name: format!("cam {id}"),
            org: org.into(),
            online: true,
            location: None,
            ptz: false,
        }
    }

    #[test]
    fn the_tree_places_every_camera_and_ids_are_stable() {
        let b = CatalogBuilder {
            own_id: "21020000002000000010",
            node_name: "Xigang street",
        };
        let cams = vec![
            cam("21020000001320000001", "dalian/xigang/renmin"),
            cam("gate-2", "dalian/xigang/bayi"),
            cam("21020000001320000003", "dalian/xigang"),
        ];
        let (entries, ids) = b.build(&cams);
        let by_id: HashMap<&str, &CatalogEntry> = entries.iter().map(|e| (e.id.as_str(), e)).collect();
        assert_eq!(by_id.len(), entries.len(), "ids are unique");
        // 1 group + 4 org nodes (dalian, dalian/xigang, .../renmin, .../bayi) + 3 channels.
        assert_eq!(entries.len(), 8);
        for e in &entries {
            assert!(is_gb_id(&e.id) && e.id.starts_with("2102000000"), "{}", e.id);
            // Every parent is in the catalog or is us.
            assert!(
                by_id.contains_key(e.parent_id.as_str()) || e.parent_id == b.own_id,
                "{e:?}"
            );
        }
        // The chain from a camera to the root goes through its org nodes.
        let mut chain = Vec::new();
        let mut at = "21020000001320000001";
        while let Some(e) = by_id.get(at) {
            chain.push(e.name.clone());
            at = &e.parent_id;
        }
        assert_eq!(
            chain,
            [
                "cam 21020000001320000001",
                "renmin",
                "xigang",
                "dalian",
                "Xigang street"
            ]
        );
        // A GB id is kept; another is mapped, both ways.
        assert_eq!(ids.channel_of["21020000001320000001"], "21020000001320000001");
        let mapped = &ids.channel_of["gate-2"];
        assert_eq!(&mapped[10..13], "132");
        assert_eq!(ids.camera_of[mapped], "gate-2");
        // The same cameras give the same ids again (a restart, another upper).
        let (again, _) = b.build(&cams);
        assert_eq!(entries, again);
    }
}
