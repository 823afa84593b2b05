//! Evidence exports: `POST /api/v1/exports` starts a job that writes a signed package (see
//! `store::export`); `GET /api/v1/exports/{id}` reports progress; `.../download` serves the zip.
//!
//! Packages live in `<first data dir>/exports/`, outside the segment tree, so retention never
//! touches them; each job's state is kept beside its package (`<id>.json`) and reloaded at
//! start, so finished exports survive restarts (a job interrupted by a restart is marked failed
//! and its partial file removed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use auth::MediaAction;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::progressive::{Part, VirtualMp4};
use media::{StreamId, StreamKind, WallTime};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::export::{Manifest, ManifestCamera, ManifestNode, NodeKey, PackageFile, Span, write_package};
use store::playback::{PlanError, PlaybackRequest, plan};

use crate::access::{Caller, ClientIp, media_caller};
use crate::ranged::{Servable, respond};
use crate::state::AppState;
use crate::{ApiError, time};

/// Where a job is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting to start.
    Queued,
    /// Writing the package.
    Running,
    /// The package is ready.
    Done,
    /// It failed; `error` says why.
    Failed,
}

/// An export job as stored and reported.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// Id.
    pub id: String,
    /// Camera id.
    pub camera: String,
    /// `main` or `sub`.
    pub stream: String,
    /// Requested start, µs.
    pub start_us: i64,
    /// Requested end, µs.
    pub end_us: i64,
    /// Why.
    pub reason: String,
    /// Who.
    pub user: String,
    /// When it was asked for, µs.
    pub created_us: i64,
    /// State.
    pub status: JobStatus,
    /// Media bytes copied so far.
    pub bytes_done: u64,
    /// Media bytes to copy.
    pub bytes_total: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Package file name when done.
    pub package: Option<String>,
    /// Package size when done.
    pub package_size: Option<u64>,
    /// The manifest when done.
    pub manifest: Option<Manifest>,
}

/// The export jobs of this node.
pub struct Exports {
    dir: PathBuf,
    key: NodeKey,
    jobs: Mutex<BTreeMap<String, Job>>,
}

impl Exports {
    /// Opens `dir` (creating it), loading the node key from `key_path` and earlier jobs.
    pub fn open(dir: &Path, key_path: &Path) -> Result<Exports, store::StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| store::StoreError::Io {
            path: dir.to_owned(),
            op: "create directory",
            source,
        })?;
        let key = NodeKey::load_or_create(key_path)?;
        let mut jobs = BTreeMap::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "partial") {
                let _ = std::fs::remove_file(&p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Ok(mut job) = std::fs::read(&p)
                .map_err(|_| ())
                .and_then(|b| serde_json::from_slice::<Job>(&b).map_err(|_| ()))
            else {
                tracing::warn!(file = %p.display(), "unreadable export job file; ignored");
                continue;
            };
            if matches!(job.status, JobStatus::Queued | JobStatus::Running) {
                job.status = JobStatus::Failed;
                job.error = Some("interrupted by a restart of the server; start the export again".into());
                let _ = std::fs::write(&p, serde_json::to_vec_pretty(&job).unwrap_or_default());
            }
            jobs.insert(job.id.clone(), job);
        }
        Ok(Exports {
            dir: dir.to_owned(),
            key,
            jobs: Mutex::new(jobs),
        })
    }

    /// The node's public key (base64), as manifests carry it.
    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// Every job, as it stands.
    pub fn jobs(&self) -> Vec<Job> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, job: &Job) {
        let p = self.dir.join(format!("{}.json", job.id));
        let tmp = p.with_extension("json.tmp");
        let ok = std::fs::write(&tmp, serde_json::to_vec_pretty(job).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &p));
        if let Err(e) = ok {
            tracing::error!(file = %p.display(), "cannot save export job state: {e}");
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) -> Option<Job> {
        let mut jobs = self.lock();
        let job = jobs.get_mut(id)?;
        f(job);
        Some(job.clone())
    }
}

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
    let Json(req) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"camera\", \"start\", \"end\", \"reason\"}} as JSON: {}",
            e.body_text()
        ))
    })?;
    caller.require(&state, auth::Action::Export, Some(&req.camera))?;
    let Some(cam) = state.cameras.get(&req.camera) else {
        return Err(crate::access::no_camera(&req.camera));
    };
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "reason: say why the export is made (1 to 1000 characters); it goes into the signed manifest",
        ));
    }
    let q = std::collections::HashMap::from([
        ("start".to_owned(), req.start.clone()),
        ("end".to_owned(), req.end.clone()),
    ]);
    let (start, end) = crate::handlers::window(&q, state.max_playback_us)?;
    let kind = match req.stream.as_deref() {
        None | Some("main") => StreamKind::Main,
        Some("sub") => StreamKind::Sub,
        Some(_) => return Err(ApiError::bad_request("stream: expected main or sub")),
    };
    let stream = StreamId::new(req.camera.as_str(), kind);
    // Fail now, not in the background, if there is nothing to export.
    let st = state.clone();
    let probe = PlaybackRequest {
        stream: stream.clone(),
        start,
        end,
        speed: 1,
    };
    let planned = tokio::task::spawn_blocking(move || plan(&st.store, &st.samples, &probe))
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
    tokio::task::spawn_blocking(move || run(&st, &id, stream, start, end, camera_name));
    let body = job_json(&job);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/exports/{}", job.id))],
        Json(body),
    )
        .into_response())
}

