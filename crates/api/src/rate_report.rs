//! The online, intact (完好) and networked (联网) rates: each camera's state every second (from
//! its status and its [`Judge`], fed by the sink of its main stream) credited to
//! the `rates::Ledger`, `camera.intact` / `camera.not_intact` events when a camera's video
//! becomes usable or stops being so (with the cause), and `GET /api/v1/rates` for reports:
//! JSON, or CSV for the monthly report against the national targets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use media::WallTime;
use rates::{CameraState, Cause, Ledger, Totals};

use crate::intact::Judge;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::events::NodeEvent;
use crate::request::{QueryMap, query};
use crate::state::AppState;
use crate::time;

/// Longest report: a year and a day.
const MAX_DAYS: i64 = 367;

/// The node's rates: every camera's judge and the ledger.
pub struct Rates {
    judges: RwLock<HashMap<String, Arc<Judge>>>,
    /// The online cameras whose video is not usable, and why, as of the last tick: what the
    /// listing says (an upper node takes its verdicts from there and from the events).
    faults: RwLock<Arc<HashMap<String, Cause>>>,
    ledger: Mutex<Ledger>,
    /// Maintenance windows: their time is not counted.
    pub windows: rates::maintenance::Windows,
}

impl Rates {
    /// The rates over `ledger`, with the maintenance `windows`.
    pub fn new(ledger: Ledger, windows: rates::maintenance::Windows) -> Rates {
        Rates {
            judges: RwLock::default(),
            faults: RwLock::default(),
            ledger: Mutex::new(ledger),
            windows,
        }
    }

    /// Camera `id`'s judge (made on first use), for the sink of its main stream.
    pub fn judge(&self, id: &str) -> Arc<Judge> {
        if let Some(d) = self.judges.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            return d.clone();
        }
        self.judges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// One second's states, credited; announces cameras whose video became usable or not.
    pub fn tick(&self, state: &AppState, now: WallTime) {
        let cameras = state.cameras.snapshot();
        let judges = self.judges.read().unwrap_or_else(|p| p.into_inner()).clone();
        // A camera nobody pulls (on demand, idle) is not observed: not expected this second.
        let states: Vec<(String, CameraState)> = cameras
            .iter()
            .filter_map(|(id, c)| {
                let status = c.status();
                if status == "idle" {
                    return None;
                }
                let online = status == "online";
                let fault = if !online {
                    Some(Cause::Offline)
                } else if let Some(r) = &c.remote {
                    // A lower node's camera: its node sees the video and says.
                    r.fault()
                } else {
                    judges.get(id).and_then(|j| {
                        let (verdict, judged) = j.judge(now);
                        tracing::trace!(camera = %id, ?verdict, %judged, "intact");
                        verdict.err()
                    })
                };
                Some((
                    id.clone(),
                    CameraState {
                        org: c.info.org.clone(),
                        online,
                        fault,
                        networked: status != "offline",
                        record: c.info.record,
                        maintenance: self.windows.covers(id, &c.info.org, now.as_micros()),
                    },
                ))
            })
            .collect();
        let faults: HashMap<String, Cause> = states
            .iter()
            .filter_map(|(id, s)| match s.fault {
                Some(f) if s.online => Some((id.clone(), f)),
                _ => None,
            })
            .collect();
        *self.faults.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(faults);
        let changed = self
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tick(now.as_micros(), &states);
        for t in changed {
            // Online and offline are the watcher's events; these are about the video itself.
            if !t.online {
                continue;
            }
            state.events.publish(NodeEvent {
                kind: if t.intact { "camera.intact" } else { "camera.not_intact" },
                camera: Some(t.camera.clone()),
                data: json!({ "camera": t.camera, "at": time::format(now), "intact": t.intact, "cause": t.cause }),
            });
        }
    }

    /// Every camera's judge, by id.
    pub fn judges(&self) -> Vec<(String, Arc<Judge>)> {
        let j = self.judges.read().unwrap_or_else(|p| p.into_inner());
        j.iter().map(|(id, j)| (id.clone(), j.clone())).collect()
    }

    /// The online cameras whose video is not usable, and why, as of the last second.
    pub fn faults(&self) -> Arc<HashMap<String, Cause>> {
        self.faults.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether each judged camera's video is usable now (for metrics).
    pub fn intact_now(&self, now: WallTime) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = self
            .judges()
            .into_iter()
            .map(|(id, j)| (id, j.verdict(now).is_ok()))
            .collect();
        out.sort();
        out
    }

    /// Writes today's rollup (at stop).
    pub fn flush(&self) {
        if let Err(e) = self.ledger.lock().unwrap_or_else(|p| p.into_inner()).flush() {
            tracing::error!(%e, "rates: today's rollup could not be written");
        }
    }
}

fn day_param(
    q: &HashMap<String, String>,
    key: &str,
    default: jiff::civil::Date,
) -> Result<jiff::civil::Date, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::bad_request(format!("{key}: expected a day YYYY-MM-DD"))),
    }
}

