//! `GET /metrics`: Prometheus text exposition.
//!
//! Written by hand: the values already live in the sources' and recorder's own counters, and
//! the text format is a few lines per metric; a registry crate would only mirror them.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::access::Caller;
use crate::state::AppState;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn value(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        if l.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {v}", l.join(","));
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<impl IntoResponse, crate::error::ApiError> {
    caller.require(&state, auth::Action::Metrics, None)?;
    let mut o = Out(String::with_capacity(4096));
    let per_camera: [(&str, &str, &str); 5] = [
        (
            "sharpeye_camera_frames_total",
            "counter",
            "Frames received from the camera.",
        ),
        (
            "sharpeye_camera_bytes_total",
            "counter",
            "Video bytes received from the camera.",
        ),
        (
            "sharpeye_camera_sessions_total",
            "counter",
            "RTSP sessions opened to the camera.",
        ),
        (
            "sharpeye_camera_dropped_frames_total",
            "counter",
            "Frames dropped (no key frame yet, oversized).",
        ),
        (
            "sharpeye_camera_online",
            "gauge",
            "1 if the camera is delivering frames.",
        ),
    ];
    let cameras = state.cameras.snapshot();
    let snaps: Vec<_> = cameras
        .values()
        .map(|c| (c.info.id.as_str(), c.main.as_ref().map(|h| h.snapshot()), c.status()))
        .collect();
    for (i, (name, kind, help)) in per_camera.iter().enumerate() {
        o.header(name, kind, help);
        for (id, snap, status) in &snaps {
            let labels = [("camera", *id), ("stream", "main")];
            let v = match (i, snap) {
                (4, _) => u64::from(*status == "online"),
                (_, None) => 0,
                (0, Some(s)) => s.frames,
                (1, Some(s)) => s.bytes,
                (2, Some(s)) => s.sessions,
                (_, Some(s)) => s.dropped_frames,
            };
            o.value(name, &labels, v);
        }
    }
    if let Some(hub) = &state.hub {
        live_metrics(&mut o, hub);
    }
    if let Some(r) = &state.recorder {
        let counters = [
            (
                "sharpeye_recorder_frames_written_total",
                &r.frames_written,
                "Frames written to segment files.",
            ),
            (
                "sharpeye_recorder_bytes_written_total",
                &r.bytes_written,
                "Video bytes written to segment files.",
            ),
            (
                "sharpeye_recorder_frames_refused_total",
                &r.frames_refused,
                "Frames refused because the write queue was full.",
            ),
            (
                "sharpeye_recorder_segments_closed_total",
                &r.segments_closed,
                "Segments closed.",
            ),
            (
                "sharpeye_recorder_write_errors_total",
                &r.write_errors,
                "Segment write errors.",
            ),
            (
                "sharpeye_recorder_syncs_total",
                &r.syncs,
                "Durable syncs followed by an index commit.",
            ),
            (
                "sharpeye_recorder_sync_errors_total",
                &r.sync_errors,
                "Failed syncs or index commits.",
            ),
        ];
        for (name, c, help) in counters {
            o.header(name, "counter", help);
            o.value(name, &[], c.load(Ordering::Relaxed));
        }
        o.header(
            "sharpeye_recorder_last_sync_seconds",
            "gauge",
            "Duration of the last sync and index commit.",
        );
        o.value(
            "sharpeye_recorder_last_sync_seconds",
            &[],
            r.last_sync_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
    }
    if let Some(r) = &state.remote {
        link_metrics(&mut o, &r.links(), &r.cache());
    }
    if let Some(c) = state.cluster.get() {
        cluster_metrics(&mut o, &c.status());
    }
    o.header(
        "sharpeye_permission_rebuilds_total",
        "counter",
        "Times the permission catalog was rebuilt for cameras added or removed at run time.",
    );
    o.value("sharpeye_permission_rebuilds_total", &[], state.auth.camera_rebuilds());
    o.header("sharpeye_uptime_seconds", "gauge", "Seconds since the process started.");
    o.value("sharpeye_uptime_seconds", &[], state.started.elapsed().as_secs());
    events_metrics(&mut o, &state);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o.0))
}

