//! The checker against good files, files with every kind of mistake, and hostile values.

use std::time::Duration;

use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
rtsp_listen = "127.0.0.1:8554"
data_dirs = ["/var/lib/sharpeye/disk1"]

[recording]
segment = "60s"

[retention]
standard = "30d"
key = "90d"

[gb28181]
id = "34020000002000000001"
domain = "3402000000"
listen = "127.0.0.1:5060"
password = "12345678"

[[users]]
name = "admin"
password = "change-me"
role = "admin"

[[cameras]]
id = "34020000001320000001"
name = "East gate"
url = "rtsp://user:pass@10.0.0.5/stream1"
sub_url = "rtsp://user:pass@10.0.0.5/stream2"
tier = "key"
record = true
org = "dalian/xigang/renmin-road"
location = { lat = 38.914, lon = 121.614 }
"#;

#[test]
fn the_api_md_example_parses() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.cameras.len(), 1);
    assert_eq!(c.cameras[0].tier, Tier::Key);
    assert_eq!(c.retention.key, Duration::from_secs(90 * 86_400));
    assert_eq!(c.recording.segment, Duration::from_secs(60));
    assert_eq!(c.gb28181.as_ref().unwrap().domain, "3402000000");
    assert_eq!(
        c.cameras[0].location,
        Some(Location {
            lat: 38.914,
            lon: 121.614,
            view: None,
        })
    );
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("gb28181"));
}

