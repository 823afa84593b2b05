//! Time-weighted rates: each second's state of each camera is credited to its day (UTC+8 by
//! default, the reporting day of Chinese governance centres): seconds expected, online, intact,
//! networked, recording, and the seconds of each cause of failure. Every change of a camera's
//! state is appended to `transitions.jsonl` (the record of what failed when, and why). Each
//! day's totals are a rollup file, `daily/YYYY-MM-DD.json` per camera and
//! `daily/YYYY-MM-DD.orgs.json` per org path (every org and each of its parents), rewritten
//! every minute for today and left alone after: a year's report for an org reads 365 small
//! files. Time the node was not running is not expected (nothing was observed).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::Cause;

/// Longest gap between ticks credited (a paused or suspended node does not count its pause).
const MAX_TICK_US: i64 = 5_000_000;
/// How often today's rollup is rewritten.
const FLUSH_US: i64 = 60_000_000;

/// Why the ledger could not read or write its files.
#[derive(Debug, thiserror::Error)]
#[error("rates {}: {action} failed: {source}; check the data disk", path.display())]
pub struct LedgerError {
    path: PathBuf,
    action: &'static str,
    source: std::io::Error,
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> LedgerError + 'a {
    move |source| LedgerError {
        path: path.to_owned(),
        action,
        source,
    }
}

/// A camera's state at one tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraState {
    /// Its org path (rolled up into every parent).
    pub org: String,
    /// Its stream is up.
    pub online: bool,
    /// `None` when its video is usable, else why not.
    pub fault: Option<Cause>,
    /// Reachable from this node.
    pub networked: bool,
    /// It should be recorded.
    pub record: bool,
    /// Inside a maintenance window: not expected, its time counted apart.
    pub maintenance: bool,
}

/// Seconds of one camera (or a sum of them) over a day (or a sum of days).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Camera-seconds observed.
    pub expected_s: f64,
    /// ...with the stream up.
    pub online_s: f64,
    /// ...with usable video.
    pub intact_s: f64,
    /// ...reachable.
    pub networked_s: f64,
    /// Camera-seconds that should have been recorded...
    pub expected_recording_s: f64,
    /// ...and were (online and recorded).
    pub recording_s: f64,
    /// Seconds not intact, by cause.
    #[serde(default)]
    pub causes: BTreeMap<String, f64>,
    /// Camera-seconds inside maintenance windows (not expected).
    #[serde(default)]
    pub maintenance_s: f64,
}

impl Totals {
    /// Adds `o` to this.
    pub fn add(&mut self, o: &Totals) {
        self.expected_s += o.expected_s;
        self.online_s += o.online_s;
        self.intact_s += o.intact_s;
        self.networked_s += o.networked_s;
        self.expected_recording_s += o.expected_recording_s;
        self.recording_s += o.recording_s;
        self.maintenance_s += o.maintenance_s;
        for (k, v) in &o.causes {
            *self.causes.entry(k.clone()).or_default() += v;
        }
    }

    fn credit(&mut self, s: &CameraState, dt: f64) {
        if s.maintenance {
            self.maintenance_s += dt;
            return;
        }
        self.expected_s += dt;
        if s.online {
            self.online_s += dt;
        }
        if s.networked {
            self.networked_s += dt;
        }
        match s.fault {
            None => self.intact_s += dt,
            Some(c) => *self.causes.entry(c.as_str().to_owned()).or_default() += dt,
        }
        if s.record {
            self.expected_recording_s += dt;
            if s.online {
                self.recording_s += dt;
            }
        }
    }

    /// `(online, intact, networked, recording)` as fractions (1 when nothing was expected).
    pub fn rates(&self) -> (f64, f64, f64, f64) {
        let r = |a: f64, b: f64| if b > 0.0 { a / b } else { 1.0 };
        (
            r(self.online_s, self.expected_s),
            r(self.intact_s, self.expected_s),
            r(self.networked_s, self.expected_s),
            r(self.recording_s, self.expected_recording_s),
        )
    }
}

