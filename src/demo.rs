//! `sharpeye demo`: simulated cameras, recording, the API and web page, on localhost.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use camsim::{Cameras, Camsim};

use node::config::{
    CameraConfig, Config, Dial, Gb28181Config, Level, Location, LowerConfig, NodeIdentity, Secret, Tier, UserConfig,
};

/// Options of `sharpeye demo`.
pub struct DemoOptions {
    /// Number of simulated cameras.
    pub cameras: usize,
    /// Data directory.
    pub data: PathBuf,
    /// HTTP address.
    pub listen: SocketAddr,
    /// Admin password (random if absent).
    pub password: Option<String>,
    /// RTSP re-serve address.
    pub rtsp: SocketAddr,
    /// GB/T 28181 SIP address.
    pub sip: SocketAddr,
    /// Channels of the simulated GB/T 28181 NVR.
    pub gb_channels: usize,
    /// Also run a street node here, the community's upper level, pulling its cameras on demand.
    pub street: Option<SocketAddr>,
}

/// The demo platform's GB/T 28181 id and its simulated NVR's.
const GB_PLATFORM: &str = "34020000002000000001";
const GB_NVR: &str = "34020000001180000001";

fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..14)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Runs the demo until Ctrl-C.
pub async fn run(opts: DemoOptions) -> Result<()> {
    let sim_cams = Cameras::new(camsim::with_sub_streams(camsim::mixed_cameras(opts.cameras, true)));
    let sim = Camsim::start(SocketAddr::from(([127, 0, 0, 1], 0)), sim_cams)
        .await
        .context("starting the camera simulator")?;
    let password = opts.password.unwrap_or_else(random_password);
    let cameras: Vec<CameraConfig> = (0..opts.cameras)
        .map(|i| CameraConfig {
            id: format!("cam{i}"),
            name: format!("Demo camera {i} ({})", if i % 2 == 0 { "H.264" } else { "H.265" }),
            url: sim.url(&format!("cam{i}")).parse().expect("camsim URLs are valid"),
            sub_url: Some(sim.url(&format!("cam{i}-sub")).parse().expect("camsim URLs are valid")),
            tier: if i % 4 == 3 { Tier::Key } else { Tier::Standard },
            record: true,
            org: format!("demo/district-{}/street-{}", i / 8, i % 8),
            location: Some(Location {
                lat: 38.914 + i as f64 * 0.001,
                lon: 121.614 + i as f64 * 0.001,
                // Each camera looks a different way, so `?sees=` has something to tell apart.
                view: places::View::new(((i * 45) % 360) as f64, 70.0, Some(150.0)).ok(),
            }),
            transport: None,
        })
        .collect();
    let mut config = Config::new(vec![opts.data.clone()]);
    config.node = NodeIdentity {
        id: "demo-community".into(),
        name: "Demo community centre".into(),
        level: Level::Community,
    };
    config.server.listen = opts.listen;
    config.server.rtsp_listen = Some(opts.rtsp);
    // One grid cell (网格) around the first cameras, so that `?grid=` and incidents by grid
    // have something to find.
    let corner = |lat: f64, lon: f64| places::Point { lat, lon };
    config.grids = vec![places::Grid {
        id: "demo-0101".into(),
        name: "Demo grid cell 0101".into(),
        area: vec![places::Polygon {
            exterior: vec![
                corner(38.9135, 121.6135),
                corner(38.9135, 121.6175),
                corner(38.9175, 121.6175),
                corner(38.9175, 121.6135),
            ],
            holes: Vec::new(),
        }],
        source: places::GridSource::Config,
    }];
    config.gb28181 = (opts.gb_channels > 0).then(|| Gb28181Config {
        id: GB_PLATFORM.into(),
        domain: "3402000000".into(),
        listen: opts.sip,
        password: password.clone(),
        media_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        media_transport: gb28181::sdp::MediaTransport::TcpPassive,
        keepalive_interval: Duration::from_secs(10),
        keepalive_misses: 3,
        request_timeout: Duration::from_secs(10),
        charset: gb28181::manscdp::Charset::Auto,
        devices: Vec::new(),
        adopt: true,
        record_discovered: true,
        org: "demo/gb28181".into(),
        uppers: Vec::new(),
    });
    // An administrator, and a viewer of one department who sees half the cameras: the
    // permission model in miniature.
    config.users = vec![
        UserConfig {
            name: "admin".into(),
            secret: Secret::Plain(password.clone()),
            role: auth::Role::Admin,
            department: None,
        },
        UserConfig {
            name: "viewer".into(),
            secret: Secret::Plain(password.clone()),
            role: auth::Role::Viewer,
            department: Some("east-station".into()),
        },
    ];
    config.departments = vec![auth::DepartmentRecord {
        id: "east-station".into(),
        name: "East district police station".into(),
        parent: None,
        source: auth::Source::Config,
    }];
    config.groups = vec![auth::GroupRecord {
        id: "east".into(),
        name: "East district cameras".into(),
        cameras: cameras
            .iter()
            .take(cameras.len().div_ceil(2))
            .map(|c| c.id.clone())
            .collect(),
        source: auth::Source::Config,
    }];
    config.grants = vec![auth::GrantRecord {
        id: "config-0".into(),
        subject: auth::Subject::Department("east-station".into()),
        actions: auth::Actions::of(&[auth::Action::Live, auth::Action::Playback]),
        resource: auth::Resource::Group("east".into()),
        source: auth::Source::Config,
    }];
    config.cameras = cameras;
    let nvr = if opts.gb_channels > 0 {
        let spec = camsim::gbdevice::GbDeviceSpec {
            id: GB_NVR.into(),
            password: password.clone(),
            platform: opts.sip,
            platform_id: GB_PLATFORM.into(),
            domain: "3402000000".into(),
            channels: (0..opts.gb_channels)
                .map(|i| {
                    (
                        format!("340200000013100000{:02}", i + 1),
                        format!("Demo NVR channel {}", i + 1),
                    )
                })
                .collect(),
            groups: Vec::new(),
            parents: Default::default(),
            catalog_page: 0,
            keepalive: Duration::from_secs(10),
            fixture: camsim::BuiltinFixture::H264_240p.load(),
            recordings: Vec::new(),
        };
        Some(
            camsim::gbdevice::GbDevice::start(spec)
                .await
                .context("starting the simulated GB/T 28181 NVR")?,
        )
    } else {
        None
    };
    let gb_line = if opts.gb_channels > 0 {
        format!(
            "\x20 GB/T 28181     : platform {GB_PLATFORM} at sip:{} (domain 3402000000); a simulated NVR ({GB_NVR}) registers\n\x20                  with the admin password and its {} channels become cameras (recorded)\n",
            opts.sip, opts.gb_channels
        )
    } else {
        String::new()
    };
    let url = format!("http://{}", opts.listen);
    let street_line = match opts.street {
        Some(a) => format!(
            "\x20 street level   : http://{a}/  (an upper node: the community's cameras, pulled only while watched, same login)\n"
        ),
        None => String::new(),
    };
    println!(
        "\nSharpeye demo\n\
         \x20 web UI and API : {url}/  (video wall: drag cameras from the tree; playback, export, health, admin)\n\
         \x20 wall screen    : {url}/wall/room1  (a kiosk screen: PUT /api/v1/walls/room1 puts a layout on it)\n\
         \x20 handheld       : {url}/m\n\
         \x20 login          : user admin, password {password} (or user viewer, same password: one department, half the cameras)\n\
         \x20 cameras        : {} simulated (H.264 and H.265, 1080p) at {}/cam0 ...\n\
         \x20 live over RTSP : ffplay rtsp://admin:{password}@{rtsp}/cameras/cam0\n\
         {gb_line}\
         {street_line}\
         \x20 recording into : {}\n\
         \x20 try            : curl -s {url}/api/v1/login -d '{{\"username\":\"admin\",\"password\":\"{password}\"}}' -H 'Content-Type: application/json'\n\
         \x20 then, with the token: {url}/api/v1/cameras?near=38.915,121.615&radius=300 (by place; grid=demo-0101, sees=LAT,LON),\n\
         \x20                  POST {url}/api/v1/incidents {{\"point\":{{\"lat\":38.915,\"lon\":121.615}},\"hold\":true,\"reason\":\"...\"}},\n\
         \x20                  {url}/api/v1/rates?format=csv (online / intact / networked), {url}/api/v1/events (SSE, resumable)\n\
         \x20 stop           : Ctrl-C\n",
        opts.cameras,
        format_args!("rtsp://{}", sim.local_addr()),
        opts.data.display(),
        rtsp = opts.rtsp,
    );
    let result = match opts.street {
        None => node::run(config, node::shutdown_signal())
            .await
            .map_err(anyhow::Error::from),
        Some(street) => run_pair(config, street, &opts.data, &password).await,
    };
    drop(nvr);
    sim.stop().await;
    result
}