fn problems(text: &str) -> Vec<String> {
    parse(text)
        .err()
        .unwrap_or_default()
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn gb28181_mistakes_are_named() {
    let bad = r#"
[server]
data_dirs = ["/d"]

[gb28181]
id = "3402"
domain = "3402000000"
password = "12345678"
media_ip = "not-an-ip"
media_transport = "sctp"
keepalive_misses = 0
charset = "latin1"
org = "a//b"
colour = "red"

[[gb28181.devices]]
id = "bad id!"
call_id = "sometimes"

[[cameras]]
id = "c1"
url = "gb28181://"
"#;
    let p = problems(bad);
    for key in [
        "gb28181.id",
        "gb28181.media_ip",
        "gb28181.media_transport",
        "gb28181.keepalive_misses",
        "gb28181.charset",
        "gb28181.org",
        "gb28181.colour",
        "gb28181.devices[0].id",
        "gb28181.devices[0].call_id",
        "cameras[0].url",
    ] {
        assert!(p.iter().any(|m| m.starts_with(key)), "{key} not named in {p:#?}");
    }
    // A valid section with a declared channel parses, and a missing section is a warning.
    let good = "[server]\ndata_dirs = [\"/d\"]\n[gb28181]\nid = \"34020000002000000001\"\ndomain = \"3402000000\"\npassword = \"12345678\"\nlisten = \"127.0.0.1:5060\"\n[[cameras]]\nid = \"34020000001310000001\"\nurl = \"gb28181://34020000001180000001/34020000001310000001\"\n";
    let c = parse(good).unwrap();
    let g = c.gb28181.as_ref().unwrap();
    assert_eq!(g.media_transport, ::gb28181::sdp::MediaTransport::TcpPassive);
    assert!(g.adopt && g.record_discovered);
    assert_eq!(c.cameras[0].url.host_str(), Some("34020000001180000001"));
    let orphan =
        parse("[server]\ndata_dirs = [\"/d\"]\n[[cameras]]\nid = \"c\"\nurl = \"gb28181://34020000001180000001\"\n")
            .unwrap();
    assert!(orphan.warnings().iter().any(|w| w.contains("need a [gb28181] section")));
}

#[test]
fn permission_mistakes_are_named() {
    let bad = r#"
[server]
data_dirs = ["/d"]

[[users]]
name = "amy"
password = "long-enough"
role = "viewer"
department = "east"

[[departments]]
id = "east"
parent = "west"

[[departments]]
name = "no id"

[[groups]]
id = "gates"

[[grants]]
subject = "team:east"
actions = ["live", "fly"]
resource = "street:x"

[[grants]]
subject = "department:east"
actions = "live"
resource = "group:gates"
"#;
    let p = problems(bad);
    for want in [
        "departments[1].id: missing",
        "groups[0].cameras: missing",
        "grants[0].subject: \"team:east\" is not a subject",
        "grants[0].actions: \"fly\" is not an action",
        "grants[0].resource: \"street:x\" is not a resource",
        "grants[1].actions: expected a list of strings",
        "grants: department \"east\": parent \"west\" does not exist",
    ] {
        assert!(p.iter().any(|x| x.contains(want)), "missing {want:?} in {p:#?}");
    }
    // References are checked with the same rules as the admin API.
    let unknown_group = r#"
[server]
data_dirs = ["/d"]
[[grants]]
subject = "role:viewer"
actions = ["live"]
resource = "group:nowhere"
[[grants]]
subject = "role:viewer"
actions = ["admin"]
resource = "org:dalian"
"#;
    let p = problems(unknown_group);
    assert!(
        p.iter().any(|x| x.contains("group \"nowhere\" does not exist")),
        "{p:#?}"
    );
}

#[test]
fn every_mistake_is_named_at_once() {
    let bad = r#"
[server]
listen = "localhost"
data_dirs = []
colour = "blue"

[recording]
segment = "60"
flush = "5s"

[retention]
standard = "90d"
key = "30d"

[[users]]
name = "admin"
password = "short"
role = "root"

[[users]]
name = "admin"
password_hash = "md5:abc"
role = "viewer"

[[cameras]]
id = "cam/1"
url = "http://10.0.0.5/stream"
tier = "gold"
location = { lat = 123.0, lon = 10 }

[[cameras]]
id = "cam2"
url = "rtsp://10.0.0.6/s"
transport = "sctp"
record = "yes"

[[cameras]]
id = "cam2"
"#;
    let p = problems(bad);
    let expect = [
        "server.listen: \"localhost\" is not an address",
        "server.data_dirs: empty",
        "server.colour: unknown key",
        "recording.segment: \"60\" is not a duration",
        "recording.flush: \"5s\" is out of range",
        "retention.key: is shorter than retention.standard",
        "users[0].password: shorter than 8 characters",
        "users[0].role: \"root\" is not a role",
        "users[1].name: user \"admin\" is defined twice",
        "users[1].password_hash: expected an argon2id hash",
        "cameras[0].id: \"cam/1\" is not a valid id",
        "cameras[0].url: scheme \"http\"",
        "cameras[0].tier: \"gold\" is not a tier",
        "cameras[0].location.lat: 123 is outside -90..90",
        "cameras[1].transport: \"sctp\" is not a transport",
        "cameras[1].record: expected true or false",
        "cameras[2].id: \"cam2\" is already used by cameras[1]",
        "cameras[2].url: missing",
    ];
    for e in expect {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing {e:?} in:\n{}",
            p.join("\n")
        );
    }
    assert_eq!(p.len(), expect.len(), "unexpected extra problems:\n{}", p.join("\n"));
}

#[test]
fn syntax_errors_and_wrong_types_are_reported() {
    assert!(problems("[server\n")[0].starts_with("not valid TOML"));
    let p = problems("server = 3");
    assert!(p[0].starts_with("server: expected a table"), "{p:?}");
    let p = problems("[server]\ndata_dirs = \"/x\"\n[[cameras]]\nid = 5\nurl = \"rtsp://h/\"");
    assert!(
        p.iter().any(|x| x.starts_with("server.data_dirs: expected a list")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|x| x.starts_with("cameras[0].id: expected a string")),
        "{p:?}"
    );
    let p = problems("");
    assert!(p[0].starts_with("server: missing"));
}

