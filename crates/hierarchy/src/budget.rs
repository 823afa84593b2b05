//! A link's bandwidth budget, sans-IO: which pulls cross it, what each costs, and whether one
//! more fits. Live pulls are keyed by their stream (one per camera stream per link, whatever the
//! number of viewers); playback transfers by a request number.
//!
//! A live pull's cost is the larger of what it was admitted at (an estimate: the stream's
//! measured bitrate, or a default) and what it is measured using, so a camera that turns out
//! busier than thought counts as it is; when that pushes the link over its budget the newest
//! live pulls are the ones to shed ([`Budget::excess_live`]). A transfer costs what it was
//! admitted at (the recording's bitrate × speed) and may borrow whatever the budget has spare
//! ([`Budget::spare_kbps`]), paced so that it never takes more: a download on an idle link runs
//! at the link's budget, and slows as soon as live pulls need the room.

use std::collections::HashMap;
use std::fmt::Write;

use media::{StreamId, StreamKind};

/// What crosses a link.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PullKey {
    /// A live stream.
    Live(StreamId),
    /// A recorded range being fetched (playback, HLS segment, export download), by number.
    Transfer(u64),
    /// A GB/T 28181 media session toward an upper platform, by number, and what it carries
    /// (`live CAMERA`, `playback CAMERA`): each session crosses the link on its own.
    Session(u64, String),
}

impl std::fmt::Display for PullKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullKey::Live(s) => write!(f, "{s}"),
            PullKey::Transfer(n) => write!(f, "playback #{n}"),
            PullKey::Session(n, what) => write!(f, "{what} (session #{n})"),
        }
    }
}

/// The bitrates a camera's streams are expected to need, in kbit/s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRates {
    /// Main stream.
    pub main_kbps: u64,
    /// Sub-stream, when the camera has one.
    pub sub_kbps: Option<u64>,
}

/// Why a pull was refused, for the 503 `link_budget`: the message names the link, its budget,
/// what the pull needed and the pulls using the link.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LinkRefusal {
    /// The link's id.
    pub link: String,
    /// The whole explanation.
    pub message: String,
}

#[derive(Clone, Debug)]
struct Pull {
    admitted_kbps: u64,
    measured_kbps: u64,
    /// The lower node said what the stream needs: that is what it costs. Measured where the
    /// video arrives over whole GOPs, it is better than this link's own meter, which a
    /// congested link caps and a pull's opening burst (the lower's cached GOP) inflates.
    declared: bool,
    /// Order of admission: the newest live pulls are shed first.
    order: u64,
}

impl Pull {
    fn cost(&self, key: &PullKey) -> u64 {
        match key {
            PullKey::Live(_) if self.declared => self.admitted_kbps,
            PullKey::Live(_) => self.admitted_kbps.max(self.measured_kbps),
            // Anything above its admitted rate is borrowed spare budget, paced to fit.
            PullKey::Transfer(_) | PullKey::Session(..) => self.admitted_kbps,
        }
    }
}

/// One link's budget and the pulls counted against it.
#[derive(Debug)]
pub struct Budget {
    link: String,
    budget_kbps: u64,
    pulls: HashMap<PullKey, Pull>,
    refusals: u64,
    admitted: u64,
}

fn mbps(kbps: u64) -> String {
    format!("{:.1} Mbit/s", kbps as f64 / 1000.0)
}

impl Budget {
    /// The budget of link `link`: `budget_kbps` kbit/s.
    pub fn new(link: &str, budget_kbps: u64) -> Budget {
        Budget {
            link: link.to_owned(),
            budget_kbps,
            pulls: HashMap::new(),
            refusals: 0,
            admitted: 0,
        }
    }

    /// The budget, kbit/s.
    pub fn budget_kbps(&self) -> u64 {
        self.budget_kbps
    }

    /// What the pulls counted now cost, kbit/s.
    pub fn in_use_kbps(&self) -> u64 {
        self.pulls.iter().map(|(k, p)| p.cost(k)).sum()
    }

    /// What the budget has left over, kbit/s: what a transfer may borrow on top of its own.
    pub fn spare_kbps(&self) -> u64 {
        self.budget_kbps.saturating_sub(self.in_use_kbps())
    }

