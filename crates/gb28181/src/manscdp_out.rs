//! MANSCDP bodies we send toward an upper platform (gb28181-notes.md §3 and §6): Catalog
//! answers and NOTIFYs with the organisation nodes that place the channels, RecordInfo,
//! DeviceInfo and DeviceStatus answers, Keepalive, MediaStatus, all cut into messages that fit
//! the transport.
//!
//! Items are written one by one so that an answer can be cut **by size** (a UDP message must
//! stay under the MTU: wvp's unpaged answers vanish above it, wvp#2138), each message repeating
//! the SN and `SumNum`.

use crate::manscdp::Charset;

/// What an item of our catalog is.
#[derive(Clone, Debug, PartialEq)]
pub enum EntryKind {
    /// A video channel (one of our cameras).
    Channel {
        /// Online (`Status ON`).
        online: bool,
        /// (lat, lon).
        location: Option<(f64, f64)>,
        /// PTZ type (1 dome … 4 PTZ bullet), when it has PTZ.
        ptz_type: Option<u8>,
        /// The business group it belongs to, when placed under a virtual organisation.
        business_group: Option<String>,
    },
    /// A business group (type 215): the root of a virtual tree.
    BusinessGroup,
    /// A virtual organisation (type 216) inside `business_group`.
    VirtualOrg {
        /// Its business group's id.
        business_group: String,
    },
}

/// One item of our catalog toward an upper.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogEntry {
    /// 20-digit id (a camera's own id, or a stable id made for an org node).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The parent: our platform id for top-level nodes, else the org node above.
    pub parent_id: String,
    /// Administrative division code (digits 1-6 of our id, usually).
    pub civil_code: String,
    /// What it is.
    pub kind: EntryKind,
}

/// Escapes text for XML element content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The XML declaration naming `charset` as uppers expect it.
pub fn declaration(charset: Charset) -> &'static str {
    match charset {
        Charset::Utf8 => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n",
        _ => "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n",
    }
}

impl CatalogEntry {
    /// The `<Item>` of this entry; with `event` (`ADD`, `DEL`, `ON`, `OFF`, `UPDATE`) for a
    /// catalog NOTIFY.
    pub fn item_xml(&self, event: Option<&str>) -> String {
        let mut s = format!(
            "<Item>\r\n<DeviceID>{}</DeviceID>\r\n<Name>{}</Name>\r\n",
            escape(&self.id),
            escape(&self.name)
        );
        match &self.kind {
            EntryKind::Channel {
                online,
                location,
                ptz_type,
                business_group,
            } => {
                s.push_str(&format!(
                    "<Manufacturer>Sharpeye</Manufacturer>\r\n<Model>Camera</Model>\r\n<Owner>0</Owner>\r\n<CivilCode>{}</CivilCode>\r\n<Address>{}</Address>\r\n<Parental>0</Parental>\r\n<ParentID>{}</ParentID>\r\n",
                    escape(&self.civil_code),
                    escape(&self.name),
                    escape(&self.parent_id)
                ));
                if let Some(bg) = business_group {
                    s.push_str(&format!("<BusinessGroupID>{}</BusinessGroupID>\r\n", escape(bg)));
                }
                s.push_str(&format!(
                    "<SafetyWay>0</SafetyWay>\r\n<RegisterWay>1</RegisterWay>\r\n<Secrecy>0</Secrecy>\r\n<Status>{}</Status>\r\n",
                    if *online { "ON" } else { "OFF" }
                ));
                if let Some((lat, lon)) = location {
                    s.push_str(&format!(
                        "<Longitude>{lon:.6}</Longitude>\r\n<Latitude>{lat:.6}</Latitude>\r\n"
                    ));
                }
                if let Some(p) = ptz_type {
                    s.push_str(&format!("<Info>\r\n<PTZType>{p}</PTZType>\r\n</Info>\r\n"));
                }
            }
            EntryKind::BusinessGroup => {
                s.push_str(&format!("<ParentID>{}</ParentID>\r\n", escape(&self.parent_id)));
            }
            EntryKind::VirtualOrg { business_group } => {
                s.push_str(&format!(
                    "<ParentID>{}</ParentID>\r\n<BusinessGroupID>{}</BusinessGroupID>\r\n",
                    escape(&self.parent_id),
                    escape(business_group)
                ));
            }
        }
        if let Some(e) = event {
            s.push_str(&format!("<Event>{e}</Event>\r\n"));
        }
        s.push_str("</Item>\r\n");
        s
    }
}

