//! Where a lower platform's channels hang: the org path each channel gets from the business
//! groups (215), virtual organisations (216) and subordinate systems (200) of the catalog,
//! following `ParentID` up to the platform that registered.

use std::collections::{HashMap, HashSet};

use gb28181::manscdp::CatalogItem;

/// Longest chain of org nodes followed; a deeper (or looping) tree is cut there.
const MAX_DEPTH: usize = 16;

/// Longest path segment kept from a node's name.
const MAX_SEGMENT: usize = 64;

/// True for an item that places channels rather than being one.
pub fn is_org_node(item: &CatalogItem) -> bool {
    matches!(item.type_code(), Some(200 | 215 | 216))
}

/// A name as one segment of an org path: no `/`, no control characters, bounded; the id when
/// nothing is left.
fn segment(name: &str, id: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c == '/' || c.is_control() { '-' } else { c })
        .take(MAX_SEGMENT)
        .collect();
    let s = s.trim();
    if s.is_empty() { id.to_owned() } else { s.to_owned() }
}

/// The org nodes of one device's catalog, by id: (path segment, `ParentID` as sent).
#[derive(Clone, Debug, Default)]
pub struct OrgTree {
    nodes: HashMap<String, (String, String)>,
}

impl OrgTree {
    /// Learns the org nodes among `items` of `device`'s catalog (a `DEL` event forgets one).
    pub fn learn(&mut self, device: &str, items: &[CatalogItem]) {
        for i in items.iter().filter(|i| is_org_node(i) && i.device_id != device) {
            if i.event.as_deref() == Some("DEL") {
                self.nodes.remove(&i.device_id);
            } else {
                let seg = segment(&i.name, &i.device_id);
                self.nodes.insert(i.device_id.clone(), (seg, i.parent_id.clone()));
            }
        }
    }

    /// How many org nodes are known.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no org node is known (the device is a plain device or NVR).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The org node a `ParentID` field names. Platforms write one id, or a `/`-separated
    /// path of ids (the nearest last); anything unknown (the platform itself) is the root.
    fn parent(&self, field: &str) -> Option<&str> {
        field
            .split(['/', ','])
            .rev()
            .find_map(|id| self.nodes.get_key_value(id.trim()).map(|(k, _)| k.as_str()))
    }

    /// The path segments from the top of the tree down to the node `parent_field` names.
    pub fn path(&self, parent_field: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut at = self.parent(parent_field);
        while let Some(id) = at {
            if out.len() >= MAX_DEPTH || !seen.insert(id) {
                break;
            }
            let Some((seg, up)) = self.nodes.get(id) else { break };
            out.push(seg.clone());
            at = self.parent(up);
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, name: &str, parent: &str) -> CatalogItem {
        CatalogItem {
            device_id: id.into(),
            name: name.into(),
            parent_id: parent.into(),
            ..Default::default()
        }
    }

    const DEV: &str = "21020000002000000001";

    #[test]
    fn channels_hang_under_their_org_chain_whatever_the_parent_dialect() {
        let items = vec![
            item("21020000002150000001", "Xigang street", DEV),
            item("21020000002160000001", "dalian", "21020000002150000001"),
            item("21020000002160000002", "xi/gang", "21020000002160000001"),
            item("21020000001320000001", "cam", "21020000002160000002"),
        ];
        let mut t = OrgTree::default();
        t.learn(DEV, &items);
        assert_eq!(t.len(), 3);
        assert_eq!(t.path("21020000002160000002"), ["Xigang street", "dalian", "xi-gang"]);
        // Hikvision-style path of ids, nearest last; and a parent that is the platform itself.
        assert_eq!(
            t.path(&format!("{DEV}/21020000002150000001/21020000002160000001")),
            ["Xigang street", "dalian"]
        );
        assert!(t.path(DEV).is_empty());
        assert!(t.path("").is_empty());
        // DEL forgets a node; its children then hang where the chain breaks.
        let mut del = item("21020000002160000001", "", "");
        del.event = Some("DEL".into());
        t.learn(DEV, &[del]);
        assert_eq!(t.path("21020000002160000002"), ["xi-gang"]);
    }

    #[test]
    fn loops_and_deep_chains_end() {
        let mut t = OrgTree::default();
        t.learn(
            DEV,
            &[
                item("21020000002160000001", "a", "21020000002160000002"),
                item("21020000002160000002", "b", "21020000002160000001"),
            ],
        );
        assert_eq!(
            t.path("21020000002160000001"),
            ["b", "a"],
            "the loop is cut where it closes"
        );
        let deep: Vec<CatalogItem> = (0..100)
            .map(|i| {
                item(
                    &format!("210200000021600{i:05}"),
                    "n",
                    &format!("210200000021600{:05}", i + 1),
                )
            })
            .collect();
        let mut t = OrgTree::default();
        t.learn(DEV, &deep);
        assert_eq!(t.path("21020000002160000000").len(), MAX_DEPTH);
        // Hostile names: empty, control characters, huge.
        let mut t = OrgTree::default();
        t.learn(
            DEV,
            &[
                item("21020000002160000001", " \u{7}", DEV),
                item("21020000002160000002", &"x".repeat(10_000), "21020000002160000001"),
            ],
        );
        let p = t.path("21020000002160000002");
        assert_eq!(p[0], "-");
        assert_eq!(p[1].len(), MAX_SEGMENT);
    }
}
