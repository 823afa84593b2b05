//! MANSCDP: the XML bodies GB/T 28181 peers exchange in SIP MESSAGEs (queries, controls,
//! notifications and responses), decoded leniently because devices are known to be wrong.
//!
//! Leniencies, each for a behaviour seen in the field (gb28181-notes.md §3):
//! - the charset: the XML declaration says GB2312 but the bytes may be GBK, GB18030 or UTF-8.
//!   A GB declaration is decoded as GB18030 (their superset; GB2312 cannot hold 萳); UTF-8 or
//!   no declaration is tried as strict UTF-8 first, then GB18030; a per-device override wins;
//! - bare `&` in names (Hikvision) is kept as text instead of failing the document;
//! - element names in any case (`Item`/`item`, `Info`/`info`), numbers with spaces around them,
//!   unknown elements ignored, mismatched end tags tolerated.
//!
//! Sans-IO and bounded: at most [`MAX_BODY`] bytes, [`MAX_DEPTH`] levels, [`MAX_ELEMENTS`] elements.

use quick_xml::events::Event;

/// Largest body decoded.
pub const MAX_BODY: usize = 256 * 1024;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 16;
/// Most elements in one document.
pub const MAX_ELEMENTS: usize = 50_000;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManscdpError {
    /// Over [`MAX_BODY`].
    #[error("MANSCDP body of {0} bytes is over the {MAX_BODY}-byte limit")]
    TooLarge(usize),
    /// Not XML at all, or no root element.
    #[error("MANSCDP body is not XML: {0}")]
    Xml(String),
    /// Nested too deep or too many elements.
    #[error("MANSCDP body is nested deeper than {MAX_DEPTH} levels or has over {MAX_ELEMENTS} elements")]
    TooComplex,
    /// A required element is missing.
    #[error("MANSCDP {root} has no {element}")]
    Missing {
        /// The document's root.
        root: String,
        /// The missing element.
        element: &'static str,
    },
}

/// The charset a device's bodies are decoded with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Charset {
    /// As the declaration says, falling back as the module explains.
    #[default]
    Auto,
    /// Always GB18030 (also for GB2312/GBK devices).
    Gb18030,
    /// Always UTF-8 (invalid bytes replaced).
    Utf8,
}

impl Charset {
    /// Reads a config value: `auto`, `gb18030` (or `gb2312`, `gbk`), `utf-8`.
    pub fn parse(s: &str) -> Option<Charset> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(Charset::Auto),
            "gb18030" | "gb2312" | "gbk" => Some(Charset::Gb18030),
            "utf-8" | "utf8" => Some(Charset::Utf8),
            _ => None,
        }
    }
}

fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(200)];
    let head = String::from_utf8_lossy(head);
    let decl_end = head.find("?>")?;
    let decl = &head[..decl_end];
    let at = decl.to_ascii_lowercase().find("encoding")?;
    let rest = decl[at + 8..].trim_start().strip_prefix('=')?.trim_start();
    // Only an ASCII quote opens the value (a curly quote or other byte is no declaration; found
    // by fuzzing: slicing after a multi-byte character panicked).
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    let end = rest.find(quote)?;
    Some(rest[..end].to_ascii_lowercase())
}

/// Decodes a body's bytes to text with `charset`.
pub fn decode_text(bytes: &[u8], charset: Charset) -> String {
    let gb = || encoding_rs::GB18030.decode_without_bom_handling(bytes).0.into_owned();
    match charset {
        Charset::Gb18030 => gb(),
        Charset::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        Charset::Auto => {
            let declared = declared_encoding(bytes);
            if declared.as_deref().is_some_and(|d| d.starts_with("gb")) {
                return gb();
            }
            match std::str::from_utf8(bytes) {
                Ok(s) => s.to_owned(),
                Err(_) => gb(),
            }
        }
    }
}

/// Encodes an outgoing body for a peer whose charset is `charset` (GB18030 unless UTF-8).
pub fn encode_text(text: &str, charset: Charset) -> Vec<u8> {
    match charset {
        Charset::Utf8 => text.as_bytes().to_vec(),
        _ => encoding_rs::GB18030.encode(text).0.into_owned(),
    }
}

