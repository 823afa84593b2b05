//! `[ingest]`: how cameras are pulled (transport, watchdog, timeouts, reconnect delays).

use std::time::Duration;

use ingest::supervisor::Retry;
use node::config::{PullSettings, RtspTransport};
use toml::{Table, Value};

use super::check::{Checker, join};

impl Checker {
    pub(super) fn transport(&mut self, path: &str, t: &Table) -> Option<RtspTransport> {
        match self.string(path, t, "transport")?.as_str() {
            "tcp" => Some(RtspTransport::Tcp),
            "udp" => Some(RtspTransport::Udp),
            other => {
                self.problem(
                    join(path, "transport"),
                    format!("{other:?} is not a transport; expected \"tcp\" or \"udp\""),
                );
                None
            }
        }
    }

    pub(super) fn ingest(&mut self, root: &Table) -> PullSettings {
        let t = self.optional_section(root, "ingest");
        self.known(
            "ingest",
            t,
            &[
                "transport",
                "watchdog",
                "request_timeout",
                "reconnect_min",
                "reconnect_max",
                "reconnect_slow",
                "max_frame_bytes",
            ],
        );
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let max_frame_bytes = match t.get("max_frame_bytes") {
            None => 16 << 20,
            Some(Value::Integer(n)) if (65_536..=1 << 30).contains(n) => *n as usize,
            Some(v) => {
                self.problem(
                    "ingest.max_frame_bytes",
                    format!("expected an integer between 65536 and 1073741824, got {v}"),
                );
                16 << 20
            }
        };
        PullSettings {
            transport: self.transport("ingest", t).unwrap_or(RtspTransport::Tcp),
            watchdog: self.duration("ingest", t, "watchdog", s(4), ms(200), s(300)),
            request_timeout: self.duration("ingest", t, "request_timeout", s(5), ms(100), s(300)),
            retry: Retry {
                min: self.duration("ingest", t, "reconnect_min", ms(250), ms(10), s(600)),
                max: self.duration("ingest", t, "reconnect_max", ms(1500), ms(10), s(3600)),
                slow: self.duration("ingest", t, "reconnect_slow", s(30), ms(10), s(3600)),
            },
            max_frame_bytes,
        }
    }
}