    /// What `key` was admitted at, kbit/s (0 when it is not counted).
    pub fn admitted_kbps(&self, key: &PullKey) -> u64 {
        self.pulls.get(key).map_or(0, |p| p.admitted_kbps)
    }

    /// The live pulls to shed, newest first, for the rest to fit the budget; empty when the
    /// link is within it. Only live pulls grow past what they were admitted at.
    pub fn excess_live(&self) -> Vec<StreamId> {
        let mut over = self.in_use_kbps().saturating_sub(self.budget_kbps);
        let mut live: Vec<(&StreamId, &Pull)> = self
            .pulls
            .iter()
            .filter_map(|(k, p)| match k {
                PullKey::Live(s) => Some((s, p)),
                PullKey::Transfer(_) | PullKey::Session(..) => None,
            })
            .collect();
        live.sort_by_key(|(_, p)| std::cmp::Reverse(p.order));
        let mut shed = Vec::new();
        for (s, p) in live {
            if over == 0 {
                break;
            }
            over = over.saturating_sub(p.cost(&PullKey::Live(s.clone())));
            shed.push(s.clone());
        }
        shed
    }

    /// Pulls counted now.
    pub fn pulls(&self) -> usize {
        self.pulls.len()
    }

    /// Requests refused so far.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// True if `key` is counted (a live stream already crossing: joining it costs nothing).
    pub fn is_counted(&self, key: &PullKey) -> bool {
        self.pulls.contains_key(key)
    }

    fn fits(&self, kbps: u64) -> bool {
        self.in_use_kbps().saturating_add(kbps) <= self.budget_kbps
    }

    fn refusal(&mut self, wanted: u64, fallback: String) -> LinkRefusal {
        self.refusals += 1;
        let mut users: Vec<(&PullKey, u64)> = self.pulls.iter().map(|(k, p)| (k, p.cost(k))).collect();
        users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut text = String::new();
        for (i, (k, c)) in users.iter().enumerate() {
            if i == 8 {
                let _ = write!(text, " and {} more", users.len() - 8);
                break;
            }
            if i > 0 {
                text.push_str(", ");
            }
            let _ = write!(text, "{k} ({})", mbps(*c));
        }
        if text.is_empty() {
            text.push_str("nothing");
        }
        LinkRefusal {
            link: self.link.clone(),
            message: format!(
                "link {} ({}) cannot take {} more: {} in use by {text}{fallback}; try again when a viewer leaves, or ask an administrator to raise link_mbps",
                self.link,
                mbps(self.budget_kbps),
                mbps(wanted),
                mbps(self.in_use_kbps()),
            ),
        }
    }

    /// Admits a live view of `camera`'s `want` stream: the stream itself when it already
    /// crosses the link or fits; else the sub-stream when the main one was wanted and the
    /// camera has a sub-stream that crosses or fits; else a refusal naming what uses the link.
    /// An admitted stream that was not crossing is counted from now on.
    pub fn admit_live(
        &mut self,
        camera: &str,
        want: StreamKind,
        rates: StreamRates,
    ) -> Result<StreamKind, LinkRefusal> {
        let key = |k: StreamKind| PullKey::Live(StreamId::new(camera, k));
        // A transcode on this side is fed by the main stream: that is what crosses.
        let rate = |k: StreamKind| match k {
            StreamKind::Main | StreamKind::H264 => Some(rates.main_kbps),
            StreamKind::Sub => rates.sub_kbps,
        };
        let Some(wanted) = rate(want) else {
            return Err(self.refusal(0, format!("; camera {camera} has no {} stream", want.as_str())));
        };
        if self.is_counted(&key(want)) {
            return Ok(want);
        }
        if self.fits(wanted) {
            self.count(key(want), wanted);
            return Ok(want);
        }
        let fallback = match (want, rates.sub_kbps) {
            (StreamKind::Main, Some(sub)) => {
                if self.is_counted(&key(StreamKind::Sub)) {
                    return Ok(StreamKind::Sub);
                }
                if self.fits(sub) {
                    self.count(key(StreamKind::Sub), sub);
                    return Ok(StreamKind::Sub);
                }
                format!("; its sub-stream ({}) does not fit either", mbps(sub))
            }
            (StreamKind::Main, None) => format!("; camera {camera} has no sub-stream to fall back to"),
            (StreamKind::Sub | StreamKind::H264, _) => String::new(),
        };
        Err(self.refusal(wanted, fallback))
    }

