//! Helpers for tests of several levels: nodes linked community → street → district, each a
//! real `sharpeye run` process, with tokens issued through each lower node's API.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Node, PASSWORD, free_addr, wait_until};

/// `[node]` and the common sections of a node at `level`, listening on `listen`, with `extra`
/// (cameras, `[[lower]]` entries, `[live]`...).
pub fn level_config(
    id: &str,
    level: &str,
    listen: SocketAddr,
    rtsp: Option<SocketAddr>,
    data: &Path,
    extra: &str,
) -> String {
    let rtsp = rtsp.map(|a| format!("rtsp_listen = \"{a}\"\n")).unwrap_or_default();
    format!(
        "[server]\nlisten = \"{listen}\"\n{rtsp}data_dirs = [\"{}\"]\n\n[node]\nid = \"{id}\"\nname = \"{id} centre\"\nlevel = \"{level}\"\n\n[ingest]\nreconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n\n[[users]]\nname = \"admin\"\npassword = \"{PASSWORD}\"\nrole = \"admin\"\n\n{extra}",
        data.display()
    )
}

/// A node `id` at level `id` (`community`, `street`, ...) on a free address, its data under
/// `dir`, with `extra` (cameras, `[[lower]]` entries...).
pub fn level_node(dir: &Path, id: &str, extra: &str) -> Node {
    let a = addr();
    Node::start(dir, &level_config(id, id, a, None, &dir.join("data"), extra), a)
}

/// A node's `[[lower]]` entry for `lower` (dialled down, 20 Mbit/s) under `org`, with a token
/// issued on it for the upper node `upper`.
pub fn lower_of(lower: &mut Node, id: &str, upper: &str, org: &str) -> String {
    let t = issue_upper_token(lower, upper);
    lower_toml(id, &format!("http://{}", lower.addr), &t, 20, org, "down")
}

/// A `[[lower]]` entry.
pub fn lower_toml(id: &str, url: &str, token: &str, link_mbps: u32, org: &str, dial: &str) -> String {
    format!(
        "[[lower]]\nid = \"{id}\"\nurl = \"{url}\"\ntoken = \"{token}\"\nlink_mbps = {link_mbps}\norg = \"{org}\"\ndial = \"{dial}\"\n\n"
    )
}

/// Issues an API token on `node` for an upper node: live, playback, export and hold over every
/// camera it has.
pub fn issue_upper_token(node: &mut Node, name: &str) -> String {
    let (s, b) = node.post(
        "/api/v1/tokens",
        &json!({"name": name, "actions": ["live", "playback", "export", "hold"], "resources": ["*"]}),
    );
    assert_eq!(s, 201, "{b}");
    b["secret"].as_str().or_else(|| b["token"].as_str()).unwrap().to_owned()
}

/// A node's cameras, as its admin sees them.
pub fn cameras(node: &mut Node) -> Vec<Value> {
    let (s, b) = node.get("/api/v1/cameras");
    assert_eq!(s, 200, "{b}");
    b.as_array().cloned().unwrap_or_default()
}

/// Waits until `node` lists `camera` with `status`.
pub fn wait_for_camera(node: &mut Node, camera: &str, status: &str, limit: Duration) -> Value {
    let mut found = Value::Null;
    let ok = wait_until(limit, || {
        found = cameras(node)
            .into_iter()
            .find(|c| c["id"] == camera)
            .unwrap_or(Value::Null);
        found["status"] == status
    });
    assert!(
        ok,
        "{camera} is not {status} at {} within {limit:?}: {found}\n{}",
        node.addr,
        node.log_text()
    );
    found
}

/// The node's links, by id.
pub fn link(node: &mut Node, id: &str) -> Value {
    let (s, b) = node.get("/api/v1/links");
    assert_eq!(s, 200, "{b}");
    b["links"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

/// A free address for a node.
pub fn addr() -> SocketAddr {
    free_addr()
}