/// One recording toward an upper (a RecordInfo item).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordEntry {
    /// The channel.
    pub channel: String,
    /// Name.
    pub name: String,
    /// Start, device-local `YYYY-MM-DDTHH:MM:SS`.
    pub start: String,
    /// End, likewise.
    pub end: String,
    /// Bytes, when known.
    pub file_size: Option<u64>,
}

impl RecordEntry {
    /// The `<Item>`.
    pub fn item_xml(&self, recorder: &str) -> String {
        let mut s = format!(
            "<Item>\r\n<DeviceID>{}</DeviceID>\r\n<Name>{}</Name>\r\n<FilePath>{}</FilePath>\r\n<Address>{}</Address>\r\n<StartTime>{}</StartTime>\r\n<EndTime>{}</EndTime>\r\n<Secrecy>0</Secrecy>\r\n<Type>time</Type>\r\n<RecorderID>{}</RecorderID>\r\n",
            escape(&self.channel),
            escape(&self.name),
            escape(&format!("{}/{}", self.channel, self.start)),
            escape(&self.name),
            escape(&self.start),
            escape(&self.end),
            escape(recorder)
        );
        if let Some(n) = self.file_size {
            s.push_str(&format!("<FileSize>{n}</FileSize>\r\n"));
        }
        s.push_str("</Item>\r\n");
        s
    }
}

/// A multi-message answer: its command, SN, the device it is about, the total, the list
/// element and the items.
pub struct ListAnswer<'a> {
    /// `Catalog` or `RecordInfo`.
    pub cmd: &'a str,
    /// The upper's SN.
    pub sn: u64,
    /// The `DeviceID` of the answer (our id, or the channel for RecordInfo).
    pub device_id: &'a str,
    /// `Name` of a RecordInfo answer.
    pub name: Option<&'a str>,
    /// `DeviceList` or `RecordList`.
    pub list: &'a str,
    /// The items' XML.
    pub items: &'a [String],
    /// `Response` (an answer) or `Notify` (a catalog change).
    pub root: &'a str,
}

impl ListAnswer<'_> {
    fn head(&self, charset: Charset, n: usize) -> String {
        let mut s = format!(
            "{}<{}>\r\n<CmdType>{}</CmdType>\r\n<SN>{}</SN>\r\n<DeviceID>{}</DeviceID>\r\n",
            declaration(charset),
            self.root,
            self.cmd,
            self.sn,
            escape(self.device_id)
        );
        if let Some(name) = self.name {
            s.push_str(&format!("<Name>{}</Name>\r\n", escape(name)));
        }
        s.push_str(&format!("<SumNum>{}</SumNum>\r\n", self.items.len()));
        if n > 0 || self.items.is_empty() && self.cmd == "Catalog" {
            s.push_str(&format!("<{} Num=\"{n}\">\r\n", self.list));
        }
        s
    }

    fn tail(&self, n: usize) -> String {
        let list_end = if n > 0 || self.items.is_empty() && self.cmd == "Catalog" {
            format!("</{}>\r\n", self.list)
        } else {
            String::new()
        };
        format!("{list_end}</{}>\r\n", self.root)
    }

    /// The bodies, encoded in `charset`: as many items per body as keep it within `max_body`
    /// bytes (at least one); one body with `SumNum 0` when there are no items.
    pub fn bodies(&self, charset: Charset, max_body: usize) -> Vec<Vec<u8>> {
        let enc = |s: &str| crate::manscdp::encode_text(s, charset);
        if self.items.is_empty() {
            return vec![enc(&format!("{}{}", self.head(charset, 0), self.tail(0)))];
        }
        // The frame around the items, with the widest `Num` this answer can have.
        let wide = self.items.len().min(99_999);
        let frame = enc(&self.head(charset, wide)).len() + enc(&self.tail(wide)).len();
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            let mut size = frame;
            let mut j = i;
            while j < self.items.len() {
                let add = enc(&self.items[j]).len();
                if j > i && size + add > max_body {
                    break;
                }
                size += add;
                j += 1;
            }
            let n = j - i;
            let mut body = self.head(charset, n);
            for it in &self.items[i..j] {
                body.push_str(it);
            }
            body.push_str(&self.tail(n));
            out.push(enc(&body));
            i = j;
        }
        out
    }
}

