//! Evidence exports: `POST /api/v1/exports` starts a job (see [`crate::export_jobs`]);
//! `GET /api/v1/exports/{id}` reports progress; `.../download` serves the zip.

use std::sync::Arc;

use auth::MediaAction;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::progressive::{Part, VirtualMp4};
use media::{StreamId, WallTime};
use serde::Deserialize;
use serde_json::{Value, json};
use store::playback::{PlanError, PlaybackRequest};

use crate::access::{Caller, ClientIp, media_caller, no_camera};
use crate::error::ApiError;
use crate::export_jobs::{Job, JobStatus};
use crate::ranged::{Servable, respond};
use crate::request::{QueryMap, json_body, kind_of, query, window_of};
use crate::state::AppState;
use crate::time;

fn job_json(job: &Job) -> Value {
    let progress = if job.bytes_total == 0 {
        if job.status == JobStatus::Done { 1.0 } else { 0.0 }
    } else {
        job.bytes_done as f64 / job.bytes_total as f64
    };
    json!({
        "id": job.id,
        "camera": job.camera,
        "stream": job.stream,
        "start": time::format(WallTime::from_micros(job.start_us)),
        "end": time::format(WallTime::from_micros(job.end_us)),
        "reason": job.reason,
        "exported_by": job.user,
        "created": time::format(WallTime::from_micros(job.created_us)),
        "status": job.status,
        "progress": progress,
        "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total,
        "error": job.error,
        "download": (job.status == JobStatus::Done).then(|| format!("/api/v1/exports/{}/download", job.id)),
        "package_size": job.package_size,
        "files": job.manifest.as_ref().map(|m| &m.files),
        "gaps": job.manifest.as_ref().map(|m| &m.gaps),
    })
}

/// `POST /api/v1/exports` body.
#[derive(Deserialize)]
pub struct ExportRequest {
    camera: String,
    start: String,
    end: String,
    reason: String,
    #[serde(default)]
    stream: Option<String>,
}

/// `POST /api/v1/exports`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<ExportRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body, "{\"camera\", \"start\", \"end\", \"reason\"}")?;
    caller.require(&state, auth::Action::Export, Some(&req.camera))?;
    let Some(cam) = state.cameras.get(&req.camera) else {
        return Err(no_camera(&req.camera));
    };
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "reason: say why the export is made (1 to 1000 characters); it goes into the signed manifest",
        ));
    }
    let (start, end) = window_of(&req.start, &req.end, state.max_playback_us)?;
    let kind = kind_of(req.stream.as_deref())?;
    if let Some(remote) = state.remote_for(&req.camera) {
        // The lower node holds the evidence: it builds and signs the package; this node relays.
        let body = json!({
            "camera": req.camera,
            "start": crate::time::query_time(start),
            "end": crate::time::query_time(end),
            "reason": reason,
            "stream": kind.as_str(),
        });
        let mut job = remote
            .call(
                &req.camera,
                "POST",
                "/api/v1/exports".into(),
                Some(body),
                caller.end_user(&state.node.id),
            )
            .await?;
        let id = relay_job(&mut job, &req.camera)?;
        let mut event = caller.event("export.create", Some(&req.camera));
        event.target = Some(id.clone());
        event.reason = Some(reason.to_owned());
        event.detail = json!({ "stream": kind.as_str(), "start": time::format(start), "end": time::format(end), "made_by": "lower node" });
        state.audit(event).await?;
        return Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/api/v1/exports/{id}"))],
            Json(job),
        )
            .into_response());
    }
    let stream = StreamId::new(req.camera.as_str(), kind);
    // Fail now, not in the background, if there is nothing to export.
    let st = state.clone();
    let probe = PlaybackRequest {
        stream: stream.clone(),
        start,
        end,
        speed: 1,
    };
    // In a cluster, the other members' recordings of the range are part of the export (fetched
    // once, here, and kept for the job).
    let planned = tokio::task::spawn_blocking(move || {
        crate::cluster::plan_over_members(st.cluster.get().map(|c| &**c), &st.store, &st.samples, &probe)
            .map(|(_, extra)| extra)
    })
    .await
    .map_err(ApiError::internal)?;
    match planned {
        Err(PlanError::NothingRecorded) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "nothing_recorded",
                "nothing is recorded in this range",
            ));
        }
        Err(PlanError::Store(e)) => return Err(ApiError::internal(e)),
        Ok(_) => {}
    }
    let extra = planned.unwrap_or_default();
    let member = state.cluster.get().map(|c| c.member());
    let mut raw = [0u8; 8];
    rand::fill(&mut raw);
    let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let job = Job {
        id: id.clone(),
        camera: req.camera.clone(),
        stream: kind.as_str().into(),
        start_us: start.as_micros(),
        end_us: end.as_micros(),
        reason: reason.to_owned(),
        user: caller.who.actor(),
        created_us: WallTime::now().as_micros(),
        status: JobStatus::Queued,
        bytes_done: 0,
        bytes_total: 0,
        error: None,
        package: None,
        package_size: None,
        manifest: None,
    };
    let mut event = caller.event("export.create", Some(&req.camera));
    event.target = Some(id.clone());
    event.reason = Some(reason.to_owned());
    event.detail = serde_json::json!({
        "stream": kind.as_str(),
        "start": time::format(start),
        "end": time::format(end),
    });
    state.audit(event).await?;
    let exports = state.exports.clone();
    exports.lock().insert(id.clone(), job.clone());
    exports.save(&job);
    let camera_name = cam.info.name.clone();
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        st.exports.run(
            &st.store,
            &st.samples,
            &id,
            crate::export_jobs::Export {
                stream,
                window: (start, end),
                camera_name,
                members: crate::export_jobs::Members { me: member, extra },
            },
        )
    });
    let body = job_json(&job);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/exports/{}", job.id))],
        Json(body),
    )
        .into_response())
}