    /// Admits a transfer of `kbps` (a recording's bitrate × speed) as `key`.
    pub fn admit_transfer(&mut self, key: PullKey, kbps: u64) -> Result<(), LinkRefusal> {
        if self.fits(kbps) {
            self.count(key, kbps);
            Ok(())
        } else {
            Err(self.refusal(kbps, String::new()))
        }
    }

    /// Counts `key` at `kbps` whether or not it fits (a pull that must run: a recorded stream
    /// of an upper level's own configuration, say).
    pub fn count(&mut self, key: PullKey, kbps: u64) {
        self.admitted += 1;
        let order = self.admitted;
        self.pulls.entry(key).or_insert(Pull {
            admitted_kbps: kbps,
            measured_kbps: 0,
            declared: false,
            order,
        });
    }

    /// The lower node says live pull `key` needs `kbps` (its own measurement, which a congested
    /// link cannot cap): it counts that from now on.
    pub fn declared(&mut self, key: &PullKey, kbps: u64) {
        if let (PullKey::Live(_), Some(p)) = (key, self.pulls.get_mut(key)) {
            p.admitted_kbps = kbps;
            p.declared = true;
        }
    }

    /// Records what `key` was measured using.
    pub fn measured(&mut self, key: &PullKey, kbps: u64) {
        if let Some(p) = self.pulls.get_mut(key) {
            p.measured_kbps = kbps;
        }
    }

    /// `key` stopped crossing the link.
    pub fn release(&mut self, key: &PullKey) {
        self.pulls.remove(key);
    }