fn stamp(t: WallTime) -> String {
    let s = time::format(t);
    s.chars().filter(|c| c.is_ascii_alphanumeric()).take(15).collect()
}

/// Runs a job to completion (on a blocking thread).
fn run(state: &AppState, id: &str, stream: StreamId, start: WallTime, end: WallTime, camera_name: String) {
    let exports = &state.exports;
    let result = (|| -> Result<Job, String> {
        // One plan per codec: a codec switch inside the range starts another file.
        let mut plans = Vec::new();
        let mut from = start;
        loop {
            let req = PlaybackRequest {
                stream: stream.clone(),
                start: from,
                end,
                speed: 1,
            };
            let p = plan(&state.store, &state.samples, &req).map_err(|e| e.to_string())?;
            let next = p.truncated_at;
            plans.push(p);
            match next {
                Some(t) if t > from && t < end && plans.len() < 100 => from = t,
                _ => break,
            }
        }
        let movies: Vec<VirtualMp4> = plans
            .iter()
            .map(|p| media::progressive::build(&p.spec).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let total: u64 = movies.iter().map(|m| m.parts.iter().map(|p| p.len).sum::<u64>()).sum();
        exports.update(id, |j| {
            j.status = JobStatus::Running;
            j.bytes_total = total;
        });
        let base = format!("{}_{}", stream.camera(), stamp(start));
        let files: Vec<PackageFile<'_>> = plans
            .iter()
            .zip(&movies)
            .enumerate()
            .map(|(i, (p, m))| PackageFile {
                name: format!("{base}_{}.mp4", i + 1),
                file: m,
                sources: &p.sources,
                span: Span {
                    start: time::format(p.first),
                    end: time::format(p.last),
                },
            })
            .collect();
        let first = plans.first().map(|p| p.first).unwrap_or(start);
        let last = plans.last().map(|p| p.last).unwrap_or(end);
        // Copied out first: a guard held inside the struct literal below would live to its end.
        let (who, why) = exports
            .lock()
            .get(id)
            .map(|j| (j.user.clone(), j.reason.clone()))
            .unwrap_or_default();
        let manifest = Manifest {
            format: store::export::FORMAT.into(),
            version: 1,
            id: id.to_owned(),
            created: time::format(WallTime::now()),
            camera: ManifestCamera {
                id: stream.camera().to_owned(),
                name: camera_name,
            },
            stream: stream.kind().as_str().into(),
            requested: Span {
                start: time::format(start),
                end: time::format(end),
            },
            actual: Span {
                start: time::format(first),
                end: time::format(last),
            },
            gaps: plans
                .iter()
                .flat_map(|p| &p.gaps)
                .map(|(a, b)| Span {
                    start: time::format(*a),
                    end: time::format(*b),
                })
                .collect(),
            files: Vec::new(),
            exported_by: who,
            reason: why,
            node: ManifestNode {
                public_key: String::new(),
                key_id: String::new(),
                software: String::new(),
            },
        };
        let package = format!("{base}_{id}.zip");
        let path = exports.dir.join(&package);
        let mut done = 0u64;
        let mut reported = 0u64;
        let manifest = write_package(&path, &files, manifest, &exports.key, |n| {
            done += n;
            if done - reported >= 8 << 20 {
                reported = done;
                exports.update(id, |j| j.bytes_done = done);
            }
        })
        .map_err(|e| e.to_string())?;
        let size = std::fs::metadata(&path).map(|m| m.len()).ok();
        exports
            .update(id, |j| {
                j.status = JobStatus::Done;
                j.bytes_done = total;
                j.package = Some(package);
                j.package_size = size;
                j.manifest = Some(manifest);
            })
            .ok_or_else(|| "job vanished".to_owned())
    })();
    let job = match result {
        Ok(job) => {
            tracing::info!(export = id, camera = stream.camera(), "export done");
            job
        }
        Err(e) => {
            tracing::error!(export = id, camera = stream.camera(), "export failed: {e}");
            match exports.update(id, |j| {
                j.status = JobStatus::Failed;
                j.error = Some(e);
            }) {
                Some(j) => j,
                None => return,
            }
        }
    };
    exports.save(&job);
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

fn find(state: &AppState, id: &str) -> Result<Job, ApiError> {
    state.exports.lock().get(id).cloned().ok_or_else(|| no_export(id))
}

/// `GET /api/v1/exports/{id}`.
pub async fn status(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let job = find(&state, &id)?;
    caller
        .require(&state, auth::Action::Export, Some(&job.camera))
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                no_export(&id)
            } else {
                e
            }
        })?;
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
    q: Result<Query<std::collections::HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(e.body_text()))?;
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
    let (Some(name), JobStatus::Done) = (&job.package, job.status) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!("the export is {:?}; download it when done", job.status).to_lowercase(),
        ));
    };
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
