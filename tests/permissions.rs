//! Permissions end to end, against a real node recording camsim cameras: the authorization
//! matrix (every endpoint × every kind of caller × a camera inside and outside their grant),
//! login throttling, and hostile input.
//!
//! The matrix's expectations come from one table of what each caller may do ([`WHO`]) and the
//! API's own endpoint table (`api::ENDPOINTS`, which the router is built from): a new endpoint
//! without a row here fails the test.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api::{Access, ENDPOINTS, Endpoint};
use common::*;
use serde_json::{Value, json};

/// Camera inside the callers' grant (department A's group) and outside it.
const CAM_IN: &str = "cam0";
const CAM_OUT: &str = "cam2";

/// What each kind of authenticated caller may do: camera actions on `CAM_IN`, on `CAM_OUT`,
/// and node-wide actions. This is the expectation, written independently of the server's
/// policy code.
struct Who {
    column: &'static str,
    cam_in: &'static [&'static str],
    cam_out: &'static [&'static str],
    node: &'static [&'static str],
}

const ALL_CAM: &[&str] = &["live", "playback", "export", "hold", "ptz"];

const WHO: &[Who] = &[
    Who {
        column: "viewer",
        cam_in: &["live", "playback"],
        cam_out: &[],
        node: &[],
    },
    Who {
        column: "operator",
        cam_in: &["live", "playback", "ptz"],
        cam_out: &[],
        node: &[],
    },
    Who {
        column: "dispatcher",
        cam_in: ALL_CAM,
        cam_out: &[],
        node: &[],
    },
    // Auditors may read the audit log, and play back what their department may (their role's
    // ceiling allows playback), nothing else.
    Who {
        column: "auditor",
        cam_in: &["playback"],
        cam_out: &[],
        node: &["audit"],
    },
    Who {
        column: "admin",
        cam_in: ALL_CAM,
        cam_out: ALL_CAM,
        node: &["admin", "audit", "metrics"],
    },
    // An API token of admin's, scoped to live and playback over group ga.
    Who {
        column: "module",
        cam_in: &["live", "playback"],
        cam_out: &[],
        node: &[],
    },
];

/// Columns without a valid identity: every protected endpoint answers 401.
const NOBODY: &[&str] = &["no token", "expired", "tampered", "revoked"];

fn action_name(a: auth::Action) -> &'static str {
    a.as_str()
}

fn expected(ep: &Endpoint, who: Option<&Who>, inside: bool, ok: u16) -> u16 {
    let Some(who) = who else {
        return if ep.access == Access::Public { ok } else { 401 };
    };
    let cams = if inside { who.cam_in } else { who.cam_out };
    match ep.access {
        Access::Public | Access::Authenticated => ok,
        // This node has no links: nobody's session or API token is a link's.
        Access::LinkToken => 401,
        Access::CameraAny => {
            if cams.is_empty() {
                404
            } else {
                ok
            }
        }
        Access::Camera(a) | Access::Media(a) => {
            if cams.contains(&action_name(a)) {
                ok
            } else if cams.is_empty() {
                404
            } else {
                403
            }
        }
        Access::Node(a) => {
            if who.node.contains(&action_name(a)) {
                ok
            } else {
                403
            }
        }
    }
}

fn scoped_to_camera(ep: &Endpoint) -> bool {
    matches!(ep.access, Access::CameraAny | Access::Camera(_) | Access::Media(_))
}

/// One HTTP call: (status, body text). Streaming answers (live.mp4) are not read past their
/// headers.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<(&str, String)>) -> (u16, String) {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    macro_rules! send {
        ($req:expr) => {{
            let mut r = $req;
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r
        }};
    }
    let mut resp = match (method, body) {
        ("GET", _) => send!(a.get(url)).call(),
        ("DELETE", _) => send!(a.delete(url)).call(),
        (m, body) => {
            let (ct, text) = body.unwrap_or(("application/json", String::new()));
            match m {
                "POST" => send!(a.post(url)).header("Content-Type", ct).send(text),
                "PUT" => send!(a.put(url)).header("Content-Type", ct).send(text),
                "PATCH" => send!(a.patch(url)).header("Content-Type", ct).send(text),
                other => panic!("method {other}"),
            }
        }
    }
    .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let streaming = (content_type.starts_with("video/mp4") && url.contains("live.mp4"))
        || content_type.starts_with("text/event-stream");
    let text = if streaming {
        String::new()
    } else {
        resp.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    (status, text)
}

