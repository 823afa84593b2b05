//! Node health: disks, the retention forecast per tier, alarms, cameras by status, the
//! recorder's counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use media::WallTime;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time;

type AppStateArc = State<Arc<AppState>>;

/// `GET /api/v1/health`.
pub async fn health(State(state): AppStateArc, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let st = state.clone();
    let reports = tokio::task::spawn_blocking(move || {
        store::retention::disk_reports(&st.store, &st.holds, &st.retention_policy, WallTime::now())
    })
    .await
    .map_err(ApiError::internal)??;
    let tier = |u: &store::retention::TierUsage| {
        json!({
            "bytes": u.bytes,
            "bytes_per_day": u.bytes_per_day.round(),
            "guarantee_days": u.guarantee_days,
            "forecast_days": (u.forecast_days * 100.0).round() / 100.0,
            "guarantee_met": u.forecast_days + 1e-9 >= u.guarantee_days,
        })
    };
    let disks: Vec<Value> = reports
        .iter()
        .map(|d| {
            json!({
                "path": d.path.display().to_string(),
                "total_bytes": d.total,
                "free_bytes": d.free,
                "min_free_bytes": d.floor,
                "recording_blocked": d.blocked,
                "held_bytes": d.held_bytes,
                "tiers": { "standard": tier(&d.standard), "key": tier(&d.key) },
            })
        })
        .collect();
    let alarms: Vec<Value> = state
        .retention
        .as_ref()
        .map(|r| r.alarms())
        .unwrap_or_default()
        .iter()
        .map(|a| json!({ "at": time::format(a.at), "message": a.alarm.to_string() }))
        .collect();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for c in state.cameras.snapshot().values() {
        *counts.entry(c.status()).or_default() += 1;
    }
    let recorder = state.recorder.as_ref().map(|r| {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "frames_written": g(&r.frames_written),
            "bytes_written": g(&r.bytes_written),
            "frames_refused": g(&r.frames_refused),
            "segments_opened": g(&r.segments_opened),
            "segments_closed": g(&r.segments_closed),
            "write_errors": g(&r.write_errors),
            "sync_errors": g(&r.sync_errors),
            "last_sync_ms": g(&r.last_sync_us) as f64 / 1000.0,
            "max_sync_ms": g(&r.max_sync_us) as f64 / 1000.0,
        })
    });
    let total = state.cameras.len() as u64;
    let online = counts.get("online").copied().unwrap_or(0);
    let degraded = state
        .recorder
        .as_ref()
        .is_some_and(|r| r.write_errors.load(Ordering::Relaxed) + r.sync_errors.load(Ordering::Relaxed) > 0)
        || reports.iter().any(|d| d.blocked);
    let cluster = state.cluster.get().and_then(|c| c.degraded());
    let degraded = degraded || cluster.is_some();
    let uppers = match state.uppers.get() {
        Some(u) => u.uppers().await,
        None => Vec::new(),
    };
    Ok(Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
        "disks": disks,
        "alarms": alarms,
        "holds": state.holds.list().len(),
        "cameras": {
            "total": total,
            "online": online,
            "connecting": counts.get("connecting").copied().unwrap_or(0),
            "offline": counts.get("offline").copied().unwrap_or(0),
            "idle": counts.get("idle").copied().unwrap_or(0),
            "online_rate": if total == 0 { 1.0 } else { online as f64 / total as f64 },
        },
        "recorder": recorder,
        "node": { "id": state.node.id, "name": state.node.name, "level": state.node.level },
        "links": state.remote.as_ref().map(|r| r.links()).unwrap_or_default(),
        "cache": state.remote.as_ref().map(|r| r.cache()),
        "gb28181_uppers": uppers,
        "cluster_degraded": cluster,
    })))
}
