//! `[gb28181]` and `[[gb28181.devices]]`: the GB/T 28181 platform devices register with.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use node::config::{Gb28181Config, GbDeviceConfig};
use toml::{Table, Value};

use super::check::{Checker, join, type_name};

impl Checker {
    pub(super) fn charset(&mut self, path: &str, t: &Table) -> Option<gb28181::manscdp::Charset> {
        let c = self.string(path, t, "charset")?;
        let parsed = gb28181::manscdp::Charset::parse(&c);
        if parsed.is_none() {
            self.problem(
                join(path, "charset"),
                format!("{c:?} is not a charset; expected \"auto\", \"gb18030\" (also for GB2312/GBK) or \"utf-8\""),
            );
        }
        parsed
    }

    pub(super) fn gb28181(&mut self, root: &Table) -> Option<Gb28181Config> {
        let t = self.section(root, "gb28181")?;
        self.known(
            "gb28181",
            t,
            &[
                "id",
                "domain",
                "listen",
                "password",
                "media_ip",
                "media_transport",
                "keepalive_interval",
                "keepalive_misses",
                "request_timeout",
                "charset",
                "devices",
                "adopt",
                "record_discovered",
                "org",
                "upper",
            ],
        );
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let id = self.required_string("gb28181", t, "id", "this platform's 20-digit GB/T 28181 id");
        if let Some(id) = &id
            && !digits(id, 20)
        {
            self.problem("gb28181.id", format!("{id:?} is not a 20-digit GB/T 28181 id"));
        }
        let domain = self.required_string("gb28181", t, "domain", "the 10-digit SIP domain");
        if let Some(d) = &domain
            && !digits(d, 10)
        {
            self.problem("gb28181.domain", format!("{d:?} is not a 10-digit domain"));
        }
        let listen = if t.contains_key("listen") {
            self.addr("gb28181", t, "listen")
        } else {
            Some(SocketAddr::from(([0, 0, 0, 0], 5060)))
        };
        let password = self.required_string("gb28181", t, "password", "the default device password");
        let media_ip = match self.string("gb28181", t, "media_ip") {
            None => listen.map(|l| l.ip()),
            Some(ip) => match ip.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.problem("gb28181.media_ip", format!("{ip:?} is not an IP address"));
                    None
                }
            },
        };
        let media_transport = match self.string("gb28181", t, "media_transport") {
            None => gb28181::sdp::MediaTransport::TcpPassive,
            Some(m) => gb28181::sdp::MediaTransport::parse(&m).unwrap_or_else(|| {
                self.problem(
                    "gb28181.media_transport",
                    format!("{m:?} is not a media transport; expected \"tcp-passive\" (the device connects to us), \"tcp-active\" (we connect to it) or \"udp\""),
                );
                gb28181::sdp::MediaTransport::TcpPassive
            }),
        };
        let s = Duration::from_secs;
        let keepalive_interval = self.duration("gb28181", t, "keepalive_interval", s(60), s(1), s(3600));
        let keepalive_misses = match t.get("keepalive_misses") {
            None => 3,
            Some(Value::Integer(n)) if (1..=100).contains(n) => *n as u32,
            Some(v) => {
                self.problem(
                    "gb28181.keepalive_misses",
                    format!("expected a whole number from 1 to 100, got {v}"),
                );
                3
            }
        };
        let request_timeout = self.duration(
            "gb28181",
            t,
            "request_timeout",
            s(10),
            Duration::from_millis(500),
            s(120),
        );
        let charset = self.charset("gb28181", t).unwrap_or_default();
        let mut devices = Vec::new();
        match t.get("devices") {
            None => {}
            Some(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    let path = format!("gb28181.devices[{i}]");
                    let Value::Table(d) = v else {
                        self.problem(path, format!("expected a table, got {}", type_name(v)));
                        continue;
                    };
                    self.known(
                        &path,
                        d,
                        &[
                            "id",
                            "password",
                            "charset",
                            "call_id",
                            "device_info",
                            "link_mbps",
                            "channel_mbps",
                        ],
                    );
                    let link_kbps = self.mbps(&path, d, "link_mbps", 0.1);
                    let channel_kbps = self.mbps(&path, d, "channel_mbps", 0.01);
                    let device_info = self.bool(&path, d, "device_info", true);
                    let id = self.required_string(&path, d, "id", "the device's id");
                    if let Some(id) = &id
                        && !(id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
                    {
                        self.problem(
                            join(&path, "id"),
                            format!("{id:?} is not a device id (up to 32 letters and digits)"),
                        );
                    }
                    let password = self.string(&path, d, "password");
                    let charset = self.charset(&path, d);
                    let call_id = match self.string(&path, d, "call_id").as_deref() {
                        None | Some("fresh") => gb28181::platform::CallIdPolicy::Fresh,
                        Some("registration") => gb28181::platform::CallIdPolicy::Registration,
                        Some(other) => {
                            self.problem(
                                join(&path, "call_id"),
                                format!("{other:?}: expected \"fresh\" or \"registration\""),
                            );
                            gb28181::platform::CallIdPolicy::Fresh
                        }
                    };
                    if let Some(id) = id {
                        devices.push(GbDeviceConfig {
                            id,
                            password,
                            charset,
                            call_id,
                            device_info,
                            link_kbps,
                            channel_kbps,
                        });
                    }
                }
            }
            Some(v) => self.problem(
                "gb28181.devices",
                format!("expected [[gb28181.devices]] tables, got {}", type_name(v)),
            ),
        }
        let adopt = self.bool("gb28181", t, "adopt", true);
        let record_discovered = self.bool("gb28181", t, "record_discovered", true);
        let org = match self.string("gb28181", t, "org") {
            Some(o) if !o.trim().is_empty() && !o.split('/').any(|p| p.trim().is_empty()) => o,
            Some(o) => {
                self.problem(
                    "gb28181.org",
                    format!("{o:?} is not an org path like \"dalian/xigang\""),
                );
                "gb28181".into()
            }
            None => "gb28181".into(),
        };
        let uppers = self.gb_uppers(t, id.as_deref());
        Some(Gb28181Config {
            id: id?,
            domain: domain?,
            listen: listen?,
            password: password?,
            media_ip: media_ip?,
            media_transport,
            keepalive_interval,
            keepalive_misses,
            request_timeout,
            charset,
            devices,
            adopt,
            record_discovered,
            org,
            uppers,
        })
    }
}