/// This member of its cluster: members, its lease, what it records, each member's share.
fn cluster_metrics(o: &mut Out, s: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    o.header(
        "sharpeye_cluster_members",
        "gauge",
        "Live members of this node's cluster, as it sees them.",
    );
    o.value("sharpeye_cluster_members", &[], n(&s["members"]));
    o.header(
        "sharpeye_cluster_members_down",
        "gauge",
        "Members that joined before but are not live now (their recordings are missing from merged answers).",
    );
    o.value("sharpeye_cluster_members_down", &[], n(&s["members_down"]));
    o.header(
        "sharpeye_cluster_lease_held",
        "gauge",
        "1 while this member holds its etcd lease (or etcd is down for every member), else 0.",
    );
    let held = s["lease"]["state"] == "held" || s["lease"]["state"] == "etcd_down";
    o.value("sharpeye_cluster_lease_held", &[], u8::from(held));
    o.header(
        "sharpeye_cluster_degraded",
        "gauge",
        "1 while the cluster is degraded as this member sees it.",
    );
    o.value("sharpeye_cluster_degraded", &[], u8::from(s["state"] == "degraded"));
    o.header(
        "sharpeye_cluster_cameras_recording",
        "gauge",
        "Cameras this member is writing now.",
    );
    o.value("sharpeye_cluster_cameras_recording", &[], n(&s["recording"]));
    o.header(
        "sharpeye_cluster_cameras_owned",
        "gauge",
        "Cameras each live member should record, by the assignment this member computes.",
    );
    for m in s["members"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or("");
        o.value(
            "sharpeye_cluster_cameras_owned",
            &[("member", name)],
            m["load"].as_u64().unwrap_or(0),
        );
    }
}

/// Per link to a lower node: budget, what is counted against it, what was measured crossing
/// it, pulls, refusals, whether it is up; and the temporary cache.
fn link_metrics(o: &mut Out, links: &[serde_json::Value], cache: &serde_json::Value) {
    let gauges: [(&str, &str, &str); 6] = [
        ("sharpeye_link_budget_mbps", "budget_mbps", "The link's budget."),
        (
            "sharpeye_link_in_use_mbps",
            "in_use_mbps",
            "Bandwidth counted against the link now.",
        ),
        (
            "sharpeye_link_measured_mbps",
            "measured_mbps",
            "Bandwidth measured crossing the link (4 s average).",
        ),
        (
            "sharpeye_link_pulls",
            "pulls",
            "Live pulls and transfers crossing the link.",
        ),
        (
            "sharpeye_link_refusals_total",
            "refusals",
            "Requests refused for the link's budget.",
        ),
        (
            "sharpeye_link_shed_total",
            "shed",
            "Live pulls shed (newest first, viewers disconnected) after the link was over its budget.",
        ),
    ];
    for (name, key, help) in gauges {
        let kind = if matches!(key, "refusals" | "shed") {
            "counter"
        } else {
            "gauge"
        };
        o.header(name, kind, help);
        for l in links {
            let id = l["id"].as_str().unwrap_or_default();
            o.value(name, &[("link", id)], l[key].as_f64().unwrap_or(0.0));
        }
    }
    o.header("sharpeye_link_up", "gauge", "1 while the lower node answers.");
    for l in links {
        let id = l["id"].as_str().unwrap_or_default();
        o.value("sharpeye_link_up", &[("link", id)], u8::from(l["state"] == "up"));
    }
    if cache.is_object() {
        for (name, key, kind) in [
            ("sharpeye_cache_bytes", "bytes", "gauge"),
            ("sharpeye_cache_hits_total", "hits", "counter"),
            ("sharpeye_cache_misses_total", "misses", "counter"),
        ] {
            o.header(
                name,
                kind,
                "The temporary cache of recorded video fetched from lower nodes.",
            );
            o.value(name, &[], cache[key].as_u64().unwrap_or(0));
        }
    }
}

