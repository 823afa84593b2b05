//! Server-sent events as a lower node sends them (`GET /api/v1/events`), parsed sans-IO:
//! bytes in, `(event, data)` pairs out. Lines are bounded, so a hostile peer cannot grow
//! memory without limit.

use std::collections::VecDeque;

/// Longest line kept; longer ones are an error.
pub const MAX_LINE: usize = 256 << 10;

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event:` (default `message`).
    pub event: String,
    /// Its `data:` lines, joined by newlines.
    pub data: String,
}

/// The parser.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    out: VecDeque<SseEvent>,
}

impl SseParser {
    /// Takes in `bytes`; an error (a line over [`MAX_LINE`]) ends the stream.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                self.line_done(&line);
            } else if self.line.len() >= MAX_LINE {
                return Err(format!("an event line longer than {MAX_LINE} bytes"));
            } else {
                self.line.push(b);
            }
        }
        Ok(())
    }

    fn line_done(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            if !self.data.is_empty() {
                self.out.push_back(SseEvent {
                    event: self.event.take().unwrap_or_else(|| "message".into()),
                    data: std::mem::take(&mut self.data).join("\n"),
                });
            }
            self.event = None;
            return;
        }
        let line = String::from_utf8_lossy(raw);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
    }

    /// The next complete event.
    pub fn poll(&mut self) -> Option<SseEvent> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_whole_whatever_the_chunking() {
        let text = b": keep-alive\n\nevent: camera.offline\ndata: {\"camera\":\"c1\"}\n\nevent: x\r\ndata: a\r\ndata: b\r\n\r\ndata: plain\n\n";
        for n in [1, 3, text.len()] {
            let mut p = SseParser::default();
            let mut got = Vec::new();
            for c in text.chunks(n) {
                p.push(c).unwrap();
                got.extend(std::iter::from_fn(|| p.poll()));
            }
            assert_eq!(
                got,
                [
                    SseEvent {
                        event: "camera.offline".into(),
                        data: "{\"camera\":\"c1\"}".into()
                    },
                    SseEvent {
                        event: "x".into(),
                        data: "a\nb".into()
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "plain".into()
                    },
                ]
            );
        }
        let mut p = SseParser::default();
        assert!(p.push(&vec![b'x'; MAX_LINE + 1]).is_err());
        let mut p = SseParser::default();
        p.push(b"\xff\xfe: \x00\ndata\n\n").unwrap();
        assert_eq!(p.poll().map(|e| e.data), Some(String::new()));
    }
}