struct Ctx {
    base: String,
    admin: String,
    rec_start: String,
    rec_end: String,
    /// Export ids per camera, done.
    export_in: String,
    export_out: String,
    /// A segment URL (without token) per camera.
    segment_in: String,
    segment_out: String,
    offer: String,
    n: AtomicUsize,
}

impl Ctx {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.n.fetch_add(1, Ordering::Relaxed))
    }

    fn admin_post(&self, path: &str, body: Value) -> Value {
        let (s, b) = call(
            "POST",
            &self.url(path),
            Some(&self.admin),
            Some(("application/json", body.to_string())),
        );
        assert!(s == 201 || s == 200 || s == 202, "{path}: {s} {b}");
        serde_json::from_str(&b).unwrap()
    }

    /// The request for `ep` on `camera` with `token`: (method, url, body).
    fn request(&self, ep: &Endpoint, camera: &str, token: Option<&str>) -> (String, Option<(&'static str, String)>) {
        let inside = camera == CAM_IN;
        let json = |v: Value| Some(("application/json", v.to_string()));
        let window = format!("start={}&end={}", self.rec_start, self.rec_end);
        let p = ep.path.replace("{id}", camera);
        match (ep.method, ep.path) {
            ("POST", "/api/v1/login") => (p, json(json!({"username": "viewer", "password": PASSWORD}))),
            ("POST", "/api/v1/logout") => (p, None),
            (_, "/api/v1/cameras/{id}/recordings") => (format!("{p}?{window}"), None),
            (_, "/api/v1/cameras/{id}/playback.mp4") => (format!("{p}?{window}"), None),
            (_, "/api/v1/cameras/{id}/playback.m3u8") => (format!("{p}?{window}"), None),
            (_, "/api/v1/cameras/{id}/segments/{file}") => (
                if inside {
                    self.segment_in.clone()
                } else {
                    self.segment_out.clone()
                },
                None,
            ),
            ("POST", "/api/v1/cameras/{id}/whep") => (p, Some(("application/sdp", self.offer.clone()))),
            ("DELETE", "/api/v1/cameras/{id}/whep/{session}") => (p.replace("{session}", "0123456789abcdef"), None),
            (_, "/api/v1/cameras/{id}/device-recordings") => (format!("{p}?{window}"), None),
            ("POST", "/api/v1/cameras/{id}/ptz") => (p, json(json!({"pan": 1, "speed": 64}))),
            ("POST", "/api/v1/cameras/{id}/media-token") => (p, json(json!({"action": "playback"}))),
            ("POST", "/api/v1/exports") => (
                p,
                json(json!({"camera": camera, "start": self.rec_start, "end": self.rec_end, "reason": "matrix"})),
            ),
            (_, "/api/v1/exports/{id}") => (
                format!(
                    "/api/v1/exports/{}",
                    if inside { &self.export_in } else { &self.export_out }
                ),
                None,
            ),
            (_, "/api/v1/exports/{id}/verify") => (
                format!(
                    "/api/v1/exports/{}/verify",
                    if inside { &self.export_in } else { &self.export_out }
                ),
                None,
            ),
            ("PUT", "/api/v1/walls/{id}") => (
                "/api/v1/walls/matrix".into(),
                json(json!({"layout": "2x2", "tiles": []})),
            ),
            ("GET", "/api/v1/walls/{id}") => {
                let (s, b) = call(
                    "PUT",
                    &self.url("/api/v1/walls/matrix-read"),
                    Some(&self.admin),
                    json(json!({"layout": "1", "tiles": []})),
                );
                assert_eq!(s, 200, "{b}");
                ("/api/v1/walls/matrix-read".into(), None)
            }
            ("POST", "/api/v1/views") => (p, json(json!({"name": "matrix", "layout": "1", "tiles": []}))),
            ("POST", "/api/v1/grids") => (p, json(matrix_grid("matrix"))),
            ("GET", "/api/v1/grids/{id}") => {
                let (s, b) = call(
                    "POST",
                    &self.url("/api/v1/grids"),
                    Some(&self.admin),
                    json(matrix_grid("matrix-read")),
                );
                assert_eq!(s, 201, "{b}");
                ("/api/v1/grids/matrix-read".into(), None)
            }
            ("DELETE", "/api/v1/grids/{id}") => {
                // A cell to delete for each caller that may.
                let id = self.unique("matrix-del");
                let (s, b) = call(
                    "POST",
                    &self.url("/api/v1/grids"),
                    Some(&self.admin),
                    json(matrix_grid(&id)),
                );
                assert_eq!(s, 201, "{b}");
                (format!("/api/v1/grids/{id}"), None)
            }
            ("POST", "/api/v1/webhooks") => (
                p,
                json(json!({"url": "http://127.0.0.1:9/hook", "secret": "matrix-secret-0123456789"})),
            ),
            (_, "/api/v1/webhooks/{id}") | ("POST", "/api/v1/webhooks/{id}/retry") => {
                // A subscription for each caller that may touch it.
                let (s, b) = call(
                    "POST",
                    &self.url("/api/v1/webhooks"),
                    Some(&self.admin),
                    json(
                        json!({"url": "http://127.0.0.1:9/hook", "secret": "matrix-secret-0123456789", "kinds": ["none."]}),
                    ),
                );
                assert_eq!(s, 201, "{b}");
                let id = serde_json::from_str::<Value>(&b).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (ep.path.replace("{id}", &id), None)
            }
            ("POST", "/api/v1/maintenance") => (
                p,
                json(json!({"org": "test", "start": self.rec_start, "end": self.rec_end, "reason": "matrix"})),
            ),
            ("DELETE", "/api/v1/maintenance/{id}") => {
                let (s, b) = call(
                    "POST",
                    &self.url("/api/v1/maintenance"),
                    Some(&self.admin),
                    json(json!({"org": "test", "start": self.rec_start, "end": self.rec_end, "reason": "matrix"})),
                );
                assert_eq!(s, 201, "{b}");
                let id = serde_json::from_str::<Value>(&b).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (format!("/api/v1/maintenance/{id}"), None)
            }
            ("POST", "/api/v1/incidents") => (
                p,
                json(json!({"point": {"lat": 38.9, "lon": 121.6}, "reason": "matrix"})),
            ),
            ("DELETE", "/api/v1/views/{id}") => {
                // Its owner deletes a view: the caller's own where the caller can make one.
                let body = json(json!({"name": "to delete", "layout": "1", "tiles": []}));
                let (s, b) = call("POST", &self.url("/api/v1/views"), token, body.clone());
                let view: Value = if s == 201 {
                    serde_json::from_str(&b).unwrap()
                } else {
                    self.admin_post(
                        "/api/v1/views",
                        json!({"name": "to delete", "layout": "1", "tiles": []}),
                    )
                };
                (format!("/api/v1/views/{}", view["id"].as_str().unwrap()), None)
            }
            (_, "/api/v1/exports/{id}/download") => (
                format!(
                    "/api/v1/exports/{}/download",
                    if inside { &self.export_in } else { &self.export_out }
                ),
                None,
            ),
            ("POST", "/api/v1/holds") => (
                p,
                json(json!({"camera": camera, "start": self.rec_start, "end": self.rec_end, "reason": "matrix"})),
            ),
            ("DELETE", "/api/v1/holds/{id}") => {
                let h = self.admin_post(
                    "/api/v1/holds",
                    json!({"camera": camera, "start": self.rec_start, "end": self.rec_end, "reason": "to release"}),
                );
                (format!("/api/v1/holds/{}", h["id"].as_str().unwrap()), None)
            }
            ("GET", "/api/v1/audit") => ("/api/v1/audit?limit=5".into(), None),
            ("POST", "/api/v1/users") => (
                p,
                json(json!({"name": self.unique("u"), "password": "password-123", "role": "viewer"})),
            ),
            ("PATCH", "/api/v1/users/{name}") => ("/api/v1/users/patched".into(), json(json!({"disabled": false}))),
            ("DELETE", "/api/v1/users/{name}") => {
                let name = self.unique("gone");
                self.admin_post(
                    "/api/v1/users",
                    json!({"name": name, "password": "password-123", "role": "viewer"}),
                );
                (format!("/api/v1/users/{name}"), None)
            }
            ("DELETE", "/api/v1/users/{name}/sessions") => ("/api/v1/users/target/sessions".into(), None),
            ("POST", "/api/v1/departments") => (p, json(json!({"id": self.unique("d")}))),
            ("DELETE", "/api/v1/departments/{id}") => {
                let id = self.unique("dgone");
                self.admin_post("/api/v1/departments", json!({"id": id}));
                (format!("/api/v1/departments/{id}"), None)
            }
            ("POST", "/api/v1/groups") => (p, json(json!({"id": self.unique("g"), "cameras": ["cam1"]}))),
            ("PUT", "/api/v1/groups/{id}") => ("/api/v1/groups/gtmp".into(), json(json!({"cameras": ["cam1"]}))),
            ("DELETE", "/api/v1/groups/{id}") => {
                let id = self.unique("ggone");
                self.admin_post("/api/v1/groups", json!({"id": id, "cameras": []}));
                (format!("/api/v1/groups/{id}"), None)
            }
            ("POST", "/api/v1/grants") => (
                p,
                json(json!({"subject": "user:target", "actions": ["live"], "resource": "camera:cam3"})),
            ),
            ("DELETE", "/api/v1/grants/{id}") => {
                let g = self.admin_post(
                    "/api/v1/grants",
                    json!({"subject": "user:target", "actions": ["playback"], "resource": "camera:cam3"}),
                );
                (format!("/api/v1/grants/{}", g["id"].as_str().unwrap()), None)
            }
            ("POST", "/api/v1/tokens") => (
                p,
                json(json!({"name": self.unique("t"), "actions": ["live"], "resources": ["camera:cam1"]})),
            ),
            ("DELETE", "/api/v1/tokens/{id}") => {
                let t = self.admin_post(
                    "/api/v1/tokens",
                    json!({"name": self.unique("tgone"), "actions": ["live"], "resources": ["camera:cam1"]}),
                );
                (format!("/api/v1/tokens/{}", t["id"].as_str().unwrap()), None)
            }
            _ if !p.contains('{') => (p, None),
            (m, path) => panic!("no matrix row for {m} {path}: add one"),
        }
    }
}