/// A Keepalive notify from us.
pub fn keepalive(sn: u64, own_id: &str, charset: Charset) -> String {
    format!(
        "{}<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n",
        declaration(charset),
        escape(own_id)
    )
}

/// A DeviceInfo answer about `target` (our platform or one of its channels).
pub fn device_info(sn: u64, target: &str, name: &str, channels: usize, charset: Charset) -> String {
    format!(
        "{}<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<DeviceName>{}</DeviceName>\r\n<Result>OK</Result>\r\n<Manufacturer>Sharpeye</Manufacturer>\r\n<Model>Sharpeye</Model>\r\n<Firmware>{}</Firmware>\r\n<Channel>{channels}</Channel>\r\n</Response>\r\n",
        declaration(charset),
        escape(target),
        escape(name),
        env!("CARGO_PKG_VERSION")
    )
}

/// A DeviceStatus answer about `target`; `device_time` is device-local.
pub fn device_status(
    sn: u64,
    target: &str,
    online: bool,
    recording: bool,
    device_time: &str,
    charset: Charset,
) -> String {
    format!(
        "{}<Response>\r\n<CmdType>DeviceStatus</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Result>OK</Result>\r\n<Online>{}</Online>\r\n<Status>OK</Status>\r\n<Encode>ON</Encode>\r\n<Record>{}</Record>\r\n<DeviceTime>{}</DeviceTime>\r\n<Alarmstatus Num=\"0\">\r\n</Alarmstatus>\r\n</Response>\r\n",
        declaration(charset),
        escape(target),
        if online { "ONLINE" } else { "OFFLINE" },
        if recording { "ON" } else { "OFF" },
        escape(device_time)
    )
}

/// A channel's alarm passed up to an upper platform (an Alarm notify): priority 1-4, method
/// 1-7, device-local time, description as the device gave it.
pub fn alarm_notify(
    sn: u64,
    channel: &str,
    priority: u8,
    method: u8,
    time: &str,
    description: &str,
    charset: Charset,
) -> String {
    format!(
        "{}<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<AlarmPriority>{priority}</AlarmPriority>\r\n<AlarmMethod>{method}</AlarmMethod>\r\n<AlarmTime>{}</AlarmTime>\r\n<AlarmDescription>{}</AlarmDescription>\r\n</Notify>\r\n",
        declaration(charset),
        escape(channel),
        escape(time),
        escape(description)
    )
}

/// The end of a recording sent in a playback's dialog (NotifyType 121).
pub fn media_status(sn: u64, channel: &str, charset: Charset) -> String {
    format!(
        "{}<Notify>\r\n<CmdType>MediaStatus</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<NotifyType>121</NotifyType>\r\n</Notify>\r\n",
        declaration(charset),
        escape(channel)
    )
}