/// Per camera stream: viewers by output, upstream sessions (0 or 1), bytes out, dropped viewers,
/// skipped GOPs.
fn live_metrics(o: &mut Out, hub: &hub::Hub) {
    let mut channels: Vec<Arc<hub::Channel>> = hub.channels();
    channels.sort_by_key(|c| c.stream().to_string());
    let name = "sharpeye_live_viewers";
    o.header(name, "gauge", "Live viewers of the stream, by output.");
    for c in &channels {
        for (output, n) in c.viewers() {
            let labels = [
                ("camera", c.stream().camera()),
                ("stream", c.stream().kind().as_str()),
                ("output", output.label()),
            ];
            o.value(name, &labels, n);
        }
    }
    let name = "sharpeye_live_upstream_sessions";
    o.header(name, "gauge", "Upstream pulls running for the stream (0 or 1).");
    for c in &channels {
        let labels = [("camera", c.stream().camera()), ("stream", c.stream().kind().as_str())];
        o.value(name, &labels, u8::from(c.upstream_running()));
    }
    type Counter = fn(&hub::ChannelStats) -> &std::sync::atomic::AtomicU64;
    let counters: [(&str, &str, Counter); 4] = [
        (
            "sharpeye_live_bytes_out_total",
            "Video bytes handed to live viewers.",
            |s| &s.bytes_out,
        ),
        (
            "sharpeye_live_dropped_viewers_total",
            "Live viewers dropped for not reading.",
            |s| &s.dropped_viewers,
        ),
        (
            "sharpeye_live_skipped_gops_total",
            "Times a lagging viewer skipped to the next key frame.",
            |s| &s.skipped_gops,
        ),
        (
            "sharpeye_live_upstream_starts_total",
            "Upstream pulls started by demand.",
            |s| &s.upstream_starts,
        ),
    ];
    for (name, help, get) in counters {
        o.header(name, "counter", help);
        for c in &channels {
            let labels = [("camera", c.stream().camera()), ("stream", c.stream().kind().as_str())];
            o.value(name, &labels, get(c.stats()).load(Ordering::Relaxed));
        }
    }
}

/// The event log, webhook deliveries and grid cells.
fn events_metrics(o: &mut Out, state: &AppState) {
    let log = state.events.log();
    let last = log.last_seq();
    o.header(
        "sharpeye_events_last_seq",
        "counter",
        "Sequence number of the node's last event (events published over its life).",
    );
    o.value("sharpeye_events_last_seq", &[], last);
    o.header(
        "sharpeye_event_log_write_errors_total",
        "counter",
        "Events that could not be written to the event log (they reached live listeners only).",
    );
    o.value("sharpeye_event_log_write_errors_total", &[], log.write_errors());
    let hooks = state.webhooks.list();
    let gauges: [(&str, &str, &str); 5] = [
        (
            "sharpeye_webhook_lag_events",
            "gauge",
            "Events the webhook has not acknowledged yet.",
        ),
        (
            "sharpeye_webhook_delivered_total",
            "counter",
            "Events delivered to the webhook.",
        ),
        (
            "sharpeye_webhook_failures",
            "gauge",
            "Failed deliveries in a row (0 when delivering).",
        ),
        (
            "sharpeye_webhook_missed_total",
            "counter",
            "Events the webhook can no longer get (dropped from the log while it was behind).",
        ),
        ("sharpeye_webhook_dead", "gauge", "1 when the webhook is dead-lettered."),
    ];
    for (i, (name, kind, help)) in gauges.iter().enumerate() {
        o.header(name, kind, help);
        for h in &hooks {
            let v = match i {
                0 => last.saturating_sub(h.cursor),
                1 => h.delivered,
                2 => u64::from(h.failures),
                3 => h.missed,
                _ => u64::from(h.state == eventlog::webhook::State::Dead),
            };
            o.value(name, &[("webhook", &h.id), ("url", &h.url)], v);
        }
    }
    o.header(
        "sharpeye_camera_intact",
        "gauge",
        "1 when the camera's main stream is judged usable (完好): not frozen, not black, at its usual frame rate.",
    );
    for (camera, ok) in state.rates.intact_now(media::WallTime::now()) {
        o.value("sharpeye_camera_intact", &[("camera", &camera)], u8::from(ok));
    }
    o.header("sharpeye_grid_cells", "gauge", "Grid cells (网格) known to the node.");
    o.value("sharpeye_grid_cells", &[], state.grids.snapshot().len());
}