/// The status an allowed caller gets: the endpoint's success, except where the matrix's request
/// is one the endpoint answers otherwise by design (a WHEP session id that does not exist).
fn ok_status(ep: &Endpoint) -> u16 {
    if ep.path.ends_with("/whep/{session}") {
        404
    } else if ep.path.ends_with("/snapshot.jpg") && !cfg!(feature = "gstreamer") {
        // Decoding is the gstreamer feature's: an allowed caller hears that it is not built.
        501
    } else if ep.path.ends_with("/device-recordings") || ep.path.ends_with("/ptz") {
        // The matrix's cameras are RTSP cameras: device functions answer 409 to those allowed.
        409
    } else {
        ep.ok
    }
}

fn wait_recorded(node: &mut Node, camera: &str, secs: i64) -> (i64, i64) {
    let t0 = now_us();
    let mut got = (0, 0);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let r = node.ranges(camera, t0 - 60_000_000, now_us());
            if let Some(&(a, b)) = r.first() {
                got = (a, b);
                return b - a >= secs * 1_000_000;
            }
            false
        }),
        "{camera} recorded {secs} s"
    );
    got
}

/// A grid cell `id` as GeoJSON.
fn matrix_grid(id: &str) -> Value {
    json!({ "type": "Feature", "id": id, "geometry": { "type": "Polygon", "coordinates": [[[121.6, 38.9], [121.61, 38.9], [121.61, 38.91], [121.6, 38.9]]] } })
}