#[test]
fn min_free_forms() {
    assert_eq!(parse_min_free("10%"), Some(FreeFloor::Percent(10.0)));
    assert_eq!(parse_min_free("50GB"), Some(FreeFloor::Bytes(50_000_000_000)));
    assert_eq!(parse_min_free("512MiB"), Some(FreeFloor::Bytes(512 << 20)));
    assert_eq!(parse_min_free("1000"), Some(FreeFloor::Bytes(1000)));
    for bad in ["", "95%", "-1", "lots", "5 parsecs"] {
        assert_eq!(parse_min_free(bad), None, "{bad}");
    }
    let p = problems("[server]\ndata_dirs=[\"/d\"]\n[retention]\nmin_free=\"lots\"");
    assert!(p[0].starts_with("retention.min_free: \"lots\" is not a size"), "{p:?}");
}

#[test]
fn url_problems_never_echo_the_value() {
    let p = problems("[server]\ndata_dirs=[\"/d\"]\n[[cameras]]\nid=\"c\"\nurl=\"rtsp://u:sEcReT@[bad\"");
    assert_eq!(p.len(), 1);
    assert!(!p[0].contains("sEcReT"), "{}", p[0]);
}

#[test]
fn short_retention_is_a_warning_not_an_error() {
    let c = parse("[server]\ndata_dirs=[\"/d\"]\n[retention]\nstandard=\"20s\"\nkey=\"40s\"").unwrap();
    let w = c.warnings();
    assert!(w.iter().any(|x| x.contains("below the 30 days")));
    assert!(w.iter().any(|x| x.contains("below the 90 days")));
}

#[test]
fn hierarchy_keys_parse_and_every_mistake_is_named() {
    let good = r#"
[server]
data_dirs = ["/d"]

[node]
id = "xigang-street"
name = "Xigang street centre"
level = "street"

[[lower]]
id = "renmin-community"
url = "http://10.0.0.9:8080"
token = "sk_0123456789abcdef"
link_mbps = 10
org = "dalian/xigang/renmin"
main_mbps = 2
sub_mbps = 0.25

[[lower]]
id = "behind-nat"
token = "sk_fedcba9876543210"
link_mbps = 2.5
org = "dalian/xigang/nat"
dial = "up"

[[upper]]
id = "xigang-district"
url = "http://10.0.0.1:8080"
token = "sk_aaaaaaaaaaaaaaaa"

[cache]
size = "20GB"
max_age = "24h"
"#;
    let c = parse(good).unwrap();
    assert_eq!(c.node.level, Level::Street);
    assert_eq!(c.node.name, "Xigang street centre");
    assert_eq!(c.lower.len(), 2);
    assert_eq!(c.lower[0].link_kbps, 10_000);
    assert_eq!(c.lower[1].link_kbps, 2_500);
    assert_eq!((c.lower[0].main_kbps, c.lower[0].sub_kbps), (2_000, 250));
    assert_eq!(
        (c.lower[1].main_kbps, c.lower[1].sub_kbps),
        (node::config::DEFAULT_MAIN_KBPS, node::config::DEFAULT_SUB_KBPS)
    );
    assert_eq!(c.lower[1].dial, Dial::Up);
    assert!(c.lower[1].url.is_none());
    assert_eq!(c.upper[0].url.as_str(), "http://10.0.0.1:8080/");
    assert_eq!(c.cache.size, 20_000_000_000);
    assert_eq!(c.cache.max_age, Duration::from_secs(86_400));

    let bad = r#"
[server]
data_dirs = ["/d"]

[node]
id = "me"
level = "province"

[[lower]]
id = "me"
url = "ftp://x"
token = "password123"
link_mbps = 0
org = "a//b"
dial = "sideways"

[[lower]]
id = "twice"
token = "sk_0123456789abcdef"
link_mbps = 10
org = "x"
main_mbps = "fast"
sub_mbps = 0

[[lower]]
id = "twice"
url = "http://u:p@10.0.0.2:8080"
token = "sk_0123456789abcdef"
org = "y"

[[upper]]
id = "up"
token = "sk_0123456789abcdef"

[cache]
size = "lots"
max_age = "5s"

[[cameras]]
id = "remote"
url = "sharpeye://renmin-community/cam1"
"#;
    let p = problems(bad);
    for want in [
        "node.level: \"province\" is not a level",
        "lower[0].id: is this node's own id",
        "lower[0].url: expected the node's API",
        "lower[0].token: not an API token",
        "lower[0].link_mbps: expected a number",
        "lower[0].org: \"a//b\" has an empty part",
        "lower[0].dial: \"sideways\"",
        "lower[1].url: missing",
        "lower[1].main_mbps: expected a number of Mbit/s from 0.01 to 100000, got a string",
        "lower[1].sub_mbps: expected a number of Mbit/s from 0.01 to 100000, got 0",
        "lower[2].id: lower node \"twice\" is listed twice",
        "lower[2].url: expected the node's API",
        "lower[2].link_mbps: missing",
        "upper[0].url: missing",
        "cache.size: \"lots\" is not a size",
        "cache.max_age: \"5s\" is out of range",
        "cameras[0].url: a lower node's camera cannot be configured here: the rules say an upper level does not aggregate or store lower-level video",
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(want)),
            "missing {want:?} in:\n{}",
            p.join("\n")
        );
    }
    // The token is never echoed.
    assert!(!p.iter().any(|x| x.contains("password123")), "{p:#?}");
    // Links need the node's identity.
    let p = problems(
        "[server]\ndata_dirs=[\"/d\"]\n[[upper]]\nid=\"u\"\nurl=\"http://10.0.0.1:8080\"\ntoken=\"sk_0123456789abcdef\"\n",
    );
    assert!(p.iter().any(|x| x.starts_with("node: missing")), "{p:#?}");
}