fn rates_json(t: &Totals) -> Value {
    let (online, intact, networked, recording) = t.rates();
    let r = |v: f64| (v * 10_000.0).round() / 10_000.0;
    json!({
        "online_rate": r(online),
        "intact_rate": r(intact),
        "networked_rate": r(networked),
        "recording_rate": r(recording),
        "camera_seconds": t.expected_s.round(),
        "maintenance_seconds": t.maintenance_s.round(),
        "causes": t.causes.iter().map(|(k, v)| (k.clone(), json!(v.round()))).collect::<serde_json::Map<_, _>>(),
    })
}

/// `GET /api/v1/rates?org=&from=&to=&interval=day|total&key=1&format=csv`: the rates of the
/// cameras the caller may see under `org`, per day and over the period, with the seconds of
/// each cause of failure; `instant` is now.
pub async fn report(State(state): State<Arc<AppState>>, caller: Caller, q: QueryMap) -> Result<Response, ApiError> {
    let q = query(q)?;
    let org = q.get("org").map(|o| o.trim_matches('/').to_owned()).unwrap_or_default();
    let key_only = match q.get("key").map(String::as_str) {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return Err(ApiError::bad_request("key: 1 for key-area cameras only, or 0")),
    };
    let per_day = match q.get("interval").map(String::as_str) {
        None | Some("day") => true,
        Some("total") => false,
        Some(_) => return Err(ApiError::bad_request("interval: day or total")),
    };
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::bad_request("format: json or csv")),
    };
    let (from, to) = {
        let l = state.rates.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let today: jiff::civil::Date = l
            .day_of(WallTime::now().as_micros())
            .parse()
            .map_err(ApiError::internal)?;
        (day_param(&q, "from", today)?, day_param(&q, "to", today)?)
    };
    let span = to.since(from).map_err(ApiError::internal)?.get_days() as i64;
    if !(0..MAX_DAYS).contains(&span) {
        return Err(ApiError::bad_request(format!(
            "from..to: 1 to {MAX_DAYS} days, from not after to"
        )));
    }
    // The cameras counted: those the caller may see, under the org, key-area ones if asked.
    let snap = state.auth.snapshot();
    let cameras = state.cameras.snapshot();
    let under = |o: &str| org.is_empty() || o == org || o.starts_with(&format!("{org}/"));
    let only: Option<Vec<&str>> = q.get("camera").map(|c| c.split(',').collect());
    let counted: Vec<String> = cameras
        .values()
        .filter(|c| under(&c.info.org) && (!key_only || c.info.tier == "key"))
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.info.id.as_str())))
        .filter(|c| !snap.policy.camera_actions(&caller.who, &c.info.id).is_empty())
        .map(|c| c.info.id.clone())
        .collect();
    let all_of_org =
        !key_only && only.is_none() && counted.len() == cameras.values().filter(|c| under(&c.info.org)).count();
    let st = state.clone();
    let (org2, counted2) = (org.clone(), counted.clone());
    let days = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Totals)>, ApiError> {
        let mut out = Vec::new();
        let mut d = from;
        loop {
            let name = d.to_string();
            let ledger = st.rates.ledger.lock().unwrap_or_else(|p| p.into_inner());
            let mut t = Totals::default();
            if all_of_org {
                // Every camera under the org counts: its small per-org rollup answers.
                if let Some(o) = ledger.org_day(&org2, &name).map_err(ApiError::internal)? {
                    t = o;
                }
            } else if let Some(day) = ledger.day(&name).map_err(ApiError::internal)? {
                for c in &counted2 {
                    if let Some(ct) = day.cameras.get(c) {
                        t.add(ct);
                    }
                }
            }
            drop(ledger);
            out.push((name, t));
            if d >= to {
                break;
            }
            d = d.tomorrow().map_err(ApiError::internal)?;
        }
        Ok(out)
    })
    .await
    .map_err(ApiError::internal)??;
    let mut total = Totals::default();
    for (_, t) in &days {
        total.add(t);
    }
    // Now: the share of the counted cameras online, intact and networked as of the last
    // second's tick (the verdicts of this node's judges and of lower nodes alike).
    let judged = state.rates.faults();
    let now = WallTime::now().as_micros();
    let (mut on, mut ok, mut net) = (0usize, 0usize, 0usize);
    let mut faults = serde_json::Map::new();
    let mut serviced = 0usize;
    for id in &counted {
        let Some(c) = cameras.get(id) else { continue };
        if state.rates.windows.covers(id, &c.info.org, now) {
            serviced += 1;
            continue;
        }
        let status = c.status();
        if status == "online" {
            on += 1;
            match judged.get(id) {
                None => ok += 1,
                Some(cause) => {
                    faults.insert(id.clone(), json!(cause.as_str()));
                }
            }
        } else {
            faults.insert(id.clone(), json!(Cause::Offline.as_str()));
        }
        net += usize::from(status != "offline");
    }
    let n = (counted.len() - serviced).max(1) as f64;
    if csv {
        let mut out =
            String::from("day,org,cameras,online_rate,intact_rate,networked_rate,recording_rate,camera_seconds\n");
        for (day, t) in days
            .iter()
            .filter(|_| per_day)
            .chain(std::iter::once(&("total".to_owned(), total.clone())))
        {
            let (a, b, c, d) = t.rates();
            out.push_str(&format!(
                "{day},{},{},{a:.4},{b:.4},{c:.4},{d:.4},{:.0}\n",
                if org.contains([',', '"', '\n']) {
                    format!("\"{}\"", org.replace('"', "\"\""))
                } else {
                    org.clone()
                },
                counted.len(),
                t.expected_s
            ));
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    let mut v = json!({
        "org": org,
        "from": from.to_string(),
        "to": to.to_string(),
        "key_only": key_only,
        "cameras": counted.len(),
        "instant": {
            "online_rate": on as f64 / n,
            "intact_rate": ok as f64 / n,
            "networked_rate": net as f64 / n,
            "not_intact": faults,
            "in_maintenance": serviced,
        },
        "total": rates_json(&total),
    });
    if per_day {
        v["days"] = Value::Array(
            days.iter()
                .map(|(d, t)| {
                    let mut r = rates_json(t);
                    r["day"] = json!(d);
                    r
                })
                .collect(),
        );
    }
    Ok(axum::Json(v).into_response())
}

/// `POST /api/v1/maintenance` body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    #[serde(default)]
    cameras: Vec<String>,
    org: Option<String>,
    start: String,
    end: String,
    reason: String,
}

