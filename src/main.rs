//! `sharpeye`: the NVR/VMS core of a public-security video sharing platform.

mod config;
mod demo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "sharpeye",
    version,
    about = "Record, relay and serve camera video for governance-centre video sharing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulated cameras, recording, the API and web UI on localhost: everything in one command.
    Demo {
        /// Number of simulated cameras (H.264 and H.265 alternating).
        #[arg(long, default_value_t = 4)]
        cameras: usize,
        /// Data directory.
        #[arg(long, default_value = "sharpeye-demo-data")]
        data: PathBuf,
        /// HTTP address of the API and web UI.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Password of the demo user `admin` (a random one is printed if not given).
        #[arg(long)]
        password: Option<String>,
        /// RTSP re-serve address: rtsp://ADDR/cameras/{id}.
        #[arg(long, default_value = "127.0.0.1:8554")]
        rtsp: SocketAddr,
        /// GB/T 28181 SIP address of the platform (UDP and TCP); a simulated NVR registers here.
        #[arg(long, default_value = "127.0.0.1:5060")]
        sip: SocketAddr,
        /// Channels of the simulated GB/T 28181 NVR (0: none).
        #[arg(long, default_value_t = 2)]
        gb_channels: usize,
        /// Also run a street node at this address, the community's upper level: it pulls the
        /// community's cameras only while someone watches (e.g. 127.0.0.1:8081).
        #[arg(long)]
        street: Option<SocketAddr>,
    },
    /// Runs the server with a configuration file.
    Run {
        /// The TOML configuration (see config/example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs the camera simulator alone: rtsp://ADDR/cam0, /cam1, ...
    Camsim {
        /// Number of cameras.
        #[arg(long, default_value_t = 4)]
        cameras: usize,
        /// RTSP address.
        #[arg(long, default_value = "127.0.0.1:8554")]
        listen: SocketAddr,
        /// Use the 320x240 clips instead of 1080p.
        #[arg(long)]
        small: bool,
        /// Give every camera this clip instead (h264_1080p, h264_240p, h265_1080p, h265_240p).
        #[arg(long)]
        fixture: Option<String>,
        /// Give every camera a 320x240 sub-stream too, at rtsp://ADDR/camN-sub.
        #[arg(long)]
        sub: bool,
    },

    /// Checks a configuration file and explains every problem.
    CheckConfig {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Verifies an export package (zip or extracted folder) offline; exit 0 only if intact.
    VerifyExport {
        /// The package.
        path: PathBuf,
        /// The node's public key (base64, or a file holding it): also require that signer.
        #[arg(long)]
        key: Option<String>,
    },
    /// Evidence holds on a running server (password read from stdin).
    Hold {
        /// The server's URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// User to log in as.
        #[arg(long, default_value = "admin")]
        user: String,
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Storage maintenance.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Users (kept in the data directory; a running server picks changes up within a second).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The cluster of this node's level (`[cluster]`, docs/cluster.md), read from etcd.
    Cluster {
        /// A member's config (its `[cluster] etcd` and `[node] id` are used).
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Members (URL, weight, drained) and the cameras each has claimed.
    Status,
    /// Moves every camera away from member NAME, each at a key frame, for maintenance; it stays
    /// drained (across its restarts) until `undrain`.
    Drain {
        /// The member's `[cluster] name`.
        name: String,
        /// Why (kept in etcd beside the drain).
        #[arg(long, default_value = "maintenance")]
        reason: String,
    },
    /// Gives member NAME cameras again.
    Undrain {
        /// The member's `[cluster] name`.
        name: String,
    },
    /// Forgets member NAME, decommissioned: it is no longer reported down (its recordings no
    /// longer said missing). Refused while it is live.
    Forget {
        /// The member's `[cluster] name`.
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verifies the audit log's hash chain; exit 0 only if intact, else names the first bad
    /// entry.
    Verify {
        /// The data directory (the first of server.data_dirs).
        #[arg(long)]
        data: PathBuf,
        /// A file of this node's signed heads another node kept (the upper level's copy,
        /// `<its data>/links/heads/<this node>.jsonl`): the log must still hold every entry
        /// they name. Repeatable; the node's own `audit/heads.jsonl` is always checked.
        #[arg(long)]
        heads: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user; the password is read from stdin.
    Add {
        /// Login name.
        name: String,
        /// viewer, operator, dispatcher, auditor or admin.
        #[arg(long)]
        role: String,
        /// Department id.
        #[arg(long)]
        department: Option<String>,
        /// The server's config: its first data directory holds the users made outside the
        /// config, and the new user is checked against everything the config defines.
        #[arg(long, default_value = "/etc/sharpeye/config.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum HoldCommand {
    /// Places a hold: the range is never deleted until released.
    Add {
        /// Camera id.
        #[arg(long)]
        camera: String,
        /// Start (RFC 3339 with offset).
        #[arg(long)]
        start: String,
        /// End (RFC 3339 with offset).
        #[arg(long)]
        end: String,
        /// Why (goes into the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Lists holds.
    List,
    /// Releases a hold.
    Release {
        /// The hold's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Initializes a new, empty directory as a data disk (an existing empty directory is
    /// otherwise refused, as an unmounted disk would look the same).
    Init {
        /// The directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Rebuilds a data directory's index from its segment files alone.
    Rebuild {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo {
            cameras,
            data,
            listen,
            password,
            rtsp,
            sip,
            gb_channels,
            street,
        } => {
            init_logging();
            runtime()?.block_on(demo::run(demo::DemoOptions {
                cameras,
                data,
                listen,
                password,
                rtsp,
                sip,
                gb_channels,
                street,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            init_logging();
            let cfg = config::load(&config)?;
            for w in cfg.warnings() {
                tracing::warn!("{}: {w}", config.display());
            }
            runtime()?.block_on(node::run(cfg, node::shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Camsim {
            cameras,
            listen,
            small,
            fixture,
            sub,
        } => {
            init_logging();
            let specs = match fixture {
                None => camsim::mixed_cameras(cameras, !small),
                Some(name) => {
                    let f = camsim::BuiltinFixture::parse(&name).with_context(|| {
                        format!("unknown fixture {name:?}; expected h264_1080p, h264_240p, h265_1080p or h265_240p")
                    })?;
                    (0..cameras)
                        .map(|i| camsim::CameraSpec::new(format!("cam{i}"), f.load()))
                        .collect()
                }
            };
            let specs = if sub { camsim::with_sub_streams(specs) } else { specs };
            runtime()?.block_on(async move {
                let cams = camsim::Cameras::new(specs);

                let sim = camsim::Camsim::start(listen, cams)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                println!(
                    "camsim: {cameras} cameras at rtsp://{}/cam0 ... /cam{}; Ctrl-C stops",
                    sim.local_addr(),
                    cameras.saturating_sub(1)
                );
                node::shutdown_signal().await;
                sim.stop().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => match config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} cameras, {} users, {} departments, {} groups, {} grants, {} data directories){}",
                    config.display(),
                    cfg.cameras.len(),
                    cfg.users.len(),
                    cfg.departments.len(),
                    cfg.groups.len(),
                    cfg.grants.len(),
                    cfg.server.data_dirs.len(),
                    if cfg.lower.is_empty() && cfg.upper.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; {} {} node, {} lower links, {} upper links",
                            cfg.node.level,
                            cfg.node.id,
                            cfg.lower.len(),
                            cfg.upper.len()
                        )
                    }
                );
                for w in cfg.warnings() {
                    println!("  warning: {w}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::VerifyExport { path, key } => {
            let key = match key {
                Some(k) if std::path::Path::new(&k).is_file() => Some(
                    std::fs::read_to_string(&k)
                        .with_context(|| format!("reading the key file {k}"))?
                        .trim()
                        .to_owned(),
                ),
                other => other,
            };
            let v = store::export::verify(&path, key.as_deref());
            if v.problems.is_empty() {
                let m = v.manifest.as_ref();
                println!(
                    "{}: intact: {} file(s), manifest signed by node key {}",
                    path.display(),
                    m.map_or(0, |m| m.files.len()),
                    m.map_or("?", |m| m.node.key_id.as_str())
                );
                if let Some(m) = m {
                    println!(
                        "  camera {} ({}), {} to {}, exported by {}: {}",
                        m.camera.id, m.camera.name, m.actual.start, m.actual.end, m.exported_by, m.reason
                    );
                }
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{}: NOT INTACT", path.display());
                for p in &v.problems {
                    println!("  - {p}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Hold { url, user, command } => hold_command(&url, &user, command),
        Command::Audit {
            command: AuditCommand::Verify { data, heads },
        } => audit_verify(&data, &heads),
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    role,
                    department,
                    config,
                },
        } => user_add(&name, &role, department, &config),
        Command::Cluster { config, command } => cluster_command(&config, command),
        Command::Store {
            command: StoreCommand::Init { data },
        } => {
            store::identity::init(&data)?;
            println!("{}: initialized as a new data disk", data.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Store {
            command: StoreCommand::Rebuild { data },
        } => {
            let report =
                store::rebuild(&data).with_context(|| format!("rebuilding the index of {}", data.display()))?;
            println!(
                "{}: index rebuilt from {} segment files",
                data.display(),
                report.segments
            );
            for (path, why) in &report.skipped {
                println!("  skipped {}: {why}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `sharpeye audit verify`: the hash chain, then the entries every signed head names (the
/// node's own heads and any copies given), so a tail cut off or rewritten is found and named.
fn audit_verify(data: &std::path::Path, copies: &[PathBuf]) -> Result<ExitCode> {
    use auth::audit::heads;
    let dir = data.join("audit");
    let report = match auth::audit::verify(&dir) {
        Ok(r) => r,
        Err(e) => {
            println!("{}: NOT intact: {e}", dir.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let own = heads::read(&dir.join("heads.jsonl"));
    let mut checked = Vec::new();
    for (name, list) in std::iter::once(("own heads".to_owned(), own.clone()))
        .chain(copies.iter().map(|p| (p.display().to_string(), heads::read(p))))
    {
        let node = own.first().or_else(|| list.first()).map(|h| h.node.clone());
        let Some(node) = node else { continue };
        match heads::check_log(&dir, &node, &list) {
            Ok(n) => checked.push(format!("{n} signed heads of {node} hold ({name})")),
            Err(e) => {
                println!("{}: NOT intact: {e} (heads: {name})", dir.display());
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    println!("{}: intact: {report}", dir.display());
    for c in checked {
        println!("  {c}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `sharpeye user add`: writes the user into the data directory's directory file, under its
/// lock, checked by the same rules as the admin API.
fn user_add(name: &str, role: &str, department: Option<String>, config: &std::path::Path) -> Result<ExitCode> {
    let role = auth::Role::parse(role)
        .with_context(|| format!("--role {role:?}: expected viewer, operator, dispatcher, auditor or admin"))?;
    let cfg = config::load(config)?;
    let known = cfg.directory(|_| String::new());
    let data = cfg.server.data_dirs[0].clone();
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 8 {
        anyhow::bail!("the password must have at least 8 characters");
    }
    let file = auth::DirectoryFile::new(&data.join("auth"))?;
    let record = auth::UserRecord {
        name: name.to_owned(),
        role,
        department,
        password_hash: auth::hash_password(password),
        disabled: false,
        source: auth::Source::Api,
    };
    file.update(&known, move |d| {
        if d.users.iter().any(|u| u.name == record.name) {
            return Err(auth::DirectoryError::Exists(format!("user {:?}", record.name)));
        }
        d.users.push(record);
        Ok(())
    })
    .with_context(|| format!("adding user {name:?} to {}", file.path().display()))?;
    // Only the server writes the audit log (one writer keeps one chain): it audits this change
    // as `directory.reload` when it picks the file up, or at its next start.
    println!("user {name:?} ({}) added to {}", role.as_str(), file.path().display());
    Ok(ExitCode::SUCCESS)
}

/// Runs a `hold` subcommand against the server's API.
fn hold_command(url: &str, user: &str, command: HoldCommand) -> Result<ExitCode> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from stdin")?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let call = |req: ureq::RequestBuilder<ureq::typestate::WithBody>,
                body: serde_json::Value|
     -> Result<(u16, serde_json::Value)> {
        let mut r = req.send_json(body).with_context(|| format!("cannot reach {url}"))?;
        Ok((
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
        ))
    };
    let (status, login) = call(
        agent.post(format!("{url}/api/v1/login")),
        serde_json::json!({ "username": user, "password": password.trim_end_matches(['\r', '\n']) }),
    )?;
    let Some(token) = login["token"].as_str() else {
        anyhow::bail!("login as {user} failed ({status}): {}", login["error"]["message"]);
    };
    let bearer = format!("Bearer {token}");
    let (status, body) = match command {
        HoldCommand::Add {
            camera,
            start,
            end,
            reason,
        } => call(
            agent
                .post(format!("{url}/api/v1/holds"))
                .header("Authorization", &bearer),
            serde_json::json!({ "camera": camera, "start": start, "end": end, "reason": reason }),
        )?,
        HoldCommand::List => {
            let mut r = agent
                .get(format!("{url}/api/v1/holds"))
                .header("Authorization", &bearer)
                .call()?;
            (
                r.status().as_u16(),
                r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
            )
        }
        HoldCommand::Release { id } => {
            let mut r = agent
                .delete(format!("{url}/api/v1/holds/{id}"))
                .header("Authorization", &bearer)
                .call()?;
            (
                r.status().as_u16(),
                r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
            )
        }
    };
    println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
    Ok(if (200..300).contains(&status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `sharpeye cluster status|drain|undrain|forget`: read and written in etcd, so it works whichever
/// members are up.
fn cluster_command(config: &Path, command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let cfg = config::load(config)?;
    let c = cfg
        .cluster
        .as_ref()
        .with_context(|| format!("{} has no [cluster] section", config.display()))?;
    let etcd = cluster::Etcd::new(&c.etcd, std::time::Duration::from_secs(3));
    let id = &cfg.node.id;
    match command {
        ClusterCommand::Status => {
            let view = cluster::membership::read_cluster(&etcd, id)?;
            let prefix = cluster::keys::owner(id, "");
            let mut claimed: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for kv in etcd.prefix(&prefix)? {
                let camera = kv.key.strip_prefix(&prefix).unwrap_or(&kv.key).to_owned();
                claimed
                    .entry(String::from_utf8_lossy(&kv.value).into_owned())
                    .or_default()
                    .push(camera);
            }
            println!("cluster {id}: {} live member(s)", view.members.len());
            for m in &view.members {
                let cams = claimed.remove(&m.name).unwrap_or_default();
                let drained = if view.drained.contains(&m.name) {
                    ", drained"
                } else {
                    ""
                };
                println!(
                    "  {} {} (weight {}{drained}): {} camera(s)",
                    m.name,
                    m.url,
                    m.weight,
                    cams.len()
                );
            }
            for d in view
                .drained
                .iter()
                .filter(|d| !view.members.iter().any(|m| &m.name == *d))
            {
                println!("  {d}: drained, not running");
            }
            for (holder, cams) in claimed {
                println!("  {holder} (not live): {} claim(s) until its lease expires", cams.len());
            }
            for d in view.down() {
                println!(
                    "  {d}: down (its recordings are missing from merged answers until it returns; `cluster forget {d}` if it never will)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Drain { name, reason } => {
            cluster::membership::set_drained(&etcd, id, &name, true, &reason)?;
            println!("{name} drained: its cameras move to the other members, each at a key frame");
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Undrain { name } => {
            cluster::membership::set_drained(&etcd, id, &name, false, "")?;
            println!("{name} undrained: it takes its share of the cameras again");
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Forget { name } => {
            if cluster::membership::forget(&etcd, id, &name)? {
                println!("{name} forgotten: no longer reported down");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{name} is live: stop it first (a live member is known again at once)");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