#[test]
fn gb28181_uppers_parse_and_every_mistake_is_named() {
    let base = "[server]\ndata_dirs = [\"/d\"]\n[gb28181]\nid = \"34020000002000000001\"\ndomain = \"3402000000\"\npassword = \"12345678\"\nlisten = \"127.0.0.1:5060\"\n";
    let good = format!(
        "{base}[[gb28181.upper]]\nid = \"34020000002000000099\"\ndomain = \"3402000000\"\naddress = \"10.1.0.2:5060\"\ntransport = \"tcp\"\npassword = \"pw\"\nshare = [\"org:dalian/xigang\", \"camera:c1\"]\nptz = [\"camera:c1\"]\nkeepalive = \"30s\"\nlink_mbps = 10\ncall_id = \"registration\"\nack_timeout = \"5s\"\n\n[[gb28181.upper]]\nid = \"34020000002000000098\"\ndomain = \"3402000000\"\naddress = \"10.1.0.3:5060\"\npassword = \"pw\"\n"
    );
    let c = parse(&good).unwrap();
    let u = &c.gb28181.as_ref().unwrap().uppers;
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].transport, ::gb28181::platform::Transport::Tcp);
    assert_eq!(
        u[0].share,
        vec![
            auth::Resource::Org("dalian/xigang".into()),
            auth::Resource::Camera("c1".into())
        ]
    );
    assert_eq!((u[0].keepalive, u[0].link_kbps), (Duration::from_secs(30), 10_000));
    assert!(u[0].reuse_call_id && !u[1].reuse_call_id);
    assert_eq!(
        (u[0].ack_timeout, u[1].ack_timeout),
        (Duration::from_secs(5), Duration::from_secs(60))
    );
    assert_eq!(u[1].transport, ::gb28181::platform::Transport::Udp);
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("34020000002000000098 has no `share`"))
    );
    let bad = format!(
        "{base}[[gb28181.upper]]\nid = \"34020000002000000001\"\ndomain = \"34\"\naddress = \"0.0.0.0:5060\"\ntransport = \"sctp\"\nshare = [\"everything\", 3]\nkeepalive = \"0s\"\nlink_mbps = -1\ncall_id = \"sticky\"\nack_timeout = \"1h\"\ncolour = \"red\"\n\n[[gb28181.upper]]\ndomain = \"3402000000\"\npassword = \"pw\"\n"
    );
    let p = problems(&bad);
    for want in [
        "gb28181.upper[0].id: is this platform's own id",
        "gb28181.upper[0].domain: \"34\" is not a 10-digit domain",
        "gb28181.upper[0].address: 0.0.0.0:5060 is not an address one can send to",
        "gb28181.upper[0].transport: \"sctp\"",
        "gb28181.upper[0].password: missing",
        "gb28181.upper[0].share[0]: \"everything\" is not a resource",
        "gb28181.upper[0].share[1]: expected a string",
        "gb28181.upper[0].keepalive",
        "gb28181.upper[0].link_mbps",
        "gb28181.upper[0].call_id: \"sticky\"",
        "gb28181.upper[0].ack_timeout",
        "gb28181.upper[0].colour: unknown key",
        "gb28181.upper[1].id: missing",
        "gb28181.upper[1].address: missing",
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(want)),
            "missing {want:?} in:\n{}",
            p.join("\n")
        );
    }
    // The password is never echoed.
    assert!(
        !problems(&good.replace("share", "shar"))
            .iter()
            .any(|x| x.contains("\"pw\""))
    );
}