/// `GET /api/v1/exports`: the exports of cameras the caller may export.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Value> {
    let snap = state.auth.snapshot();
    Json(Value::Array(
        state
            .exports
            .lock()
            .values()
            .filter(|j| {
                snap.policy
                    .camera_actions(&caller.who, &j.camera)
                    .contains(auth::Action::Export)
            })
            .map(job_json)
            .collect(),
    ))
}

/// A lower node's export job as this node shows it: its id made routable back
/// ([`crate::state::remote_id`]) and its download link pointing here; returns the id.
fn relay_job(job: &mut Value, camera: &str) -> Result<String, ApiError> {
    let id = crate::state::remote_id(job["id"].as_str().unwrap_or_default(), camera)?;
    job["id"] = json!(id);
    if job["download"].is_string() {
        job["download"] = json!(format!("/api/v1/exports/{id}/download"));
    }
    Ok(id)
}

fn find(state: &AppState, id: &str) -> Result<Job, ApiError> {
    state.exports.lock().get(id).cloned().ok_or_else(|| no_export(id))
}

/// Job `id` if `caller` may export its camera; otherwise the answer for an unknown export, so
/// ids of other departments' exports are not revealed.
fn exportable_job(state: &AppState, caller: &Caller, id: &str) -> Result<Job, ApiError> {
    let job = find(state, id)?;
    caller
        .require(state, auth::Action::Export, Some(&job.camera))
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                no_export(id)
            } else {
                e
            }
        })?;
    Ok(job)
}

/// The package file name of a finished job; 409 `not_ready` (saying to `what` it when done)
/// before that.
fn finished_package<'a>(job: &'a Job, what: &str) -> Result<&'a str, ApiError> {
    match (&job.package, job.status) {
        (Some(name), JobStatus::Done) => Ok(name),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!("the export is {:?}; {what} it when done", job.status).to_lowercase(),
        )),
    }
}