/// One XML element: name, text and children (attributes are kept for `Num`-style counts).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    /// The tag name as written.
    pub name: String,
    /// Attributes as written.
    pub attrs: Vec<(String, String)>,
    /// The text directly inside, trimmed.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`, in any case.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Every child named `name`, in any case.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name.eq_ignore_ascii_case(name))
    }

    /// The trimmed text of child `name`, if present and not empty.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim()).filter(|t| !t.is_empty())
    }

    /// Child `name`'s text as a number, spaces allowed around it.
    pub fn number_of<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.text_of(name).and_then(|t| t.parse().ok())
    }
}

fn unescape_lenient(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    match quick_xml::escape::unescape(&s) {
        Ok(u) => u.into_owned(),
        // A bare `&` (Hikvision names): keep the text as sent.
        Err(_) => s.into_owned(),
    }
}

/// `&` that does not start an entity or character reference, written as `&amp;` (Hikvision
/// sends bare ampersands in names; the XML reader rejects them).
fn escape_bare_ampersands(text: &str) -> std::borrow::Cow<'_, str> {
    let is_reference = |rest: &str| {
        let end = rest.find(';').filter(|&e| e <= 12);
        end.is_some_and(|e| {
            let name = &rest[1..e];
            !name.is_empty()
                && (name.bytes().all(|b| b.is_ascii_alphanumeric())
                    || name.strip_prefix('#').is_some_and(|n| {
                        n.bytes().all(|b| b.is_ascii_digit())
                            || n.strip_prefix('x')
                                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    }))
        })
    };
    if !text.char_indices().any(|(i, c)| c == '&' && !is_reference(&text[i..])) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, c) in text.char_indices() {
        if c == '&' && !is_reference(&text[i..]) {
            out.push_str("&amp;");
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Parses a document into its root element.
pub fn parse_xml(text: &str) -> Result<Element, ManscdpError> {
    let text = escape_bare_ampersands(text);
    let mut reader = quick_xml::Reader::from_str(&text);
    let cfg = reader.config_mut();
    cfg.check_end_names = false;
    // Not trimmed per event: a reference splits a text in pieces whose spaces belong to it.
    cfg.trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let mut count = 0usize;
    let start = |e: &quick_xml::events::BytesStart<'_>| Element {
        name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
        attrs: e
            .attributes()
            .flatten()
            .map(|a| {
                (
                    String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                    unescape_lenient(&a.value),
                )
            })
            .collect(),
        ..Element::default()
    };
    loop {
        let ev = reader.read_event().map_err(|e| ManscdpError::Xml(e.to_string()))?;
        match ev {
            Event::Start(e) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(ManscdpError::TooComplex);
                }
                stack.push(start(&e));
            }
            Event::Empty(e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(ManscdpError::TooComplex);
                }
                let el = start(&e);
                match stack.last_mut() {
                    Some(p) => p.children.push(el),
                    None => {
                        root.get_or_insert(el);
                    }
                }
            }
            Event::Text(t) => {
                if let Some(p) = stack.last_mut() {
                    p.text.push_str(&unescape_lenient(t.as_ref()));
                }
            }
            Event::CData(t) => {
                if let Some(p) = stack.last_mut() {
                    p.text.push_str(&String::from_utf8_lossy(t.as_ref()));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(p) = stack.last_mut() {
                    let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                    let s = format!("&{name};");
                    p.text.push_str(&unescape_lenient(s.as_bytes()));
                }
            }
            Event::End(_) => {
                if let Some(mut el) = stack.pop() {
                    el.text = el.text.trim().to_owned();
                    match stack.last_mut() {
                        Some(p) => p.children.push(el),
                        None => {
                            root.get_or_insert(el);
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    // Unclosed elements at the end (a truncated body): keep what arrived.
    while let Some(mut el) = stack.pop() {
        el.text = el.text.trim().to_owned();
        match stack.last_mut() {
            Some(p) => p.children.push(el),
            None => {
                root.get_or_insert(el);
            }
        }
    }
    let mut root = root.ok_or_else(|| ManscdpError::Xml("no root element".into()))?;
    root.text = root.text.trim().to_owned();
    Ok(root)
}

/// What a MANSCDP document is: its root kind, command, sequence number and subject device.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// `Query`, `Control`, `Notify` or `Response` (as written).
    pub root: String,
    /// `CmdType`.
    pub cmd: String,
    /// `SN`.
    pub sn: u64,
    /// `DeviceID`.
    pub device_id: String,
    /// The whole tree.
    pub element: Element,
}

impl Document {
    /// Decodes a MESSAGE body.
    pub fn decode(bytes: &[u8], charset: Charset) -> Result<Document, ManscdpError> {
        if bytes.len() > MAX_BODY {
            return Err(ManscdpError::TooLarge(bytes.len()));
        }
        let text = decode_text(bytes, charset);
        let element = parse_xml(&text)?;
        let missing = |element| ManscdpError::Missing {
            root: element_name(&text),
            element,
        };
        // gb28181-rs writes `<Notify CmdType="Keepalive" SN="1">`: attributes count too.
        let attr = |name: &str| {
            element
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let cmd = match element.text_of("CmdType") {
            Some(c) => c.to_owned(),
            None => attr("CmdType").ok_or_else(|| missing("CmdType"))?,
        };
        let sn = element
            .number_of("SN")
            .or_else(|| attr("SN").and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        let device_id = element.text_of("DeviceID").unwrap_or_default().to_owned();
        Ok(Document {
            root: element.name.clone(),
            cmd,
            sn,
            device_id,
            element,
        })
    }

    /// True if the root is `name` (any case).
    pub fn is(&self, root: &str, cmd: &str) -> bool {
        self.root.eq_ignore_ascii_case(root) && self.cmd.eq_ignore_ascii_case(cmd)
    }
}

fn element_name(text: &str) -> String {
    parse_xml(text).map(|e| e.name).unwrap_or_else(|_| "document".into())
}

/// One channel (or organisation node) of a Catalog answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogItem {
    /// Its 20-digit id.
    pub device_id: String,
    /// Name.
    pub name: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// Civil (administrative division) code.
    pub civil_code: String,
    /// Parent id(s) as sent.
    pub parent_id: String,
    /// `Status` ON (true) / OFF.
    pub online: bool,
    /// Longitude and latitude, when both are given and not zero.
    pub location: Option<(f64, f64)>,
    /// `Info/PTZType` when given.
    pub ptz_type: Option<u8>,
    /// `Event` of a catalog change notification (`ADD`, `DEL`, `ON`, `OFF`, `UPDATE`, ...),
    /// upper-cased; `None` in a plain catalog answer.
    pub event: Option<String>,
}

impl CatalogItem {
    /// The type code (digits 11-13) of a 20-digit id: 131/132 cameras, 200 systems, 215/216 groups.
    pub fn type_code(&self) -> Option<u16> {
        type_code(&self.device_id)
    }

    /// True for a video channel (not a system, group, virtual org or alarm input).
    pub fn is_video_channel(&self) -> bool {
        match self.type_code() {
            Some(t) => matches!(t, 111..=119 | 130..=133),
            // Short ids are administrative divisions; other odd ids are taken as channels.
            None => {
                self.device_id.len() != 2
                    && self.device_id.len() != 4
                    && self.device_id.len() != 6
                    && self.device_id.len() != 8
            }
        }
    }
}

/// The type code of a 20-digit GB id.
pub fn type_code(id: &str) -> Option<u16> {
    (id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| id[10..13].parse().ok())
        .flatten()
}

/// One message of a Catalog answer: its `SumNum` and items.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogChunk {
    /// `SumNum`: the grand total the device announces.
    pub sum_num: usize,
    /// Items of this message.
    pub items: Vec<CatalogItem>,
}

impl CatalogChunk {
    /// Reads a `Response`/`Notify` Catalog document.
    pub fn from_document(doc: &Document) -> CatalogChunk {
        let e = &doc.element;
        let items = e
            .child("DeviceList")
            .map(|l| {
                l.children_named("Item")
                    .filter_map(|i| {
                        let device_id = i.text_of("DeviceID")?.to_owned();
                        let lon: Option<f64> = i.number_of("Longitude");
                        let lat: Option<f64> = i.number_of("Latitude");
                        Some(CatalogItem {
                            device_id,
                            name: i.text_of("Name").unwrap_or_default().to_owned(),
                            manufacturer: i.text_of("Manufacturer").unwrap_or_default().to_owned(),
                            model: i.text_of("Model").unwrap_or_default().to_owned(),
                            civil_code: i.text_of("CivilCode").unwrap_or_default().to_owned(),
                            parent_id: i.text_of("ParentID").unwrap_or_default().to_owned(),
                            online: i
                                .text_of("Status")
                                .is_none_or(|s| s.eq_ignore_ascii_case("ON") || s.eq_ignore_ascii_case("ONLINE")),
                            location: match (lon, lat) {
                                (Some(lon), Some(lat))
                                    if lon.is_finite() && lat.is_finite() && (lon != 0.0 || lat != 0.0) =>
                                {
                                    Some((lon, lat))
                                }
                                _ => None,
                            },
                            ptz_type: i.child("Info").and_then(|info| info.number_of("PTZType")),
                            event: i
                                .text_of("Event")
                                .map(|e| e.trim().chars().take(16).collect::<String>().to_ascii_uppercase())
                                .filter(|e| !e.is_empty()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        CatalogChunk {
            sum_num: e.number_of("SumNum").unwrap_or(0),
            items,
        }
    }
}

/// One recording a device holds (a RecordInfo answer item).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordItem {
    /// Channel id.
    pub device_id: String,
    /// Name.
    pub name: String,
    /// Start, device local time as sent (`YYYY-MM-DDTHH:MM:SS`).
    pub start: String,
    /// End, as sent.
    pub end: String,
    /// `time`, `alarm`, `manual` or `all` as sent.
    pub kind: String,
    /// `FileSize` when sent.
    pub file_size: Option<u64>,
}

/// One message of a RecordInfo answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordChunk {
    /// `SumNum`.
    pub sum_num: usize,
    /// Items of this message.
    pub items: Vec<RecordItem>,
}

impl RecordChunk {
    /// Reads a RecordInfo `Response`.
    pub fn from_document(doc: &Document) -> RecordChunk {
        let e = &doc.element;
        let items = e
            .child("RecordList")
            .map(|l| {
                l.children_named("Item")
                    .map(|i| RecordItem {
                        device_id: i.text_of("DeviceID").unwrap_or_default().to_owned(),
                        name: i.text_of("Name").unwrap_or_default().to_owned(),
                        start: i.text_of("StartTime").unwrap_or_default().to_owned(),
                        end: i.text_of("EndTime").unwrap_or_default().to_owned(),
                        kind: i.text_of("Type").unwrap_or_default().to_owned(),
                        file_size: i.number_of("FileSize"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        RecordChunk {
            sum_num: e.number_of("SumNum").unwrap_or(0),
            items,
        }
    }
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A `Query` body (`Catalog`, `DeviceInfo`, `DeviceStatus`) for `device_id`, as text.
pub fn query(cmd: &str, sn: u64, device_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>{}</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n</Query>\r\n",
        escape(cmd),
        escape(device_id)
    )
}

/// A RecordInfo `Query` for a channel between two device-local times (`YYYY-MM-DDTHH:MM:SS`).
/// `Type` is `all`: Dahua NVRs answer nothing without it.
pub fn record_info_query(sn: u64, channel: &str, start: &str, end: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>RecordInfo</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<StartTime>{}</StartTime>\r\n<EndTime>{}</EndTime>\r\n<Secrecy>0</Secrecy>\r\n<Type>all</Type>\r\n</Query>\r\n",
        escape(channel),
        escape(start),
        escape(end)
    )
}

/// A DeviceControl `Control` body carrying a PTZ command (16 hex characters).
pub fn ptz_control(sn: u64, channel: &str, ptz_cmd: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Control>\r\n<CmdType>DeviceControl</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<PTZCmd>{}</PTZCmd>\r\n<Info>\r\n<ControlPriority>5</ControlPriority>\r\n</Info>\r\n</Control>\r\n",
        escape(channel),
        escape(ptz_cmd)
    )
}

/// A platform's `Response` to a device's Alarm notify.
pub fn alarm_response(sn: u64, device_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n<CmdType>Alarm</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Result>OK</Result>\r\n</Response>\r\n",
        escape(device_id)
    )
}

/// A PTZ movement (A.3): pan/tilt/zoom directions with speeds 0-255 / 0-255 / 0-15.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ptz {
    /// -1 left, 0 none, 1 right.
    pub pan: i8,
    /// -1 down, 0 none, 1 up.
    pub tilt: i8,
    /// -1 out, 0 none, 1 in.
    pub zoom: i8,
    /// Pan speed.
    pub pan_speed: u8,
    /// Tilt speed.
    pub tilt_speed: u8,
    /// Zoom speed (low 4 bits).
    pub zoom_speed: u8,
}

impl Ptz {
    /// The 8-byte command as 16 upper-case hex characters (all zero directions = stop).
    pub fn command(&self) -> String {
        let mut cmd = 0u8;
        cmd |= match self.zoom {
            z if z < 0 => 0x20,
            z if z > 0 => 0x10,
            _ => 0,
        };
        cmd |= match self.tilt {
            t if t > 0 => 0x08,
            t if t < 0 => 0x04,
            _ => 0,
        };
        cmd |= match self.pan {
            p if p < 0 => 0x02,
            p if p > 0 => 0x01,
            _ => 0,
        };
        // A speed only for the axes that move (the standard's examples: "right at 0x80" is
        // A50F010180000036, tilt speed 0).
        let d1 = if self.pan != 0 { self.pan_speed } else { 0 };
        let d2 = if self.tilt != 0 { self.tilt_speed } else { 0 };
        let d3 = if self.zoom != 0 { self.zoom_speed & 0x0F } else { 0 };
        let bytes = [0xA5u8, 0x0F, 0x01, cmd, d1, d2, d3 << 4];
        let sum = bytes.iter().fold(0u32, |a, b| a + u32::from(*b)) % 256;
        let mut s = String::with_capacity(16);
        for b in bytes.iter().chain(std::iter::once(&(sum as u8))) {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = "<?xml version=\"1.0\" encoding=\"GB2312\"?>\n<Response>\n<CmdType>Catalog</CmdType>\n<SN> 17 </SN>\n<DeviceID>34020000001320000001</DeviceID>\n<SumNum>2</SumNum>\n<DeviceList Num=\"2\">\n<Item><DeviceID>34020000001320000001</DeviceID><Name>东门 & 北门</Name><Status>ON</Status><Longitude>121.6</Longitude><Latitude>38.9</Latitude><info><PTZType>1</PTZType></info></Item>\n<item><DeviceID>34020000002150000001</DeviceID><Name>分组</Name></item>\n</DeviceList>\n</Response>\n";

    #[test]
    fn catalog_in_gb18030_with_quirks() {
        let bytes = encode_text(CATALOG, Charset::Auto);
        assert_ne!(bytes, CATALOG.as_bytes(), "Chinese text is encoded, not UTF-8");
        let doc = Document::decode(&bytes, Charset::Auto).unwrap();
        assert!(doc.is("response", "catalog"));
        assert_eq!(doc.sn, 17);
        let chunk = CatalogChunk::from_document(&doc);
        assert_eq!(chunk.sum_num, 2);
        assert_eq!(chunk.items.len(), 2);
        assert_eq!(chunk.items[0].name, "东门 & 北门");
        assert_eq!(chunk.items[0].location, Some((121.6, 38.9)));
        assert_eq!(chunk.items[0].ptz_type, Some(1));
        assert!(chunk.items[0].is_video_channel());
        assert!(!chunk.items[1].is_video_channel());
        // The same document sent as UTF-8 under a GB2312 declaration: the override reads it.
        let doc = Document::decode(CATALOG.as_bytes(), Charset::Utf8).unwrap();
        assert_eq!(CatalogChunk::from_document(&doc).items[0].name, "东门 & 北门");
        // UTF-8 bytes declared as UTF-8 decode on Auto too.
        let utf8 = CATALOG.replace("GB2312", "UTF-8");
        let doc = Document::decode(utf8.as_bytes(), Charset::Auto).unwrap();
        assert_eq!(CatalogChunk::from_document(&doc).items[1].name, "分组");
    }

    #[test]
    fn rare_characters_survive_gb18030() {
        let text = query("Catalog", 1, "萳");
        let bytes = encode_text(&text, Charset::Gb18030);
        let doc = Document::decode(&bytes, Charset::Auto).unwrap();
        assert_eq!(doc.device_id, "萳");
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        // Fuzz finds: a non-ASCII byte or a curly quote after `encoding=`.
        let odd = [0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x3d, 0xc3, 0x3f, 0x3e];
        assert!(Document::decode(&odd, Charset::Auto).is_err());
        let curly = "<?xml version=\"1.0\" encoding=“GB2312”?><Notify><CmdType>Keepalive</CmdType></Notify>";
        assert!(Document::decode(curly.as_bytes(), Charset::Auto).is_ok());
        assert!(matches!(
            Document::decode(&vec![b'<'; MAX_BODY + 1], Charset::Auto),
            Err(ManscdpError::TooLarge(_))
        ));
        assert!(Document::decode(b"", Charset::Auto).is_err());
        assert!(Document::decode(b"not xml at all", Charset::Auto).is_err());
        assert!(matches!(
            Document::decode(b"<Notify><SN>1</SN></Notify>", Charset::Auto),
            Err(ManscdpError::Missing { element: "CmdType", .. })
        ));
        let deep = "<a>".repeat(100);
        assert_eq!(
            Document::decode(deep.as_bytes(), Charset::Auto),
            Err(ManscdpError::TooComplex)
        );
        let wide = format!("<a><CmdType>x</CmdType>{}</a>", "<b/>".repeat(MAX_ELEMENTS + 1));
        assert_eq!(
            Document::decode(wide.as_bytes(), Charset::Auto),
            Err(ManscdpError::TooComplex)
        );
        let doc = Document::decode(
            b"<Notify CmdType=\"Keepalive\" SN=\" 3\"><DeviceID>d</DeviceID></Notify>",
            Charset::Auto,
        )
        .unwrap();
        assert!(doc.is("Notify", "Keepalive"));
        assert_eq!(doc.sn, 3);
        // Every truncation of a real body: an answer or an error, never a panic.
        let bytes = encode_text(CATALOG, Charset::Auto);
        for cut in 0..bytes.len() {
            let _ = Document::decode(&bytes[..cut], Charset::Auto).map(|d| CatalogChunk::from_document(&d));
        }
        // Mismatched end tags and bytes that are neither UTF-8 nor GB18030.
        let doc = Document::decode(
            b"<Notify><CmdType>Keepalive</cmdtype><SN>x</SN></Notify>",
            Charset::Auto,
        )
        .unwrap();
        assert_eq!(doc.sn, 0);
        let _ = Document::decode(&[0x3c, 0xff, 0xfe, 0x80, 0x3e], Charset::Auto);
    }

    #[test]
    fn ptz_commands_match_the_worked_examples() {
        assert_eq!(Ptz::default().command(), "A50F0100000000B5");
        let right = Ptz {
            pan: 1,
            pan_speed: 0x80,
            ..Ptz::default()
        };
        assert_eq!(right.command(), "A50F010180000036");
        let zoom_in = Ptz {
            zoom: 1,
            zoom_speed: 5,
            ..Ptz::default()
        };
        assert_eq!(zoom_in.command(), "A50F011000005015");
        // Speeds of axes that do not move are not sent.
        let pan_only = Ptz {
            pan: 1,
            pan_speed: 0x40,
            tilt_speed: 0x40,
            zoom_speed: 4,
            ..Ptz::default()
        };
        assert_eq!(pan_only.command(), "A50F0101400000F6");
    }

    #[test]
    fn record_info_answer() {
        let body = "<?xml version=\"1.0\"?><Response><CmdType>RecordInfo</CmdType><SN>9</SN><DeviceID>c</DeviceID><SumNum>3</SumNum><RecordList Num=\"1\"><Item><DeviceID>c</DeviceID><Name>r</Name><StartTime>2026-11-23T08:00:00</StartTime><EndTime>2026-11-23T09:00:00</EndTime><Type>time</Type><FileSize> 1024 </FileSize></Item></RecordList></Response>";
        let doc = Document::decode(body.as_bytes(), Charset::Auto).unwrap();
        let chunk = RecordChunk::from_document(&doc);
        assert_eq!(chunk.sum_num, 3);
        assert_eq!(chunk.items[0].file_size, Some(1024));
        assert_eq!(chunk.items[0].start, "2026-11-23T08:00:00");
        assert!(record_info_query(1, "c", "a", "b").contains("<Type>all</Type>"));
    }
}