#[test]
fn a_lower_platforms_registration_takes_a_link_budget() {
    let base = "[server]\ndata_dirs = [\"/d\"]\n[gb28181]\nid = \"34020000002000000001\"\ndomain = \"3402000000\"\npassword = \"12345678\"\nlisten = \"127.0.0.1:5060\"\n";
    let c = parse(&format!(
        "{base}[[gb28181.devices]]\nid = \"34020000002000000077\"\nlink_mbps = 10\nchannel_mbps = 1.5\n\n[[gb28181.devices]]\nid = \"34020000001320000001\"\n"
    ))
    .unwrap();
    let d = &c.gb28181.as_ref().unwrap().devices;
    assert_eq!((d[0].link_kbps, d[0].channel_kbps), (Some(10_000), Some(1_500)));
    assert_eq!((d[1].link_kbps, d[1].channel_kbps), (None, None));
    let p = problems(&format!(
        "{base}[[gb28181.devices]]\nid = \"34020000002000000077\"\nlink_mbps = \"fast\"\nchannel_mbps = 0\n"
    ));
    for want in ["gb28181.devices[0].link_mbps", "gb28181.devices[0].channel_mbps"] {
        assert!(
            p.iter().any(|x| x.starts_with(want)),
            "missing {want:?} in:\n{}",
            p.join("\n")
        );
    }
}

#[test]
fn a_cameras_view_and_the_grid_file_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let grids = dir.path().join("grids.geojson");
    std::fs::write(
        &grids,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"0203","properties":{"name":"Renmin Rd"},
            "geometry":{"type":"Polygon","coordinates":[[[121.61,38.91],[121.62,38.91],[121.62,38.92],[121.61,38.92],[121.61,38.91]]]}}]}"#,
    )
    .unwrap();
    let text = format!(
        "{}\n[places]\ngrids = {:?}\n",
        GOOD.replace(
            "location = { lat = 38.914, lon = 121.614 }",
            "location = { lat = 38.914, lon = 121.614, heading = 90, fov = 60.5, range_m = 80 }"
        ),
        grids.display().to_string()
    );
    let c = parse(&text).unwrap();
    let view = c.cameras[0].location.unwrap().view.unwrap();
    assert_eq!((view.heading, view.fov, view.range_m), (90.0, 60.5, 80.0));
    assert_eq!(c.grids.len(), 1);
    assert_eq!(
        (c.grids[0].id.as_str(), c.grids[0].name.as_str()),
        ("0203", "Renmin Rd")
    );

    // Each mistake is named by its key.
    let cases = [
        ("heading = 90 }", "cameras[0].location", "together"),
        ("heading = 400, fov = 60 }", "cameras[0].location.heading", "0..360"),
        ("heading = 90, fov = 0 }", "cameras[0].location.fov", "(0, 360]"),
        (
            "heading = 90, fov = 60, range_m = \"far\" }",
            "cameras[0].location.range_m",
            "number",
        ),
        (
            "heading = 90, fov = 60, tilt = 5 }",
            "cameras[0].location.tilt",
            "unknown key",
        ),
    ];
    for (tail, key, says) in cases {
        let text = GOOD.replace("lon = 121.614 }", &format!("lon = 121.614, {tail}"));
        let problems = parse(&text).unwrap_err();
        assert!(
            problems.iter().any(|p| p.key == key && p.message.contains(says)),
            "{tail}: {problems:?}"
        );
    }
    std::fs::write(
        &grids,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"x y","geometry":null}]}"#,
    )
    .unwrap();
    let problems = parse(&text).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.key == "places.grids" && p.message.contains("features[0].id")),
        "{problems:?}"
    );
    let missing = format!("{GOOD}\n[places]\ngrids = \"/nonexistent/grids.geojson\"\n");
    let problems = parse(&missing).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.key == "places.grids" && p.message.contains("cannot read")),
        "{problems:?}"
    );
}