/// Runs the community node of `config` and a street node at `street` above it until Ctrl-C.
/// The street's link token is issued by the community through its API, as an operator would.
async fn run_pair(config: Config, street: SocketAddr, data: &std::path::Path, password: &str) -> Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let community_url = format!("http://{}", config.server.listen);
    let mut community = {
        let stop = stop.clone();
        tokio::spawn(async move { node::run(config, async move { stop.cancelled().await }).await })
    };
    let token = {
        let (url, password) = (community_url.clone(), password.to_owned());
        tokio::task::spawn_blocking(move || issue_link_token(&url, &password)).await??
    };
    let mut upper = Config::new(vec![data.with_file_name(format!(
        "{}-street",
        data.file_name().and_then(|n| n.to_str()).unwrap_or("sharpeye-demo-data")
    ))]);
    upper.node = NodeIdentity {
        id: "demo-street".into(),
        name: "Demo street centre".into(),
        level: Level::Street,
    };
    upper.server.listen = street;
    upper.users = vec![UserConfig {
        name: "admin".into(),
        secret: Secret::Plain(password.to_owned()),
        role: auth::Role::Admin,
        department: None,
    }];
    upper.lower = vec![LowerConfig {
        id: "demo-community".into(),
        url: Some(community_url.parse().context("the community's URL")?),
        token,
        link_kbps: 10_000,
        org: "demo".into(),
        dial: Dial::Down,
        main_kbps: node::config::DEFAULT_MAIN_KBPS,
        sub_kbps: node::config::DEFAULT_SUB_KBPS,
    }];
    let street_node = {
        let stop = stop.clone();
        tokio::spawn(async move { node::run(upper, async move { stop.cancelled().await }).await })
    };
    tokio::select! {
        _ = node::shutdown_signal() => {}
        r = &mut community => {
            stop.cancel();
            return r.context("the community node")?.map_err(anyhow::Error::from);
        }
    }
    stop.cancel();
    let (c, s) = tokio::join!(community, street_node);
    s.context("the street node")??;
    c.context("the community node")?.map_err(anyhow::Error::from)
}

/// Logs in to the community's API as admin (waiting up to 20 s for it to come up) and issues
/// the token its upper level uses.
fn issue_link_token(base: &str, password: &str) -> Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let start = std::time::Instant::now();
    let login = loop {
        let r = agent
            .post(format!("{base}/api/v1/login"))
            .send_json(serde_json::json!({ "username": "admin", "password": password }));
        if let Ok(mut r) = r
            && r.status() == 200
        {
            break r.body_mut().read_json::<serde_json::Value>()?;
        }
        if start.elapsed() > Duration::from_secs(20) {
            anyhow::bail!("the community node's API at {base} did not come up within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let bearer = format!("Bearer {}", login["token"].as_str().unwrap_or_default());
    let mut r = agent
        .post(format!("{base}/api/v1/tokens"))
        .header("Authorization", &bearer)
        .send_json(serde_json::json!({
            "name": "demo-street",
            "actions": ["live", "playback", "export", "hold"],
            "resources": ["*"],
        }))?;
    let v: serde_json::Value = r.body_mut().read_json()?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the community did not issue a token: {v}"))
}
