//! Video walls and saved views.
//!
//! A *wall* is a named screen in a dispatch room (`/wall/{id}` in a kiosk browser). Other
//! software puts a layout on it (`PUT /api/v1/walls/{id}`, 上墙 from the dispatch module); the
//! screen hears `wall.changed` on the event stream and reloads it. A *view* is a layout an
//! operator saved for themselves, optionally shared with their department.
//!
//! Both are small and written rarely, so each is one JSON file under the first data disk,
//! replaced atomically (write, fsync, rename) on every change: a crash leaves the old or the
//! new file, never half of one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use auth::Action;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use media::WallTime;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::events::NodeEvent;
use crate::request::json_body;
use crate::state::AppState;
use crate::time;

/// The layouts a wall or view may have, with how many tiles each holds. `1+5` and `1+7` are one
/// large tile with five or seven small ones around it.
pub const LAYOUTS: [(&str, usize); 8] = [
    ("1", 1),
    ("2x2", 4),
    ("1+5", 6),
    ("1+7", 8),
    ("3x3", 9),
    ("4x4", 16),
    ("5x5", 25),
    ("6x6", 36),
];

/// Most views one user may keep (a typo loop in a script should not fill the disk).
const MAX_VIEWS_PER_USER: usize = 200;
/// Most walls a node keeps.
const MAX_WALLS: usize = 1000;

/// One tile of a layout: a camera and, optionally, which of its streams.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    /// The camera's id.
    pub camera: String,
    /// `main` or `sub`; absent lets the screen choose by the tile's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

/// A camera tour (轮巡): the tiles cycle through `cameras`, `every_s` seconds each.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tour {
    /// The cameras visited in order.
    pub cameras: Vec<String>,
    /// Seconds on each.
    pub every_s: u32,
    /// The tile that tours (reading order, from 0); absent: the whole wall pages through them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<usize>,
}

/// A layout and what fills it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// One of [`LAYOUTS`].
    pub layout: String,
    /// The tiles in reading order; fewer than the layout holds leaves the rest empty.
    #[serde(default)]
    pub tiles: Vec<Tile>,
    /// A tour, if the wall cycles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tour: Option<Tour>,
}

/// A wall as stored: its layout and who put it there when.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Wall {
    /// The screen's name.
    pub id: String,
    /// What it shows.
    #[serde(flatten)]
    pub content: Layout,
    /// Counts pushes, so a screen can tell a new layout from the one it shows.
    pub version: u64,
    /// When it was last pushed (microseconds since the epoch).
    pub updated_us: i64,
    /// Who pushed it (audit actor form).
    pub updated_by: String,
}

/// A saved view.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct View {
    /// Its id.
    pub id: String,
    /// The name the operator gave it.
    pub name: String,
    /// What it shows.
    #[serde(flatten)]
    pub content: Layout,
    /// The user who saved it.
    pub owner: String,
    /// The department it is shared with, if any (its members and those of departments below).
    pub department: Option<String>,
    /// When it was saved (microseconds since the epoch).
    pub created_us: i64,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct Saved {
    walls: BTreeMap<String, Wall>,
    views: BTreeMap<String, View>,
    next_view: u64,
}

/// Walls and views, kept in memory and in `<dir>/walls.json`.
pub struct Walls {
    file: PathBuf,
    saved: Mutex<Saved>,
}

/// Why the walls file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WallsError {
    /// Reading or writing the file failed.
    #[error("walls file {path}: {source}; check the data disk")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

impl Walls {
    /// Opens (or starts) the walls file in `dir`. A file that does not parse (edited by hand,
    /// written by another program) is moved aside to `walls.json.bad-<time>` with an error in
    /// the log, and the node starts with no walls: a screen layout is never worth stopping
    /// recording for.
    pub fn open(dir: &std::path::Path) -> Result<Walls, WallsError> {
        let file = dir.join("walls.json");
        let io = |source| WallsError::Io {
            path: file.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let saved = match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    let aside = file.with_extension(format!("json.bad-{}", WallTime::now().as_micros() / 1_000_000));
                    std::fs::rename(&file, &aside).map_err(io)?;
                    tracing::error!(file = %file.display(), moved_to = %aside.display(), "the saved walls and views do not parse ({e}); starting without them");
                    Saved::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(io(e)),
        };
        Ok(Walls {
            file,
            saved: Mutex::new(saved),
        })
    }