fn window_json(w: &rates::maintenance::Window) -> Value {
    json!({
        "id": w.id,
        "cameras": w.cameras,
        "org": w.org,
        "start": time::format(WallTime::from_micros(w.start_us)),
        "end": time::format(WallTime::from_micros(w.end_us)),
        "reason": w.reason,
        "created_by": w.created_by,
    })
}

/// `GET /api/v1/maintenance`: the maintenance windows (admin).
pub async fn list_windows(State(state): State<Arc<AppState>>, caller: Caller) -> Result<axum::Json<Value>, ApiError> {
    caller.require(&state, auth::Action::Admin, None)?;
    Ok(axum::Json(Value::Array(
        state.rates.windows.list().iter().map(window_json).collect(),
    )))
}

/// `POST /api/v1/maintenance`: declares a maintenance window (admin); its time is not counted
/// against the rates. Audited.
pub async fn create_window(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<axum::Json<NewWindow>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&state, auth::Action::Admin, None)?;
    let req = crate::request::json_body(body, "{\"cameras\"?: [ids], \"org\"?, \"start\", \"end\", \"reason\"}")?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "reason: say what the maintenance is (1 to 1000 characters)",
        ));
    }
    if req.cameras.is_empty() && req.org.as_deref().is_none_or(|o| o.trim_matches('/').is_empty()) {
        return Err(ApiError::bad_request("cameras or org: name what is under maintenance"));
    }
    if req.cameras.len() > 10_000 || req.cameras.iter().any(|c| c.is_empty() || c.len() > 64) {
        return Err(ApiError::bad_request("cameras: up to 10,000 camera ids"));
    }
    // A year at most: a window is for work, not for retiring a camera.
    let (start, end) = crate::request::window_of(&req.start, &req.end, 366 * 86_400 * 1_000_000)?;
    let w = rates::maintenance::Window {
        id: format!("mw-{:012x}", rand::random::<u64>() >> 16),
        cameras: req.cameras,
        org: req
            .org
            .map(|o| o.trim_matches('/').to_owned())
            .filter(|o| !o.is_empty()),
        start_us: start.as_micros(),
        end_us: end.as_micros(),
        reason: reason.to_owned(),
        created_by: caller.who.actor(),
    };
    let st = state.clone();
    let w2 = w.clone();
    tokio::task::spawn_blocking(move || st.rates.windows.add(w2))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut e = caller.event("maintenance.create", None);
    e.target = Some(w.id.clone());
    e.reason = Some(w.reason.clone());
    e.detail = window_json(&w);
    state.audit(e).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(window_json(&w))).into_response())
}

/// `DELETE /api/v1/maintenance/{id}` (admin). Audited.
pub async fn delete_window(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    caller: Caller,
) -> Result<axum::Json<Value>, ApiError> {
    caller.require(&state, auth::Action::Admin, None)?;
    let st = state.clone();
    let id2 = id.clone();
    let removed = tokio::task::spawn_blocking(move || st.rates.windows.remove(&id2))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no maintenance window {:?}",
                id.chars().take(40).collect::<String>()
            ))
        })?;
    let mut e = caller.event("maintenance.delete", None);
    e.target = Some(removed.id.clone());
    state.audit(e).await?;
    Ok(axum::Json(json!({ "deleted": window_json(&removed) })))
}