    /// The pulls counted, with their costs (kbit/s), largest first.
    pub fn users(&self) -> Vec<(PullKey, u64)> {
        let mut v: Vec<(PullKey, u64)> = self.pulls.iter().map(|(k, p)| (k.clone(), p.cost(k))).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAM: StreamRates = StreamRates {
        main_kbps: 4000,
        sub_kbps: Some(500),
    };

    #[test]
    fn the_third_main_stream_falls_back_to_the_sub_stream_and_then_nothing_fits() {
        let mut b = Budget::new("community-1", 10_000);
        assert_eq!(b.admit_live("a", StreamKind::Main, CAM), Ok(StreamKind::Main));
        assert_eq!(b.admit_live("b", StreamKind::Main, CAM), Ok(StreamKind::Main));
        // Joining a stream already crossing costs nothing.
        assert_eq!(b.admit_live("a", StreamKind::Main, CAM), Ok(StreamKind::Main));
        assert_eq!(b.admit_live("c", StreamKind::Main, CAM), Ok(StreamKind::Sub));
        assert_eq!(b.in_use_kbps(), 8500);
        // A viewer of c's main stream shares the sub-stream already crossing.
        assert_eq!(b.admit_live("c", StreamKind::Main, CAM), Ok(StreamKind::Sub));
        let e = b
            .admit_live(
                "d",
                StreamKind::Main,
                StreamRates {
                    main_kbps: 4000,
                    sub_kbps: None,
                },
            )
            .unwrap_err();
        assert_eq!(b.refusals(), 1);
        let text = e.to_string();
        assert!(text.starts_with("link community-1 (10.0 Mbit/s) cannot take 4.0 Mbit/s more: 8.5 Mbit/s in use by a/main (4.0 Mbit/s), b/main (4.0 Mbit/s), c/sub (0.5 Mbit/s)"), "{text}");
        assert!(text.contains("has no sub-stream"), "{text}");
        assert!(b.in_use_kbps() <= b.budget_kbps());
        b.release(&PullKey::Live(StreamId::main("a")));
        assert_eq!(b.admit_live("d", StreamKind::Main, CAM), Ok(StreamKind::Main));
    }

    #[test]
    fn measured_use_counts_when_it_is_more_than_admitted() {
        let mut b = Budget::new("l", 10_000);
        b.admit_live("a", StreamKind::Main, CAM).unwrap();
        b.measured(&PullKey::Live(StreamId::main("a")), 9000);
        assert_eq!(b.in_use_kbps(), 9000);
        assert!(b.admit_transfer(PullKey::Transfer(1), 2000).is_err());
        assert!(b.admit_transfer(PullKey::Transfer(2), 1000).is_ok());
        assert_eq!(b.pulls(), 2);
        b.release(&PullKey::Transfer(2));
        assert_eq!(b.users(), vec![(PullKey::Live(StreamId::main("a")), 9000)]);
    }

    #[test]
    fn live_pulls_grown_past_the_budget_are_shed_newest_first() {
        let mut b = Budget::new("l", 10_000);
        for cam in ["a", "b", "c"] {
            b.admit_live(
                cam,
                StreamKind::Main,
                StreamRates {
                    main_kbps: 3000,
                    sub_kbps: None,
                },
            )
            .unwrap();
        }
        assert!(b.excess_live().is_empty());
        // Each camera turns out to send 4.5 Mbit/s: 13.5 on a 10 Mbit/s link.
        for cam in ["a", "b", "c"] {
            b.measured(&PullKey::Live(StreamId::main(cam)), 4500);
        }
        assert_eq!(b.excess_live(), vec![StreamId::main("c")]);
        b.measured(&PullKey::Live(StreamId::main("a")), 7000);
        assert_eq!(b.excess_live(), vec![StreamId::main("c"), StreamId::main("b")]);
        b.release(&PullKey::Live(StreamId::main("c")));
        b.release(&PullKey::Live(StreamId::main("b")));
        assert!(b.excess_live().is_empty());
    }

    #[test]
    fn a_rate_the_lower_node_declares_raises_what_a_live_pull_counts() {
        let mut b = Budget::new("l", 10_000);
        b.admit_live(
            "a",
            StreamKind::Main,
            StreamRates {
                main_kbps: 3000,
                sub_kbps: None,
            },
        )
        .unwrap();
        b.admit_live(
            "b",
            StreamKind::Main,
            StreamRates {
                main_kbps: 3000,
                sub_kbps: None,
            },
        )
        .unwrap();
        // Measured on a congested link, b looks like it fits; the lower node knows better.
        b.measured(&PullKey::Live(StreamId::main("b")), 2500);
        b.declared(&PullKey::Live(StreamId::main("b")), 8000);
        assert_eq!(b.in_use_kbps(), 11_000);
        assert_eq!(b.excess_live(), vec![StreamId::main("b")]);
        b.admit_transfer(PullKey::Transfer(1), 1).unwrap_err();
        // Nor does an opening burst measured here count over what the lower node says.
        b.declared(&PullKey::Live(StreamId::main("b")), 4000);
        b.measured(&PullKey::Live(StreamId::main("b")), 6500);
        assert_eq!(b.in_use_kbps(), 7000);
        b.declared(&PullKey::Transfer(9), 1);
        assert_eq!(b.pulls(), 2);
    }

    #[test]
    fn a_transfer_costs_what_it_was_admitted_at_and_may_borrow_only_the_spare() {
        let mut b = Budget::new("l", 10_000);
        b.admit_live("a", StreamKind::Main, CAM).unwrap();
        b.admit_transfer(PullKey::Transfer(1), 2000).unwrap();
        assert_eq!(b.spare_kbps(), 4000);
        // Borrowing the spare does not count against later admissions...
        b.measured(&PullKey::Transfer(1), 6000);
        assert_eq!(b.in_use_kbps(), 6000);
        assert_eq!(b.admitted_kbps(&PullKey::Transfer(1)), 2000);
        // ...and never makes a live pull the one to shed.
        assert!(b.excess_live().is_empty());
        assert_eq!(b.admit_live("b", StreamKind::Main, CAM), Ok(StreamKind::Main));
        assert_eq!(b.spare_kbps(), 0);
    }

    #[test]
    fn a_missing_stream_is_refused_with_the_reason() {
        let mut b = Budget::new("l", 10_000);
        let e = b
            .admit_live(
                "a",
                StreamKind::Sub,
                StreamRates {
                    main_kbps: 1,
                    sub_kbps: None,
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("camera a has no sub stream"), "{e}");
    }
}