/// One day's totals per camera.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DayTotals {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// By camera id.
    pub cameras: BTreeMap<String, Totals>,
    /// By org path: every camera's org and each of its parents ("" is the whole node).
    pub orgs: BTreeMap<String, Totals>,
}

/// A camera's state changed (what the node announces as an event).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// When (µs since the epoch).
    pub at_us: i64,
    /// The camera.
    pub camera: String,
    /// Online now.
    pub online: bool,
    /// Intact now.
    pub intact: bool,
    /// Why not, when not.
    pub cause: Option<&'static str>,
}

/// The node's rates ledger.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    offset: jiff::tz::TimeZone,
    today: DayTotals,
    last_tick_us: Option<i64>,
    last_flush_us: i64,
    states: HashMap<String, CameraState>,
    transitions: File,
}

/// The parents of an org path and itself: `a/b` gives `""`, `a`, `a/b`.
fn org_chain(org: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut acc = String::new();
    for part in org.split('/').filter(|p| !p.is_empty()) {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(part);
        out.push(acc.clone());
    }
    out
}

impl Ledger {
    /// Opens the ledger in `dir` (days at UTC + `offset_hours`), going on with today's rollup if
    /// there is one.
    pub fn open(dir: &Path, offset_hours: i8) -> Result<Ledger, LedgerError> {
        let daily = dir.join("daily");
        std::fs::create_dir_all(&daily).map_err(io(&daily, "create directory"))?;
        let path = dir.join("transitions.jsonl");
        let transitions = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path, "open"))?;
        let offset = jiff::tz::TimeZone::fixed(jiff::tz::Offset::constant(offset_hours.clamp(-12, 14)));
        let mut l = Ledger {
            dir: dir.to_owned(),
            offset,
            today: DayTotals::default(),
            last_tick_us: None,
            last_flush_us: 0,
            states: HashMap::new(),
            transitions,
        };
        let now = jiff::Timestamp::now().as_microsecond();
        let day = l.day_of(now);
        l.today = l.read_day(&day)?.unwrap_or(DayTotals {
            day,
            ..DayTotals::default()
        });
        Ok(l)
    }

    /// The reporting day of `us` (µs since the epoch), `YYYY-MM-DD`.
    pub fn day_of(&self, us: i64) -> String {
        jiff::Timestamp::from_microsecond(us)
            .map(|t| t.to_zoned(self.offset.clone()).date().to_string())
            .unwrap_or_else(|_| "1970-01-01".into())
    }

    /// Credits the time since the last tick to each camera's state now, and returns the
    /// cameras whose state changed.
    pub fn tick(&mut self, now_us: i64, states: &[(String, CameraState)]) -> Vec<Transition> {
        let dt = self.last_tick_us.map_or(0, |t| (now_us - t).clamp(0, MAX_TICK_US)) as f64 / 1e6;
        self.last_tick_us = Some(now_us);
        let day = self.day_of(now_us);
        if day != self.today.day {
            if let Err(e) = self.flush() {
                tracing::error!(%e, "rates: the day's rollup could not be written");
            }
            self.today = DayTotals {
                day,
                ..DayTotals::default()
            };
        }
        let mut changed = Vec::new();
        for (camera, s) in states {
            if dt > 0.0 {
                self.today.cameras.entry(camera.clone()).or_default().credit(s, dt);
                for org in org_chain(&s.org) {
                    self.today.orgs.entry(org).or_default().credit(s, dt);
                }
            }
            let before = self.states.get(camera);
            if before.is_none_or(|b| b.online != s.online || b.fault != s.fault) {
                let t = Transition {
                    at_us: now_us,
                    camera: camera.clone(),
                    online: s.online,
                    intact: s.fault.is_none(),
                    cause: s.fault.map(Cause::as_str),
                };
                if let Ok(line) = serde_json::to_string(&t) {
                    let _ = writeln!(self.transitions, "{line}");
                }
                // The first sight of a camera is recorded, not announced.
                if before.is_some() {
                    changed.push(t);
                }
                self.states.insert(camera.clone(), s.clone());
            }
        }
        if now_us - self.last_flush_us >= FLUSH_US {
            self.last_flush_us = now_us;
            if let Err(e) = self.flush() {
                tracing::error!(%e, "rates: today's rollup could not be written");
            }
        }
        changed
    }

    /// Writes today's rollup.
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        self.store_day(&self.today)?;
        let _ = self.transitions.sync_data();
        Ok(())
    }

    /// Writes a day's rollup: its cameras (`YYYY-MM-DD.json`) and its orgs
    /// (`YYYY-MM-DD.orgs.json`, what most reports read), each replaced atomically. Public for
    /// tools and benchmarks that build history.
    pub fn store_day(&self, day: &DayTotals) -> Result<(), LedgerError> {
        let daily = self.dir.join("daily");
        let cameras = serde_json::to_vec(&DayTotals {
            day: day.day.clone(),
            cameras: day.cameras.clone(),
            orgs: BTreeMap::new(),
        })
        .unwrap_or_default();
        let orgs = serde_json::to_vec(&day.orgs).unwrap_or_default();
        for (name, bytes) in [
            (format!("{}.json", day.day), cameras),
            (format!("{}.orgs.json", day.day), orgs),
        ] {
            let path = daily.join(name);
            let tmp = path.with_extension("tmp");
            {
                let mut f = File::create(&tmp).map_err(io(&tmp, "create"))?;
                f.write_all(&bytes).map_err(io(&tmp, "write"))?;
                f.sync_all().map_err(io(&tmp, "fsync"))?;
            }
            std::fs::rename(&tmp, &path).map_err(io(&path, "rename"))?;
        }
        Ok(())
    }

    /// The totals of `day` (`YYYY-MM-DD`): today's as they stand, others from their rollup.
    pub fn day(&self, day: &str) -> Result<Option<DayTotals>, LedgerError> {
        if day == self.today.day {
            return Ok(Some(self.today.clone()));
        }
        self.read_day(day)
    }

    /// The totals of `org` (and everything under it) on `day`, from the small per-org rollup.
    pub fn org_day(&self, org: &str, day: &str) -> Result<Option<Totals>, LedgerError> {
        if day == self.today.day {
            return Ok(self.today.orgs.get(org).cloned());
        }
        let path = self.dir.join("daily").join(format!("{day}.orgs.json"));
        match std::fs::read(&path) {
            // Only the org asked for is decoded; the others are skipped over as raw JSON.
            Ok(b) => match serde_json::from_slice::<HashMap<&str, &serde_json::value::RawValue>>(&b) {
                Ok(orgs) => Ok(orgs.get(org).and_then(|raw| serde_json::from_str(raw.get()).ok())),
                Err(e) => {
                    tracing::warn!(file = %path.display(), %e, "rates: an unreadable rollup is left out");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, "read")(e)),
        }
    }

    fn read_day(&self, day: &str) -> Result<Option<DayTotals>, LedgerError> {
        let path = self.dir.join("daily").join(format!("{day}.json"));
        let mut d: DayTotals = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(file = %path.display(), %e, "rates: an unreadable rollup is left out");
                    return Ok(None);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, "read")(e)),
        };
        let orgs = self.dir.join("daily").join(format!("{day}.orgs.json"));
        if let Ok(b) = std::fs::read(&orgs)
            && let Ok(o) = serde_json::from_slice(&b)
        {
            d.orgs = o;
        }
        Ok(Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(org: &str, online: bool, fault: Option<Cause>) -> CameraState {
        CameraState {
            org: org.into(),
            online,
            fault,
            networked: online || fault != Some(Cause::Offline),
            record: true,
            maintenance: false,
        }
    }

    #[test]
    fn a_simulated_day_rolls_up_to_the_faults_injected() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path(), 8).unwrap();
        // 2026-03-01 00:00 in UTC+8.
        let start = jiff::Timestamp::from_second(1_772_294_400).unwrap().as_microsecond();
        assert_eq!(l.day_of(start), "2026-03-01");
        assert_eq!(l.day_of(start - 1), "2026-02-28");
        let mut changes = 0;
        // A day in one-second ticks: a is fine all day; b is offline 02:00-04:00; c is frozen
        // for the last 6 hours; d drops to half rate for 1 hour at noon.
        for s in 0..=86_400i64 {
            let h = s / 3600;
            let states = vec![
                ("a".to_owned(), state("city/east", true, None)),
                (
                    "b".to_owned(),
                    if (2..4).contains(&h) {
                        state("city/east", false, Some(Cause::Offline))
                    } else {
                        state("city/east", true, None)
                    },
                ),
                (
                    "c".to_owned(),
                    state("city/west", true, (h >= 18).then_some(Cause::Frozen)),
                ),
                (
                    "d".to_owned(),
                    state("city/west", true, (h == 12).then_some(Cause::LowFrameRate)),
                ),
            ];
            changes += l.tick(start + s * 1_000_000, &states).len();
        }
        // b off and back, c frozen, d low and back (the day's end tick starts 03-02 for the rest).
        assert_eq!(changes, 5);
        let day = l.day("2026-03-01").unwrap().expect("rolled up at midnight");
        let near = |a: f64, b: f64| (a - b).abs() < 1.5;
        let b = &day.cameras["b"];
        assert!(near(b.expected_s, 86_400.0) && near(b.online_s, 79_200.0), "{b:?}");
        assert!(near(b.causes["offline"], 7_200.0));
        let c = &day.cameras["c"];
        assert!(
            near(c.intact_s, 64_800.0) && near(c.causes["frozen"], 21_600.0) && near(c.online_s, 86_400.0),
            "{c:?}"
        );
        let d = &day.cameras["d"];
        assert!(near(d.causes["low_frame_rate"], 3_600.0));
        let west = &day.orgs["city/west"];
        let (online, intact, networked, _) = west.rates();
        assert!(
            (online - 1.0).abs() < 1e-6
                && (intact - (86_400.0 * 2.0 - 25_200.0) / 172_800.0).abs() < 1e-4
                && networked > 0.999,
            "{west:?}"
        );
        let (online, ..) = day.orgs[""].rates();
        assert!((online - (4.0 * 86_400.0 - 7_200.0) / (4.0 * 86_400.0)).abs() < 1e-4);
        // The transitions are on disk, one line each, first sights included.
        let lines = std::fs::read_to_string(dir.path().join("transitions.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 4 + 5);
        // A reopen goes on with today's totals.
        l.flush().unwrap();
        drop(l);
        let again = Ledger::open(dir.path(), 8).unwrap();
        assert!(again.day("2026-03-01").unwrap().is_some());
        assert!(again.day("2025-01-01").unwrap().is_none());
    }

    #[test]
    fn org_chains_and_pauses() {
        assert_eq!(org_chain("a/b/c"), ["", "a", "a/b", "a/b/c"]);
        assert_eq!(org_chain(""), [""]);
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path(), 0).unwrap();
        let t0 = jiff::Timestamp::now().as_microsecond();
        let s = vec![("a".to_owned(), state("x", true, None))];
        l.tick(t0, &s);
        l.tick(t0 + 3_600_000_000, &s);
        let day = l.day(&l.day_of(t0 + 3_600_000_000)).unwrap().unwrap();
        assert!(day.cameras["a"].expected_s <= 5.0, "an hour's pause counts at most 5 s");
    }
}
