//! Answers to an upper's queries (Catalog, DeviceInfo, DeviceStatus, RecordInfo) and its
//! DeviceControl, and the catalog changes a subscribed upper is told of.

use std::collections::HashMap;

use auth::audit::Event as AuditEvent;
use gb28181::manscdp_out::{self, CatalogEntry, EntryKind, RecordEntry};
use gb28181::upper::Query;
use media::{StreamId, WallTime};
use serde_json::json;
use tracing::{info, warn};

use super::Cascade;

/// Most recordings listed in one RecordInfo answer (an hour-long query of a camera recorded
/// in minute segments with gaps could otherwise be thousands of items over UDP).
const MAX_RECORDS: usize = 500;
/// Segments closer than this are one recording.
const CONTIGUOUS_US: i64 = 2_000_000;

/// The changes from `old` to `new` as catalog NOTIFY items: `ADD`, `DEL`, `ON`, `OFF`,
/// `UPDATE`.
pub fn changes(old: &[CatalogEntry], new: &[CatalogEntry]) -> Vec<(CatalogEntry, &'static str)> {
    let before: HashMap<&str, &CatalogEntry> = old.iter().map(|e| (e.id.as_str(), e)).collect();
    let after: HashMap<&str, &CatalogEntry> = new.iter().map(|e| (e.id.as_str(), e)).collect();
    let online = |e: &CatalogEntry| matches!(e.kind, EntryKind::Channel { online: true, .. });
    let mut out = Vec::new();
    for e in new {
        match before.get(e.id.as_str()) {
            None => out.push((e.clone(), "ADD")),
            Some(b) if online(b) != online(e) => out.push((e.clone(), if online(e) { "ON" } else { "OFF" })),
            Some(b) if *b != e => out.push((e.clone(), "UPDATE")),
            Some(_) => {}
        }
    }
    for e in old {
        if !after.contains_key(e.id.as_str()) {
            out.push((e.clone(), "DEL"));
        }
    }
    out
}

impl Cascade {
    /// Audits what an upper did.
    pub(super) async fn audit_upper(
        &self,
        upper: &str,
        action: &str,
        outcome: &str,
        camera: Option<&str>,
        user: Option<String>,
        detail: serde_json::Value,
    ) {
        let e = AuditEvent {
            actor: format!("gb28181:{upper}"),
            ip: self.uppers.get(upper).map(|u| u.cfg.address.ip().to_string()),
            action: action.to_owned(),
            outcome: outcome.to_owned(),
            camera: camera.map(str::to_owned),
            target: None,
            reason: None,
            detail,
            on_behalf_of: user,
        };
        if let Err(e) = self.state.audit(e).await {
            warn!(upper, "GB28181 cascade: auditing {action} failed: {e:?}");
        }
    }

    pub(super) async fn answer(&self, upper: &str, sn: u64, query: Query, user: Option<String>) {
        let Some(u) = self.uppers.get(upper) else { return };
        let charset = u.cfg.charset;
        match query {
            Query::Catalog => {
                let entries = self.catalog(u);
                info!(upper, items = entries.len(), "GB28181 cascade: catalog asked for");
                *u.last.lock().unwrap_or_else(|p| p.into_inner()) = entries.clone();
                self.sip.upper_catalog(upper, sn, entries).await;
            }
            Query::DeviceInfo { target } => {
                let own = self.own_id_for(&u.cfg);
                let body = if target == own {
                    let n = self.shared(u).len();
                    manscdp_out::device_info(sn, &target, &self.node_name, n, charset)
                } else {
                    let name = self
                        .camera_of(upper, &target)
                        .and_then(|c| self.state.cameras.get(&c).map(|e| e.info.name.clone()));
                    let Some(name) = name else { return };
                    manscdp_out::device_info(sn, &target, &name, 1, charset)
                };
                self.sip.upper_answer(upper, body).await;
            }
            Query::DeviceStatus { target } => {
                let own = self.own_id_for(&u.cfg);
                let (online, recording) = if target == own {
                    (true, true)
                } else {
                    let Some(c) = self.camera_of(upper, &target).and_then(|c| self.state.cameras.get(&c)) else {
                        return;
                    };
                    (matches!(c.status(), "online" | "idle"), c.info.record)
                };
                let now = gb28181::gbtime::format_secs(WallTime::now().as_micros() / 1_000_000, self.utc_offset);
                let body = manscdp_out::device_status(sn, &target, online, recording, &now, charset);
                self.sip.upper_answer(upper, body).await;
            }
            Query::RecordInfo { channel, start, end } => {
                self.record_info(upper, sn, &channel, &start, &end, user).await
            }
        }
    }

