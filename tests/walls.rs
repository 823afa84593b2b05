//! Wall screens and saved views over HTTP against a real node: what a dispatch module may push
//! (only cameras its caller may watch), malformed and hostile bodies answered with the field at
//! fault and never a 500, walls kept across a restart, views shared within a department only.

mod common;

use camsim::{BuiltinFixture, CameraSpec};
use common::*;
use serde_json::{Value, json};

fn put(url: &str, body: &str, token: &str) -> (u16, Value) {
    let mut resp = agent()
        .put(url)
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .send(body)
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn delete(url: &str, token: &str) -> u16 {
    agent()
        .delete(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

fn login(base: &str, user: &str) -> String {
    let (s, b) = post_json(
        &format!("{base}/api/v1/login"),
        &json!({"username": user, "password": PASSWORD}),
        None,
    );
    assert_eq!(s, 200, "{b}");
    b["token"].as_str().unwrap().to_owned()
}

#[test]
fn walls_take_only_what_the_pusher_may_watch_and_survive_restarts() {
    let sim = Sim::start(vec![
        CameraSpec::new("cam0", BuiltinFixture::H264_240p.load()),
        CameraSpec::new("cam1", BuiltinFixture::H264_240p.load()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let people = format!(
        "[[departments]]\nid = \"east\"\n\n[[departments]]\nid = \"east-1\"\nparent = \"east\"\n\n[[departments]]\nid = \"west\"\n\n\
         [[users]]\nname = \"op\"\npassword = \"{PASSWORD}\"\nrole = \"operator\"\ndepartment = \"east\"\n\n\
         [[users]]\nname = \"op2\"\npassword = \"{PASSWORD}\"\nrole = \"operator\"\ndepartment = \"east-1\"\n\n\
         [[users]]\nname = \"westop\"\npassword = \"{PASSWORD}\"\nrole = \"operator\"\ndepartment = \"west\"\n\n\
         [[grants]]\nsubject = \"department:east\"\nactions = [\"live\"]\nresource = \"camera:cam0\"\n\n"
    );
    let cams = format!(
        "{}{}",
        camera_toml("cam0", &sim.url("cam0")),
        camera_toml("cam1", &sim.url("cam1"))
    );
    let config = config_toml(addr, &dir.path().join("data"), "", &format!("{people}{cams}"));
    let mut node = Node::start(dir.path(), &config, addr);
    let base = node.url("");
    let op = login(&base, "op");
    let wall = format!("{base}/api/v1/walls/room-1");

    // Malformed, truncated and hostile bodies: 400 naming what is wrong, nothing stored.
    let bad: &[(&str, &str)] = &[
        ("{\"layout\": \"2x2\", \"tiles\": [", "expected a JSON body"),
        ("", "expected a JSON body"),
        ("[]", "expected a JSON body"),
        ("{\"layout\": \"2x2\", \"tiles\": [], \"extra\": 1}", "unknown field"),
        ("{\"layout\": \"7x7\"}", "layout:"),
        ("{\"layout\": \"2x2\\u0000\"}", "layout:"),
        (
            "{\"layout\": \"1\", \"tiles\": [{\"camera\": \"cam0\"}, {\"camera\": \"cam0\"}]}",
            "tiles:",
        ),
        (
            "{\"layout\": \"1\", \"tiles\": [{\"camera\": \"cam0\", \"stream\": \"hd\"}]}",
            "tiles[0].stream",
        ),
        (
            "{\"layout\": \"2x2\", \"tour\": {\"cameras\": [\"cam0\"], \"every_s\": 0}}",
            "tour.every_s",
        ),
        (
            "{\"layout\": \"2x2\", \"tour\": {\"cameras\": [\"cam0\"], \"every_s\": 5, \"tile\": 4}}",
            "tour.tile",
        ),
        (
            "{\"layout\": \"2x2\", \"tour\": {\"cameras\": [], \"every_s\": 5}}",
            "tour.cameras",
        ),
        ("{\"layout\": 4}", "expected a JSON body"),
    ];
    for (body, says) in bad {
        let (s, b) = put(&wall, body, &op);
        assert_eq!(s, 400, "{body}: {b}");
        assert!(b["error"]["message"].as_str().unwrap().contains(says), "{body}: {b}");
    }
    let many: Vec<Value> = (0..500).map(|_| json!({"camera": "cam0"})).collect();
    let (s, b) = put(&wall, &json!({"layout": "6x6", "tiles": many}).to_string(), &op);
    assert_eq!(s, 400, "{b}");
    let huge: Vec<Value> = (0..10_000).map(|_| json!({"camera": "cam0"})).collect();
    let (s, _) = put(&wall, &json!({"layout": "6x6", "tiles": huge}).to_string(), &op);
    assert_eq!(s, 413);
    let (s, _) = put(
        &format!("{base}/api/v1/walls/{}", "x".repeat(65)),
        "{\"layout\": \"1\"}",
        &op,
    );
    assert_eq!(s, 400);
    let (s, _) = put(&format!("{base}/api/v1/walls/a%20b"), "{\"layout\": \"1\"}", &op);
    assert_eq!(s, 400);
    let (s, _) = get_json(&wall, Some(&op));
    assert_eq!(s, 404, "nothing was stored by the refused pushes");

    // A camera the pusher may not watch: refused as if it did not exist; nothing stored.
    let (s, b) = put(&wall, "{\"layout\": \"2x2\", \"tiles\": [{\"camera\": \"cam1\"}]}", &op);
    assert_eq!(s, 404, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("cam1"), "{b}");
    // Without a token: 401.
    let (s, _) = put(&wall, "{\"layout\": \"1\"}", "sk_nonsense");
    assert_eq!(s, 401);

    // Pushes count versions; the stored layout is what was pushed.
    let (s, b) = put(
        &wall,
        "{\"layout\": \"1+5\", \"tiles\": [{\"camera\": \"cam0\", \"stream\": \"sub\"}, {\"camera\": \"\"}]}",
        &op,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["version"], 1);
    let (_, b) = put(
        &wall,
        "{\"layout\": \"3x3\", \"tiles\": [{\"camera\": \"\"}, {\"camera\": \"cam0\"}]}",
        &op,
    );
    assert_eq!(b["version"], 2);
    assert_eq!(b["updated_by"], "op");

    // Views: shared with the department and the ones below it, not beyond; deleted by their owner.
    let views = format!("{base}/api/v1/views");
    let (s, v) = post_json(
        &views,
        &json!({"name": "Night shift", "layout": "2x2", "tiles": [{"camera": "cam0"}], "shared": true}),
        Some(&op),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["department"], "east");
    let names = |token: &str| -> Vec<String> {
        let (_, list) = get_json(&views, Some(token));
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&login(&base, "op2")), ["Night shift"]);
    assert!(names(&login(&base, "westop")).is_empty());
    let (s, b) = post_json(&views, &json!({"name": "", "layout": "1", "tiles": []}), Some(&op));
    assert_eq!(
        (s, b["error"]["message"].as_str().unwrap().starts_with("name:")),
        (400, true),
        "{b}"
    );
    let admin = node.token();
    let (s, b) = post_json(
        &views,
        &json!({"name": "mine", "layout": "1", "shared": true}),
        Some(&admin),
    );
    assert_eq!(s, 400, "the admin has no department to share with: {b}");
    let view = format!("{views}/{}", v["id"].as_str().unwrap());
    assert_eq!(delete(&view, &login(&base, "op2")), 403);
    assert_eq!(delete(&view, &op), 200);
    assert_eq!(delete(&view, &op), 404);

    // The push was audited with its cameras.
    let (_, audit) = node.get(&format!(
        "/api/v1/audit?action=wall.push&start={}&end={}",
        rfc3339(now_us() - 600_000_000),
        rfc3339(now_us() + 60_000_000)
    ));
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(entries[0]["target"], "room-1");
    assert_eq!(entries[0]["detail"]["cameras"], json!(["cam0", ""]));

    // A restart keeps the wall as it was last pushed.
    assert!(node.terminate().success());
    let mut node = Node::start(dir.path(), &config, addr);
    let (s, b) = node.get("/api/v1/walls/room-1");
    assert_eq!(s, 200, "{b}");
    assert_eq!((b["layout"].as_str(), b["version"].as_u64()), (Some("3x3"), Some(2)));
    assert_eq!(b["tiles"], json!([{"camera": ""}, {"camera": "cam0"}]));
    assert!(node.terminate().success());
}