#[test]
fn authorization_matrix_every_endpoint_every_caller() {
    let (sim, _dir, mut node, _) = permissions_node();
    let base = node.url("");
    let admin = node.token();
    // Recordings on both cameras to play, export and hold.
    let (a, _) = wait_recorded(&mut node, CAM_IN, 4);
    wait_recorded(&mut node, CAM_OUT, 4);
    let (rec_start, rec_end) = (rfc3339(a + 500_000), rfc3339(a + 3_000_000));

    let ctx0 = Ctx {
        base: base.clone(),
        admin: admin.clone(),
        rec_start: rec_start.clone(),
        rec_end: rec_end.clone(),
        export_in: String::new(),
        export_out: String::new(),
        segment_in: String::new(),
        segment_out: String::new(),
        offer: testkit::whep_offer(),
        n: AtomicUsize::new(0),
    };
    // Fixtures: a finished export and a segment URL per camera, a group to replace, the
    // expired and revoked tokens.
    let mut exports = Vec::new();
    let mut segments = Vec::new();
    for cam in [CAM_IN, CAM_OUT] {
        let e = ctx0.admin_post(
            "/api/v1/exports",
            json!({"camera": cam, "start": rec_start, "end": rec_end, "reason": "fixture"}),
        );
        let id = e["id"].as_str().unwrap().to_owned();
        assert!(wait_until(Duration::from_secs(30), || {
            get_json(&ctx0.url(&format!("/api/v1/exports/{id}")), Some(&admin)).1["status"] == "done"
        }));
        exports.push(id);
        let (s, m3u8) = call(
            "GET",
            &ctx0.url(&format!(
                "/api/v1/cameras/{cam}/playback.m3u8?start={rec_start}&end={rec_end}"
            )),
            Some(&admin),
            None,
        );
        assert_eq!(s, 200, "{m3u8}");
        let seg = m3u8.lines().find(|l| l.starts_with("segments/")).unwrap();
        let seg = seg.split("&token=").next().unwrap();
        segments.push(format!("/api/v1/cameras/{cam}/{seg}"));
    }
    ctx0.admin_post("/api/v1/groups", json!({"id": "gtmp", "cameras": []}));
    // Users from the config are read-only through the API: PATCH one made through it.
    ctx0.admin_post(
        "/api/v1/users",
        json!({"name": "patched", "password": "password-123", "role": "viewer"}),
    );
    let module = ctx0.admin_post(
        "/api/v1/tokens",
        json!({"name": "grid-module", "actions": ["live", "playback"], "resources": ["group:ga"]}),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let expired = ctx0.admin_post(
        "/api/v1/tokens",
        json!({"name": "short", "actions": ["live"], "resources": ["*"], "expires_at": rfc3339(now_us() + 1_000_000)}),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = login(&base, "admin");
    assert_eq!(
        call("POST", &format!("{base}/api/v1/logout"), Some(&revoked), None).0,
        200
    );
    let mut tampered = admin.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    std::thread::sleep(Duration::from_millis(1200));
    let ctx = Ctx {
        export_in: exports[0].clone(),
        export_out: exports[1].clone(),
        segment_in: segments[0].clone(),
        segment_out: segments[1].clone(),
        ..ctx0
    };

    let tokens: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("expired", Some(expired)),
        ("tampered", Some(tampered)),
        ("revoked", Some(revoked)),
        ("viewer", Some(login(&base, "viewer"))),
        ("operator", Some(login(&base, "operator"))),
        ("dispatcher", Some(login(&base, "dispatcher"))),
        ("auditor", Some(login(&base, "auditor"))),
        ("admin", Some(admin.clone())),
        ("module", Some(module)),
    ];
    assert_eq!(tokens.len(), NOBODY.len() + WHO.len());

    let mut failures = Vec::new();
    let mut cells = 0;
    for ep in ENDPOINTS {
        let cameras: &[&str] = if scoped_to_camera(ep) {
            &[CAM_IN, CAM_OUT]
        } else {
            &[CAM_IN]
        };
        for &camera in cameras {
            for (column, token) in &tokens {
                let who = WHO.iter().find(|w| w.column == *column);
                assert!(who.is_some() || NOBODY.contains(column));
                // Logging out ends the session used: log out a fresh one of the same user.
                let token = match (ep.path.ends_with("/logout"), who) {
                    (true, Some(w)) if w.column != "module" => Some(login(&base, w.column)),
                    _ => token.clone(),
                };
                let (url, body) = ctx.request(ep, camera, token.as_deref());
                let want = expected(ep, who, camera == CAM_IN, ok_status(ep));
                let (got, text) = call(ep.method, &ctx.url(&url), token.as_deref(), body);
                cells += 1;
                let mut bad = got != want;
                // A 404 must be the right one: an allowed caller's WHEP DELETE names the session,
                // a hidden camera reads like an unknown one.
                if !bad && got == 404 && ep.path.ends_with("/whep/{session}") {
                    let allowed = expected(ep, who, camera == CAM_IN, 0) == 0;
                    bad = !text.contains(if allowed { "session" } else { "no camera" });
                }
                if !bad && got >= 400 && !text.is_empty() {
                    bad = serde_json::from_str::<Value>(&text).map_or(true, |v| v["error"]["code"].as_str().is_none());
                }
                if bad {
                    failures.push(format!(
                        "{} {} [{column}, {camera}]: want {want}, got {got}: {}",
                        ep.method,
                        ep.path,
                        text.chars().take(160).collect::<String>()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every endpoint has been through the matrix: ENDPOINTS is what the router serves, and the
    // OpenAPI document lists exactly those.
    let (s, doc) = get_json(&format!("{base}/api/v1/openapi.json"), None);
    assert_eq!(s, 200);
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|e| (e.method.to_owned(), e.path.to_owned()))
        .collect();
    assert_eq!(documented, table);
    println!("authorization matrix: {cells} cells, all as expected");
    drop(sim);
}

#[test]
fn logins_are_throttled_and_hostile_input_is_refused_cleanly() {
    let (sim, dir, mut node, _) = permissions_node();
    let data = dir.path().join("data");
    let addr = node.addr;
    let base = node.url("");
    let admin = node.token();

    // Throttling: the sixth wrong password locks the name for this address; even the right
    // password is then refused with 429 and Retry-After, until the lock ends.
    let attempt = |pw: &str| {
        let mut r = agent()
            .post(&format!("{base}/api/v1/login"))
            .header("Content-Type", "application/json")
            .send(json!({"username": "target", "password": pw}).to_string())
            .unwrap();
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), retry, r.body_mut().read_to_string().unwrap())
    };
    for i in 0..6 {
        let (s, _, b) = attempt("wrong-password");
        assert_eq!(s, 401, "attempt {i}: {b}");
    }
    let (s, retry, b) = attempt(PASSWORD);
    assert_eq!(s, 429, "{b}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    assert!(b.contains("too_many_attempts"), "{b}");
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(attempt(PASSWORD).0, 200);

    // Hostile input: each gets a clear 4xx JSON error, and no answer leaks paths, hashes or
    // internals.
    let big = "x".repeat(200_000);
    let long_token = "A".repeat(10_000);
    type Case<'a> = (&'a str, String, Option<&'a str>, Option<(&'a str, String)>, u16);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/users".into(),
            Some(&admin),
            Some(("application/json", format!("{{\"name\":\"{big}\"}}"))),
            413,
        ),
        (
            "POST",
            "/api/v1/login".into(),
            None,
            Some(("application/json", big.clone())),
            413,
        ),
        (
            "POST",
            "/api/v1/grants".into(),
            Some(&admin),
            Some(("application/json", "{bad json".into())),
            400,
        ),
        (
            "POST",
            "/api/v1/grants".into(),
            Some(&admin),
            Some(("application/json", "{\"subject\":1}".into())),
            400,
        ),
        (
            "POST",
            "/api/v1/grants".into(),
            Some(&admin),
            Some(("text/plain", "{}".into())),
            415,
        ),
        (
            "POST",
            "/api/v1/grants".into(),
            Some(&admin),
            Some((
                "application/json",
                json!({"subject": "user:x; rm -rf /", "actions": ["live"], "resource": "*"}).to_string(),
            )),
            400,
        ),
        (
            "POST",
            "/api/v1/grants".into(),
            Some(&admin),
            Some((
                "application/json",
                json!({"subject": "role:viewer", "actions": ["live", "fly"], "resource": "*"}).to_string(),
            )),
            400,
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(&admin),
            Some((
                "application/json",
                json!({"name": "../../etc/passwd", "password": "password-123", "role": "viewer"}).to_string(),
            )),
            400,
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(&admin),
            Some((
                "application/json",
                json!({"name": "robert'); DROP TABLE users;--", "password": "password-123", "role": "viewer"})
                    .to_string(),
            )),
            400,
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(&admin),
            Some((
                "application/json",
                json!({"name": "x", "password": "password-123", "role": "root"}).to_string(),
            )),
            400,
        ),
        (
            "POST",
            "/api/v1/departments".into(),
            Some(&admin),
            Some(("application/json", json!({"id": "a/../../b"}).to_string())),
            400,
        ),
        (
            "GET",
            "/api/v1/cameras/..%2F..%2Fetc%2Fpasswd".into(),
            Some(&admin),
            None,
            404,
        ),
        ("GET", "/api/v1/cameras/'%20OR%201=1--".into(), Some(&admin), None, 404),
        (
            "GET",
            "/api/v1/cameras/cam0/segments/..%2F..%2Fmedia.key".into(),
            Some(&admin),
            None,
            404,
        ),
        (
            "GET",
            "/api/v1/exports/..%2F..%2Fnode.key/download".into(),
            Some(&admin),
            None,
            404,
        ),
        (
            "GET",
            "/api/v1/cameras/%24(reboot)/live.mp4".into(),
            Some(&admin),
            None,
            404,
        ),
        (
            "GET",
            "/api/v1/audit?start=%3Cscript%3E".into(),
            Some(&admin),
            None,
            400,
        ),
        ("GET", "/api/v1/audit?limit=-1".into(), Some(&admin), None, 400),
        ("GET", "/api/v1/cameras".into(), Some(&long_token), None, 401),
        ("GET", "/api/v1/cameras".into(), Some("sk_"), None, 401),
        ("GET", "/api/v1/cameras".into(), Some("sk_abc_def"), None, 401),
        ("GET", "/api/v1/cameras".into(), Some("v2.1.live.YQ.AAAA"), None, 401),
        (
            "GET",
            "/api/v1/cameras/cam0/live.mp4?token=v2.99999999999.live.YWRtaW4.AAAA".into(),
            None,
            None,
            401,
        ),
        (
            "GET",
            "/api/v1/cameras/cam0/playback.mp4?token=%00%01".into(),
            None,
            None,
            401,
        ),
        (
            "POST",
            "/api/v1/login".into(),
            None,
            Some((
                "application/json",
                json!({"username": "admin' OR '1'='1", "password": "x"}).to_string(),
            )),
            401,
        ),
    ];
    for (method, path, token, body, want) in cases {
        let (got, text) = call(method, &format!("{base}{path}"), token, body);
        assert_eq!(
            got,
            want,
            "{method} {path}: {}",
            text.chars().take(200).collect::<String>()
        );
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: {text}"));
        for secret in [data.to_str().unwrap(), "$argon2", "panicked", PASSWORD] {
            assert!(!msg.contains(secret), "{method} {path} leaks {secret:?}: {msg}");
        }
        assert!(msg.len() < 600, "{method} {path}: message of {} bytes", msg.len());
    }
    // Raw, broken HTTP and Authorization headers: answered, not crashed.
    for raw in [
        "GET /api/v1/cameras HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \r\n\r\n",
        "GET /api/v1/cameras HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46\r\n\r\n",
        "GET /api/v1/cameras HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \u{7f}\u{1}\r\n\r\n",
    ] {
        let (status, _) = raw_http(addr, raw.as_bytes());
        assert!(status == 401 || status == 400, "{raw:?}: {status}");
    }
    // The node is still fine, and nothing was created by the refused requests.
    let (s, users) = get_json(&format!("{base}/api/v1/users"), Some(&admin));
    assert_eq!(s, 200);
    assert_eq!(users.as_array().unwrap().len(), 7, "{users}");
    drop(sim);
}