#[test]
fn how_often_pictures_are_measured_is_read_and_checked() {
    let c = parse(&format!("{GOOD}\n[rates]\npicture_every = \"30s\"\n")).unwrap();
    assert_eq!(c.rates.picture_every, Duration::from_secs(30));
    assert_eq!(parse(GOOD).unwrap().rates.picture_every, Duration::from_secs(60));
    for (value, says) in [
        ("\"1s\"", "rates.picture_every"),
        ("\"2h\"", "rates.picture_every"),
        ("12", "rates.picture_every"),
    ] {
        let p = problems(&format!("{GOOD}\n[rates]\npicture_every = {value}\n"));
        assert!(p.iter().any(|p| p.contains(says)), "{value}: {p:?}");
    }
    let p = problems(&format!("{GOOD}\n[rates]\npicture = \"30s\"\n"));
    assert!(p.iter().any(|p| p.contains("rates.picture")), "{p:?}");
}

#[test]
fn a_cluster_section_is_read_and_its_mistakes_named() {
    let good = format!(
        "{GOOD}\n[cluster]\netcd = [\"http://127.0.0.1:2379\", \"http://10.0.0.9:2379\"]\nname = \"rec-1\"\nadvertise_url = \"http://10.0.0.21:8080\"\nweight = 2\nlease = \"5s\"\n"
    );
    let c = parse(&good).unwrap().cluster.unwrap();
    assert_eq!(c.etcd.len(), 2);
    assert_eq!(
        (c.name.as_str(), c.weight, c.lease),
        ("rec-1", 2.0, Duration::from_secs(5))
    );
    assert!(
        parse(GOOD).unwrap().cluster.is_none(),
        "without [cluster] a node runs alone"
    );
    let bad = format!(
        "{GOOD}\n[cluster]\netcd = [\"etcd:2379\"]\nname = \"rec 1/../x\"\nadvertise_url = \"ftp://x\"\nweight = -3\nlease = \"1h\"\nshards = 4\n"
    );
    let p = problems(&bad);
    for key in [
        "cluster.etcd[0]",
        "cluster.name",
        "cluster.advertise_url",
        "cluster.weight",
        "cluster.lease",
        "cluster.shards: unknown key",
    ] {
        assert!(p.iter().any(|x| x.starts_with(key)), "{key} not named in {p:?}");
    }
    let p = problems(&format!("{GOOD}\n[cluster]\netcd = []\n"));
    for key in ["cluster.etcd", "cluster.name", "cluster.advertise_url"] {
        assert!(p.iter().any(|x| x.starts_with(key)), "{key} not named in {p:?}");
    }
    assert!(
        problems(&format!("cluster = 3\n{GOOD}"))
            .iter()
            .any(|x| x.starts_with("cluster"))
    );
}
