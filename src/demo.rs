//! `sharpeye demo`: simulated cameras, recording, the API and web page, on localhost.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use camsim::{Cameras, Camsim};

use node::config::{CameraConfig, Config, Gb28181Config, Location, Secret, Tier, UserConfig};

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
    let sim_cams = Cameras::new(camsim::mixed_cameras(opts.cameras, true));
    let sim = Camsim::start(SocketAddr::from(([127, 0, 0, 1], 0)), sim_cams)
        .await
        .context("starting the camera simulator")?;
    let password = opts.password.unwrap_or_else(random_password);
    let cameras: Vec<CameraConfig> = (0..opts.cameras)
        .map(|i| CameraConfig {
            id: format!("cam{i}"),
            name: format!("Demo camera {i} ({})", if i % 2 == 0 { "H.264" } else { "H.265" }),
            url: sim.url(&format!("cam{i}")).parse().expect("camsim URLs are valid"),
            sub_url: None,
            tier: if i % 4 == 3 { Tier::Key } else { Tier::Standard },
            record: true,
            org: format!("demo/district-{}/street-{}", i / 8, i % 8),
            location: Some(Location {
                lat: 38.914 + i as f64 * 0.001,
                lon: 121.614 + i as f64 * 0.001,
            }),
            transport: None,
        })
        .collect();
    let mut config = Config::new(vec![opts.data.clone()]);
    config.server.listen = opts.listen;
    config.server.rtsp_listen = Some(opts.rtsp);
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
    println!(
        "\nSharpeye demo\n\
         \x20 web UI and API : {url}/  (status, and a live wall of the first four cameras)\n\
         \x20 login          : user admin, password {password} (or user viewer, same password: one department, half the cameras)\n\
         \x20 cameras        : {} simulated (H.264 and H.265, 1080p) at {}/cam0 ...\n\
         \x20 live over RTSP : ffplay rtsp://admin:{password}@{rtsp}/cameras/cam0\n\
         {gb_line}\
         \x20 recording into : {}\n\
         \x20 try            : curl -s {url}/api/v1/login -d '{{\"username\":\"admin\",\"password\":\"{password}\"}}' -H 'Content-Type: application/json'\n\
         \x20 stop           : Ctrl-C\n",
        opts.cameras,
        format_args!("rtsp://{}", sim.local_addr()),
        opts.data.display(),
        rtsp = opts.rtsp,
    );
    let result = node::run(config, node::shutdown_signal())
        .await
        .map_err(anyhow::Error::from);
    drop(nvr);
    sim.stop().await;
    result
}