/// `GET /api/v1/exports/{id}`.
pub async fn status(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    if let Some((lower_id, camera)) = id.rsplit_once('@') {
        let remote = state.remote_for(camera).ok_or_else(|| no_export(&id))?;
        caller
            .require(&state, auth::Action::Export, Some(camera))
            .map_err(|e| {
                if e.status == StatusCode::NOT_FOUND {
                    no_export(&id)
                } else {
                    e
                }
            })?;
        let mut job = remote
            .call(
                camera,
                "GET",
                format!("/api/v1/exports/{lower_id}"),
                None,
                caller.end_user(&state.node.id),
            )
            .await?;
        relay_job(&mut job, camera)?;
        return Ok(Json(job));
    }
    let job = exportable_job(&state, &caller, &id)?;
    Ok(Json(job_json(&job)))
}

fn no_export(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no export with id {:?}",
        id.chars().take(32).collect::<String>()
    ))
}

/// `GET|HEAD /api/v1/exports/{id}/download`: the package zip (Range supported). Bearer token,
/// or a media token for the export's camera with action `export`.
pub async fn download(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
    ip: ClientIp,
    q: QueryMap,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    if let Some((lower_id, camera)) = id.rsplit_once('@') {
        let (caller, _) = media_caller(&state, &headers, &q, ip, camera, MediaAction::Export).map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                no_export(&id)
            } else {
                e
            }
        })?;
        let remote = state.remote_for(camera).ok_or_else(|| no_export(&id))?;
        state
            .audit_once(&caller, camera, "export.download", json!({ "export": id }))
            .await?;
        let body = remote
            .recorded(
                camera,
                crate::remote_access::RemoteRequest::for_client(
                    format!("/api/v1/exports/{lower_id}/download"),
                    &method,
                    &headers,
                    caller.end_user(&state.node.id),
                ),
            )
            .await?;
        return crate::relayed::serve(body, &method, &headers, "application/zip");
    }
    // Do not reveal which ids exist to callers without valid credentials: check them first.
    let camera_of = find(&state, &id).map(|j| j.camera);
    let (caller, _) = media_caller(
        &state,
        &headers,
        &q,
        ip,
        camera_of.as_deref().unwrap_or("-"),
        MediaAction::Export,
    )
    .map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            no_export(&id)
        } else {
            e
        }
    })?;
    let job = find(&state, &id)?;
    let name = finished_package(&job, "download")?;
    state
        .audit_once(
            &caller,
            &job.camera,
            "export.download",
            serde_json::json!({ "export": id }),
        )
        .await?;
    let path = state.exports.dir.join(name);
    let len = std::fs::metadata(&path).map(|m| m.len()).map_err(ApiError::internal)?;
    let file = VirtualMp4 {
        head: bytes::Bytes::new(),
        parts: vec![Part {
            source: 0,
            offset: 0,
            len,
        }],
        len,
        samples: 0,
    };
    respond(
        Servable {
            file: Arc::new(file),
            sources: Arc::new(vec![path]),
            etag: format!("export-{id}-{len}"),
            content_type: "application/zip",
        },
        &method,
        &headers,
        vec![("content-disposition", format!("attachment; filename=\"{name}\""))],
    )
}

/// `GET /api/v1/exports/{id}/verify`: the node checks a finished package as
/// `sharpeye verify-export` would (hashes, sizes, the signature by this node's key) and says
/// what it found, with the manifest: the evidence officer sees the result before handing the
/// package on. Local exports only (a lower node's package is verified where it was made).
pub async fn verify(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    if id.contains('@') {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "remote_export",
            "this export was made by a lower node; download it and run sharpeye verify-export on the package",
        ));
    }
    let job = exportable_job(&state, &caller, &id)?;
    let name = finished_package(&job, "verify")?;
    let path = state.exports.dir.join(name);
    let key = state.exports.public_key();
    let v = tokio::task::spawn_blocking(move || store::export::verify(&path, Some(&key)))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "export": id,
        "intact": v.problems.is_empty(),
        "problems": v.problems,
        "manifest": v.manifest,
        "public_key": state.exports.public_key(),
    })))
}
