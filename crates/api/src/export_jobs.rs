//! Export jobs: each writes a signed evidence package (see `store::export`) in the background
//! and keeps its state beside the package.
//!
//! Packages live in `<first data dir>/exports/`, outside the segment tree, so retention never
//! touches them; each job's state is kept beside its package (`<id>.json`) and reloaded at
//! start, so finished exports survive restarts (a job interrupted by a restart is marked failed
//! and its partial file removed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use media::progressive::VirtualMp4;
use media::{StreamId, WallTime};
use serde::{Deserialize, Serialize};
use store::Store;
use store::export::{Manifest, ManifestCamera, ManifestNode, NodeKey, PackageFile, Span, write_package};
use store::playback::{PlaybackRequest, SampleCache};

use crate::time;

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
    pub(crate) dir: PathBuf,
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

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn save(&self, job: &Job) {
        let p = self.dir.join(format!("{}.json", job.id));
        let tmp = p.with_extension("json.tmp");
        let ok = std::fs::write(&tmp, serde_json::to_vec_pretty(job).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &p));
        if let Err(e) = ok {
            tracing::error!(file = %p.display(), "cannot save export job state: {e}");
        }
    }

    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut Job)) -> Option<Job> {
        let mut jobs = self.lock();
        let job = jobs.get_mut(id)?;
        f(job);
        Some(job.clone())
    }
}

/// The members whose recordings the plans use: this one for its own files, each other member
/// for the files fetched from it.
fn source_nodes(plans: &[store::playback::PlaybackPlan], members: &Members) -> Vec<String> {
    let Some(me) = &members.me else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for path in plans.iter().flat_map(|p| &p.sources) {
        let who = members
            .extra
            .iter()
            .find(|(_, p, _)| p == path)
            .map_or(me, |(m, _, _)| m);
        if !out.contains(who) {
            out.push(who.clone());
        }
    }
    out.sort();
    out
}

fn stamp(t: WallTime) -> String {
    let s = time::format(t);
    s.chars().filter(|c| c.is_ascii_alphanumeric()).take(15).collect()
}

/// In a cluster: this member's name and the other members' segments of the range, fetched
/// when the export was asked for.
#[derive(Default)]
pub struct Members {
    /// This member (`None` for a node alone).
    pub me: Option<String>,
    /// Their segments.
    pub extra: Vec<crate::cluster::MemberSegment>,
}

/// What one export job packages.
pub struct Export {
    /// The stream.
    pub stream: StreamId,
    /// The window asked for.
    pub window: (WallTime, WallTime),
    /// The camera's name, for the manifest.
    pub camera_name: String,
    /// Other cluster members' recordings of the window.
    pub members: Members,
}

impl Exports {
    /// Runs job `id` (`what`: a stream over a window) to completion, from the recordings of
    /// `store` and the other members' fetched segments; on a blocking thread.
    pub fn run(&self, store: &Store, samples: &SampleCache, id: &str, what: Export) {
        let Export {
            stream,
            window: (start, end),
            camera_name,
            members,
        } = what;
        let exports = self;
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
                let p = store::playback::plan_with(store, samples, &req, crate::cluster::planned(&members.extra))
                    .map_err(|e| e.to_string())?;
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
                source_nodes: source_nodes(&plans, &members),
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
}