    /// Walls and views kept only in memory (tests, nodes without a data disk).
    pub fn in_memory() -> Walls {
        Walls {
            file: PathBuf::new(),
            saved: Mutex::new(Saved::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Saved> {
        self.saved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` and writes the file; if the write fails, the change is undone.
    fn change<T>(&self, change: impl FnOnce(&mut Saved) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut saved = self.lock();
        let before = saved.clone();
        let out = change(&mut saved)?;
        if self.file.as_os_str().is_empty() {
            return Ok(out);
        }
        if let Err(e) = write_atomically(&self.file, &serde_json::to_vec_pretty(&*saved).unwrap_or_default()) {
            *saved = before;
            tracing::error!(file = %self.file.display(), "writing walls: {e}");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage",
                "the wall could not be saved on the data disk; see the server log",
            ));
        }
        Ok(out)
    }

    /// The wall `id`, if one was ever pushed.
    pub fn wall(&self, id: &str) -> Option<Wall> {
        self.lock().walls.get(id).cloned()
    }

    /// Every wall.
    pub fn walls(&self) -> Vec<Wall> {
        self.lock().walls.values().cloned().collect()
    }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A name for a wall or view id: 1 to 64 of `A-Z a-z 0-9 - _ .`.
pub(crate) fn check_id(id: &str, what: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(ApiError::bad_request(format!(
            "{what}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// Checks a layout against [`LAYOUTS`] and the caller's rights: every camera on it must be one
/// the caller may watch live (a wall shows what its pusher could have watched, nothing more).
pub(crate) fn check_layout(state: &AppState, caller: &Caller, l: &Layout) -> Result<(), ApiError> {
    let Some(&(_, capacity)) = LAYOUTS.iter().find(|(name, _)| *name == l.layout) else {
        let names: Vec<&str> = LAYOUTS.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::bad_request(format!(
            "layout: {:?} is not one of {}",
            l.layout.chars().take(16).collect::<String>(),
            names.join(", ")
        )));
    };
    if l.tiles.len() > capacity {
        return Err(ApiError::bad_request(format!(
            "tiles: layout {} holds {capacity} tiles, {} were given",
            l.layout,
            l.tiles.len()
        )));
    }
    for (i, t) in l.tiles.iter().enumerate() {
        if let Some(s) = &t.stream
            && s != "main"
            && s != "sub"
        {
            return Err(ApiError::bad_request(format!(
                "tiles[{i}].stream: expected \"main\" or \"sub\""
            )));
        }
        if t.camera.is_empty() {
            // An empty tile: allowed, it keeps its place in reading order.
            continue;
        }
        caller.require(state, Action::Live, Some(&t.camera))?;
    }
    if let Some(tour) = &l.tour {
        if tour.every_s == 0 || tour.every_s > 3600 {
            return Err(ApiError::bad_request("tour.every_s: 1 to 3600 seconds"));
        }
        if tour.cameras.is_empty() || tour.cameras.len() > 1000 {
            return Err(ApiError::bad_request("tour.cameras: 1 to 1000 cameras"));
        }
        if tour.tile.is_some_and(|t| t >= capacity) {
            return Err(ApiError::bad_request(format!(
                "tour.tile: layout {} has tiles 0 to {}",
                l.layout,
                capacity - 1
            )));
        }
        for c in &tour.cameras {
            caller.require(state, Action::Live, Some(c))?;
        }
    }
    Ok(())
}

pub(crate) fn wall_json(w: &Wall) -> Value {
    json!({
        "id": w.id,
        "layout": w.content.layout,
        "tiles": w.content.tiles,
        "tour": w.content.tour,
        "version": w.version,
        "updated_at": time::format(WallTime::from_micros(w.updated_us)),
        "updated_by": w.updated_by,
    })
}

fn view_json(v: &View) -> Value {
    json!({
        "id": v.id,
        "name": v.name,
        "layout": v.content.layout,
        "tiles": v.content.tiles,
        "tour": v.content.tour,
        "owner": v.owner,
        "department": v.department,
        "created_at": time::format(WallTime::from_micros(v.created_us)),
    })
}

/// `GET /api/v1/walls`: every named wall.
pub async fn list(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<Value> {
    Json(json!(state.walls.walls().iter().map(wall_json).collect::<Vec<_>>()))
}

/// `GET /api/v1/walls/{id}`: what the wall shows.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    check_id(&id, "wall id")?;
    let w = state.walls.wall(&id).ok_or_else(|| {
        ApiError::not_found(format!(
            "wall {id} has no layout yet; PUT /api/v1/walls/{id} puts one on it"
        ))
    })?;
    Ok(Json(wall_json(&w)))
}

/// `PUT /api/v1/walls/{id}` `{layout, tiles:[{camera, stream?}], tour?}`: puts a layout on a
/// wall; screens showing it switch on the `wall.changed` event. Audited with its cameras.
pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
    body: Result<Json<Layout>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id, "wall id")?;
    let layout = json_body(
        body,
        "{\"layout\": \"2x2\", \"tiles\": [{\"camera\": \"ID\", \"stream\": \"sub\"}]}",
    )?;
    check_layout(&state, &caller, &layout)?;
    let wall = push(&state, &caller, &id, layout, None).await?;
    Ok(Json(wall_json(&wall)))
}

/// Puts a checked layout on wall `id`, audited as `wall.push` (`incident` names the incident
/// that pushed it), and tells the screens.
pub(crate) async fn push(
    state: &AppState,
    caller: &Caller,
    id: &str,
    layout: Layout,
    incident: Option<&str>,
) -> Result<Wall, ApiError> {
    let mut e = caller.event("wall.push", None);
    e.target = Some(id.to_owned());
    e.detail = json!({
        "layout": layout.layout,
        "cameras": layout.tiles.iter().map(|t| &t.camera).collect::<Vec<_>>(),
        "incident": incident,
    });
    state.audit(e).await?;
    let actor = caller.who.actor();
    let wall = state.walls.change(|s| {
        if !s.walls.contains_key(id) && s.walls.len() >= MAX_WALLS {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_many",
                format!("this node keeps at most {MAX_WALLS} walls"),
            ));
        }
        let version = s.walls.get(id).map_or(1, |w| w.version + 1);
        let w = Wall {
            id: id.to_owned(),
            content: layout,
            version,
            updated_us: WallTime::now().as_micros(),
            updated_by: actor,
        };
        s.walls.insert(id.to_owned(), w.clone());
        Ok(w)
    })?;
    state.events.publish(NodeEvent {
        kind: "wall.changed",
        camera: None,
        data: json!({ "wall": wall.id, "version": wall.version }),
    });
    Ok(wall)
}

/// `POST /api/v1/views` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewView {
    name: String,
    #[serde(flatten)]
    content: Layout,
    /// Share with the caller's department.
    #[serde(default)]
    shared: bool,
}

/// May `caller` see `v`: theirs, or shared with their department or one above it.
fn sees(state: &AppState, caller: &Caller, v: &View) -> bool {
    if v.owner == caller.who.user {
        return true;
    }
    let (Some(shared), Some(mine)) = (&v.department, &caller.who.department) else {
        return false;
    };
    let snap = state.auth.snapshot();
    let departments = &snap.directory.departments;
    // Up from the caller's department, bounded in case the directory holds a loop.
    let mut at = Some(mine.as_str());
    for _ in 0..=departments.len() {
        let Some(d) = at else { break };
        if d == shared {
            return true;
        }
        at = departments.iter().find(|r| r.id == d).and_then(|r| r.parent.as_deref());
    }
    false
}

/// `GET /api/v1/views`: the caller's views and those shared with their department.
pub async fn list_views(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Value> {
    let saved = state.walls.lock();
    let views: Vec<Value> = saved
        .views
        .values()
        .filter(|v| sees(&state, &caller, v))
        .map(view_json)
        .collect();
    Json(json!(views))
}

/// `POST /api/v1/views` `{name, layout, tiles, tour?, shared?}`: saves a view.
pub async fn create_view(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<NewView>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(
        body,
        "{\"name\", \"layout\", \"tiles\": [{\"camera\"}], \"shared\": false}",
    )?;
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("name: 1 to 100 characters"));
    }
    check_layout(&state, &caller, &req.content)?;
    let department = if req.shared {
        Some(
            caller
                .who
                .department
                .clone()
                .ok_or_else(|| ApiError::bad_request("shared: you belong to no department to share it with"))?,
        )
    } else {
        None
    };
    let owner = caller.who.user.clone();
    let view = state.walls.change(|s| {
        if s.views.values().filter(|v| v.owner == owner).count() >= MAX_VIEWS_PER_USER {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_many",
                format!("you keep {MAX_VIEWS_PER_USER} views already; delete some first"),
            ));
        }
        s.next_view += 1;
        let v = View {
            id: format!("v{}", s.next_view),
            name,
            content: req.content,
            owner,
            department,
            created_us: WallTime::now().as_micros(),
        };
        s.views.insert(v.id.clone(), v.clone());
        Ok(v)
    })?;
    Ok((StatusCode::CREATED, Json(view_json(&view))).into_response())
}

/// `DELETE /api/v1/views/{id}`: its owner (or an administrator) deletes a view.
pub async fn delete_view(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let admin = state
        .auth
        .snapshot()
        .policy
        .node_actions(&caller.who)
        .contains(Action::Admin);
    let removed = state.walls.change(|s| {
        let Some(v) = s.views.get(&id) else {
            return Err(ApiError::not_found(format!(
                "no view {:?}",
                id.chars().take(32).collect::<String>()
            )));
        };
        if v.owner != caller.who.user && !admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only its owner or an administrator deletes a view",
            ));
        }
        Ok(s.views.remove(&id))
    })?;
    Ok(Json(json!({ "deleted": removed.map(|v| v.id) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_survives_a_reopen_and_a_corrupt_one_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let w = Walls::open(dir.path()).unwrap();
        w.change(|s| {
            s.walls.insert(
                "room1".into(),
                Wall {
                    id: "room1".into(),
                    content: Layout {
                        layout: "2x2".into(),
                        tiles: vec![Tile {
                            camera: "cam0".into(),
                            stream: Some("sub".into()),
                        }],
                        tour: None,
                    },
                    version: 3,
                    updated_us: 1,
                    updated_by: "admin".into(),
                },
            );
            Ok(())
        })
        .unwrap();
        let again = Walls::open(dir.path()).unwrap();
        let room = again.wall("room1").unwrap();
        assert_eq!(room.version, 3);
        assert_eq!(room.content.tiles[0].stream.as_deref(), Some("sub"));
        std::fs::write(dir.path().join("walls.json"), b"{\"walls\": [").unwrap();
        let fresh = Walls::open(dir.path()).unwrap();
        assert!(fresh.walls().is_empty());
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("walls.json.bad-"))
            .collect();
        assert_eq!(aside.len(), 1, "the unreadable file is kept for a person to look at");
    }

    #[test]
    fn a_failed_write_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let w = Walls::open(&dir.path().join("ui")).unwrap();
        std::fs::remove_dir_all(dir.path().join("ui")).unwrap();
        let r = w.change(|s| {
            s.next_view = 9;
            Ok(())
        });
        assert_eq!(r.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(w.lock().next_view, 0);
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("room-1_a.b", "wall id").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(check_id(bad, "wall id").is_err(), "{bad:?}");
        }
    }
}