/// The answer to a DeviceControl that expects one (Result OK or ERROR).
pub fn control_result(sn: u64, target: &str, ok: bool, charset: Charset) -> String {
    format!(
        "{}<Response>\r\n<CmdType>DeviceControl</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Result>{}</Result>\r\n</Response>\r\n",
        declaration(charset),
        escape(target),
        if ok { "OK" } else { "ERROR" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manscdp::{CatalogChunk, Document, RecordChunk};

    fn channel(id: &str, name: &str, parent: &str) -> CatalogEntry {
        CatalogEntry {
            id: id.into(),
            name: name.into(),
            parent_id: parent.into(),
            civil_code: "340200".into(),
            kind: EntryKind::Channel {
                online: true,
                location: Some((38.9, 121.6)),
                ptz_type: Some(1),
                business_group: Some("34020000002150000001".into()),
            },
        }
    }

    #[test]
    fn catalog_cut_by_size_reads_back_with_our_own_decoder() {
        let mut items = vec![
            CatalogEntry {
                id: "34020000002150000001".into(),
                name: "西岗 <区>".into(),
                parent_id: "34020000002000000010".into(),
                civil_code: "340200".into(),
                kind: EntryKind::BusinessGroup,
            }
            .item_xml(None),
        ];
        for i in 0..30 {
            items.push(
                channel(
                    &format!("340200000013200000{i:02}"),
                    &format!("门口 {i} & co"),
                    "34020000002160000001",
                )
                .item_xml(None),
            );
        }
        let a = ListAnswer {
            cmd: "Catalog",
            sn: 77,
            device_id: "34020000002000000010",
            name: None,
            list: "DeviceList",
            items: &items,
            root: "Response",
        };
        for charset in [Charset::Gb18030, Charset::Utf8] {
            let bodies = a.bodies(charset, 900);
            assert!(bodies.len() > 5);
            let mut seen = Vec::new();
            for b in &bodies {
                let items_in = b.windows(6).filter(|w| w == b"<Item>").count();
                assert!(
                    b.len() <= 900 || items_in == 1,
                    "{} bytes with {items_in} items",
                    b.len()
                );
                let doc = Document::decode(b, charset).unwrap();
                assert!(doc.is("Response", "Catalog") && doc.sn == 77);
                let chunk = CatalogChunk::from_document(&doc);
                assert_eq!(chunk.sum_num, 31);
                seen.extend(chunk.items);
            }
            assert_eq!(seen.len(), 31);
            assert_eq!(seen[0].name, "西岗 <区>");
            assert_eq!(seen[1].name, "门口 0 & co");
            assert_eq!(seen[1].parent_id, "34020000002160000001");
            assert!(seen[1].online && seen[1].location.is_some());
        }
        // One item per message when even one barely fits.
        assert_eq!(a.bodies(Charset::Utf8, 10).len(), 31);
    }

    #[test]
    fn empty_answers_say_sum_zero() {
        let a = ListAnswer {
            cmd: "RecordInfo",
            sn: 3,
            device_id: "34020000001320000001",
            name: Some("gate"),
            list: "RecordList",
            items: &[],
            root: "Response",
        };
        let b = a.bodies(Charset::Utf8, 1000);
        assert_eq!(b.len(), 1);
        let doc = Document::decode(&b[0], Charset::Utf8).unwrap();
        assert_eq!(RecordChunk::from_document(&doc).sum_num, 0);
        let r = RecordEntry {
            channel: "34020000001320000001".into(),
            name: "gate".into(),
            start: "2026-12-04T10:00:00".into(),
            end: "2026-12-04T10:01:00".into(),
            file_size: Some(7),
        };
        let items = [r.item_xml("34020000002000000010")];
        let b = ListAnswer { items: &items, ..a }.bodies(Charset::Utf8, 1000);
        let doc = Document::decode(&b[0], Charset::Utf8).unwrap();
        let chunk = RecordChunk::from_document(&doc);
        assert_eq!(
            (chunk.sum_num, chunk.items[0].start.as_str()),
            (1, "2026-12-04T10:00:00")
        );
    }
}
