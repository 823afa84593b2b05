//! `[server]`, `[recording]`, `[retention]`, `[playback]` and `[live]`: where the node listens and
//! stores, and how it records, keeps and serves video.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use node::config::{
    FreeFloor, LiveConfig, PlaybackConfig, RULE_KEY, RULE_STANDARD, RecordingConfig, RetentionConfig, ServerConfig,
};
use toml::{Table, Value};

use super::check::{Checker, type_name};
use super::parse_min_free;

impl Checker {
    pub(super) fn server(&mut self, root: &Table) -> Option<ServerConfig> {
        let Some(t) = self.section(root, "server") else {
            self.problem("server", "missing; expected a [server] table with at least data_dirs");
            return None;
        };
        self.known("server", t, &["listen", "rtsp_listen", "data_dirs"]);
        let listen = if t.contains_key("listen") {
            self.addr("server", t, "listen")
        } else {
            Some(SocketAddr::from(([127, 0, 0, 1], 8080)))
        };
        let rtsp_listen = self.addr("server", t, "rtsp_listen");
        let data_dirs = match t.get("data_dirs") {
            None => {
                self.problem(
                    "server.data_dirs",
                    "missing; expected a list of directories, like [\"/var/lib/sharpeye/disk1\"]",
                );
                Vec::new()
            }
            Some(Value::Array(a)) => {
                let mut dirs = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match v {
                        Value::String(s) if !s.trim().is_empty() => dirs.push(PathBuf::from(s)),
                        v => self.problem(
                            format!("server.data_dirs[{i}]"),
                            format!("expected a directory path, got {}", type_name(v)),
                        ),
                    }
                }
                if a.is_empty() {
                    self.problem("server.data_dirs", "empty; expected at least one directory");
                }
                let unique: HashSet<&PathBuf> = dirs.iter().collect();
                if unique.len() != dirs.len() {
                    self.problem("server.data_dirs", "lists the same directory twice");
                }
                dirs
            }
            Some(v) => {
                self.problem(
                    "server.data_dirs",
                    format!("expected a list of directories, got {}", type_name(v)),
                );
                Vec::new()
            }
        };
        if let (Some(a), Some(b)) = (listen, rtsp_listen)
            && a == b
        {
            self.problem("server.rtsp_listen", "is the same address as server.listen");
        }
        Some(ServerConfig {
            listen: listen?,
            rtsp_listen,
            data_dirs,
        })
    }

    pub(super) fn recording(&mut self, root: &Table) -> RecordingConfig {
        let t = self.optional_section(root, "recording");
        self.known("recording", t, &["segment", "flush"]);
        RecordingConfig {
            segment: self.duration(
                "recording",
                t,
                "segment",
                Duration::from_secs(60),
                Duration::from_secs(1),
                Duration::from_secs(3600),
            ),
            flush: self.duration(
                "recording",
                t,
                "flush",
                Duration::from_millis(500),
                Duration::from_millis(10),
                Duration::from_secs(1),
            ),
        }
    }

    pub(super) fn retention(&mut self, root: &Table) -> RetentionConfig {
        let t = self.optional_section(root, "retention");
        self.known("retention", t, &["standard", "key", "min_free", "interval"]);
        let max = Duration::from_secs(100 * 365 * 86_400);
        let min_free = match t.get("min_free") {
            None => FreeFloor::Percent(5.0),
            Some(Value::Integer(n)) if *n >= 0 => FreeFloor::Bytes(*n as u64),
            Some(Value::String(v)) => parse_min_free(v).unwrap_or_else(|| {
                self.problem(
                    "retention.min_free",
                    format!("{v:?} is not a size; expected a percentage of each disk (\"5%\", up to 90%) or bytes (\"50GB\", \"512MiB\")"),
                );
                FreeFloor::Percent(5.0)
            }),
            Some(v) => {
                self.problem("retention.min_free", format!("expected a string like \"5%\" or \"50GB\", got {}", type_name(v)));
                FreeFloor::Percent(5.0)
            }
        };
        let r = RetentionConfig {
            standard: self.duration("retention", t, "standard", RULE_STANDARD, Duration::from_secs(1), max),
            key: self.duration("retention", t, "key", RULE_KEY, Duration::from_secs(1), max),
            min_free,
            interval: self.duration(
                "retention",
                t,
                "interval",
                Duration::from_secs(60),
                Duration::from_millis(50),
                Duration::from_secs(86_400),
            ),
        };
        if r.key < r.standard {
            self.problem(
                "retention.key",
                "is shorter than retention.standard; key areas must be kept at least as long",
            );
        }
        r
    }

    pub(super) fn playback(&mut self, root: &Table) -> PlaybackConfig {
        let t = self.optional_section(root, "playback");
        self.known("playback", t, &["max_range"]);
        PlaybackConfig {
            max_range: self.duration(
                "playback",
                t,
                "max_range",
                Duration::from_secs(24 * 3600),
                Duration::from_secs(1),
                Duration::from_secs(31 * 86_400),
            ),
        }
    }

    pub(super) fn live(&mut self, root: &Table) -> LiveConfig {
        let t = self.optional_section(root, "live");
        self.known(
            "live",
            t,
            &[
                "start_timeout",
                "idle",
                "max_viewers_per_stream",
                "max_viewers",
                "queue_frames",
                "dead_after",
                "webrtc_host",
            ],
        );
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        LiveConfig {
            start_timeout: self.duration("live", t, "start_timeout", s(10), ms(100), s(120)),
            idle: self.duration("live", t, "idle", s(15), ms(0), s(3600)),
            max_viewers_per_stream: self.count("live", t, "max_viewers_per_stream", 200, 1, 100_000),
            max_viewers: self.count("live", t, "max_viewers", 2000, 1, 1_000_000),
            queue_frames: self.count("live", t, "queue_frames", 256, 8, 100_000),
            dead_after: self.duration("live", t, "dead_after", s(10), ms(100), s(600)),
            webrtc_host: match t.get("webrtc_host") {
                None => None,
                Some(Value::String(v)) => match v.parse() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.problem("live.webrtc_host", format!("{v:?} is not an IP address"));
                        None
                    }
                },
                Some(v) => {
                    self.problem(
                        "live.webrtc_host",
                        format!("expected an IP address as a string, got {v}"),
                    );
                    None
                }
            },
        }
    }
}