    async fn record_info(&self, upper: &str, sn: u64, channel: &str, start: &str, end: &str, user: Option<String>) {
        let Some(camera) = self.camera_of(upper, channel) else {
            // Not ours to tell: an empty answer, so the upper does not wait.
            self.sip.upper_records(upper, sn, channel, channel, Vec::new()).await;
            return;
        };
        let name = self
            .state
            .cameras
            .get(&camera)
            .map(|c| c.info.name.clone())
            .unwrap_or_else(|| camera.clone());
        let off = self.utc_offset;
        let (Some(from), Some(to)) = (gb28181::gbtime::parse(start, off), gb28181::gbtime::parse(end, off)) else {
            self.sip.upper_records(upper, sn, channel, &name, Vec::new()).await;
            return;
        };
        let (from, to) = (
            WallTime::from_micros(from * 1_000_000),
            WallTime::from_micros(to * 1_000_000),
        );
        let runs = match self.state.remote.as_ref().filter(|r| r.is_remote(&camera)) {
            Some(remote) => lower_recordings(remote.as_ref(), &camera, from, to, upper).await,
            None => self.local_recordings(&camera, from, to).await,
        };
        let fmt = |t: WallTime| gb28181::gbtime::format_secs(t.as_micros() / 1_000_000, off);
        let records: Vec<RecordEntry> = runs
            .into_iter()
            .take(MAX_RECORDS)
            .map(|(s, e, bytes)| RecordEntry {
                channel: channel.to_owned(),
                name: name.clone(),
                start: fmt(s.max(from)),
                end: fmt(e.min(to)),
                file_size: bytes,
            })
            .collect();
        self.audit_upper(
            upper,
            "recordings.list",
            "ok",
            Some(&camera),
            user,
            json!({ "start": start, "end": end, "records": records.len() }),
        )
        .await;
        self.sip.upper_records(upper, sn, channel, &name, records).await;
    }

    /// Our recordings of `camera` in the window: runs of back-to-back segments, with their size.
    async fn local_recordings(
        &self,
        camera: &str,
        from: WallTime,
        to: WallTime,
    ) -> Vec<(WallTime, WallTime, Option<u64>)> {
        let store = self.state.store.clone();
        let stream = StreamId::main(camera);
        let found = tokio::task::spawn_blocking(move || store.segments(&stream, from, to))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut runs: Vec<(WallTime, WallTime, Option<u64>)> = Vec::new();
        for (_, r) in &found {
            match runs.last_mut() {
                Some(last) if r.start.micros_since(last.1) <= CONTIGUOUS_US => {
                    last.1 = r.end;
                    last.2 = Some(last.2.unwrap_or(0) + r.bytes);
                }
                _ => runs.push((r.start, r.end, Some(r.bytes))),
            }
        }
        runs
    }

    pub(super) async fn control(
        &self,
        upper: &str,
        _sn: u64,
        channel: &str,
        ptz: Option<String>,
        user: Option<String>,
    ) {
        let Some(u) = self.uppers.get(upper) else { return };
        let Some(cmd) = ptz else { return };
        let camera = self.camera_of(upper, channel);
        let allowed = camera
            .as_deref()
            .is_some_and(|c| self.state.auth.snapshot().policy.covered(&u.cfg.ptz, c));
        let (outcome, why) = match (&camera, allowed, &self.devices) {
            (None, _, _) => ("refused", "not shared".to_owned()),
            (Some(_), false, _) => ("refused", "no ptz for this upper".to_owned()),
            (Some(_), true, None) => ("failed", "not a GB/T 28181 device channel".to_owned()),
            (Some(c), true, Some(d)) => match d.ptz_raw(c, &cmd).await {
                Ok(()) => ("ok", String::new()),
                Err(e) => ("failed", e.to_string()),
            },
        };
        self.audit_upper(
            upper,
            "ptz",
            outcome,
            camera.as_deref(),
            user,
            json!({ "channel": channel, "command": cmd.chars().take(16).collect::<String>(), "why": why }),
        )
        .await;
    }
}

/// A lower node's recordings of `camera` in the window, through its link (`ranges` of its
/// recordings listing); nothing when the link cannot say. Asked for the upper `upper`, so the
/// lower node's audit names it.
async fn lower_recordings(
    remote: &dyn api::remote_access::RemoteAccess,
    camera: &str,
    from: WallTime,
    to: WallTime,
    upper: &str,
) -> Vec<(WallTime, WallTime, Option<u64>)> {
    let path = format!(
        "/api/v1/cameras/{camera}/recordings?start={}&end={}",
        api::time::query_time(from),
        api::time::query_time(to)
    );
    let answer = match remote.call(camera, "GET", path, None, format!("gb28181:{upper}")).await {
        Ok(v) => v,
        Err(e) => {
            warn!(
                camera,
                upper, "GB28181 cascade: recordings of a lower node's camera: {e}"
            );
            return Vec::new();
        }
    };
    answer["ranges"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let s = api::time::parse("start", r["start"].as_str()?).ok()?;
                    let e = api::time::parse("end", r["end"].as_str()?).ok()?;
                    (e > s).then_some((s, e, None))
                })
                .take(MAX_RECORDS)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(id: &str, online: bool, name: &str) -> CatalogEntry {
        CatalogEntry {
            id: id.into(),
            name: name.into(),
            parent_id: "p".into(),
            civil_code: "340200".into(),
            kind: EntryKind::Channel {
                online,
                location: None,
                ptz_type: None,
                business_group: None,
            },
        }
    }

    #[test]
    fn changes_name_what_happened_to_each_entry() {
        let old = vec![ch("a", true, "A"), ch("b", true, "B"), ch("c", true, "C")];
        let new = vec![ch("a", false, "A"), ch("b", true, "B2"), ch("d", true, "D")];
        let got: Vec<(String, &str)> = changes(&old, &new).into_iter().map(|(e, k)| (e.id, k)).collect();
        assert_eq!(
            got,
            [
                ("a".into(), "OFF"),
                ("b".into(), "UPDATE"),
                ("d".into(), "ADD"),
                ("c".into(), "DEL")
            ]
        );
        assert!(changes(&new, &new).is_empty());
    }
}
