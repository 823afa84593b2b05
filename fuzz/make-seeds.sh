#!/usr/bin/env bash
# Regenerates fuzz seeds from the committed fixtures. With a recorded segment file as argument,
# also seeds segment_file (keep it small: a 1 s segment of a 240p camera is ~40 KB).
set -euo pipefail
cd "$(dirname "$0")"
python3 - <<'PY'
import os, re
fx = "../tests/fixtures"
def nals(path):
    data = open(path, "rb").read()
    parts = re.split(b"\x00\x00\x01", data)
    return [p.rstrip(b"\x00") for p in parts[1:] if p]
def first(ns, pred):
    return next(n for n in ns if pred(n))
os.makedirs("seeds/h264_sps", exist_ok=True)
os.makedirs("seeds/h265_sps", exist_ok=True)
os.makedirs("seeds/stream_params", exist_ok=True)
for name in ["h264_1080p", "h264_240p"]:
    ns = nals(f"{fx}/{name}.h264")
    sps = first(ns, lambda n: n[0] & 0x1f == 7); pps = first(ns, lambda n: n[0] & 0x1f == 8)
    open(f"seeds/h264_sps/{name}", "wb").write(sps)
    open(f"seeds/stream_params/{name}", "wb").write(bytes([0, len(sps), len(pps)]) + sps + pps)
for name in ["h265_1080p", "h265_240p"]:
    ns = nals(f"{fx}/{name}.h265")
    t = lambda n: (n[0] >> 1) & 0x3f
    vps = first(ns, lambda n: t(n) == 32); sps = first(ns, lambda n: t(n) == 33); pps = first(ns, lambda n: t(n) == 34)
    open(f"seeds/h265_sps/{name}", "wb").write(sps)
    open(f"seeds/stream_params/{name}", "wb").write(bytes([1, len(vps), len(sps)]) + vps + sps + pps)
PY
if [ $# -gt 0 ]; then
  mkdir -p seeds/segment_file
  cp "$1" seeds/segment_file/recorded.mp4
fi
ls -R seeds | head -20

# GB/T 28181 targets: hand-written MANSCDP bodies (Chinese names in GB18030), SDP answers,
# digest headers and times, platform conversations, and PS over RTP from the 240p fixture.
python3 - <<'PY'
import os, re, struct
def put(target, name, data):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    open(f"seeds/{target}/{name}", "wb").write(data)
DEV, PLAT, DOM = "34020000001320000001", "34020000002000000001", "3402000000"
gb = lambda s: s.encode("gb18030")  # the same bytes as encoding_rs::GB18030.encode

keepalive = f'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>43</SN>\r\n<DeviceID>{DEV}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n'
catalog = (f'<?xml version="1.0" encoding="GB2312"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>17</SN>\r\n'
    f'<DeviceID>{DEV}</DeviceID>\r\n<SumNum>2</SumNum>\r\n<DeviceList Num="2">\r\n'
    f'<Item>\r\n<DeviceID>34020000001310000001</DeviceID>\r\n<Name>东门 & 北门</Name>\r\n<Manufacturer>海康威视</Manufacturer>\r\n'
    f'<Model>IPC</Model>\r\n<CivilCode>340200</CivilCode>\r\n<ParentID>{DEV}</ParentID>\r\n<Status>ON</Status>\r\n'
    f'<Longitude>121.6</Longitude>\r\n<Latitude>38.9</Latitude>\r\n<Info>\r\n<PTZType>1</PTZType>\r\n</Info>\r\n</Item>\r\n'
    f'<item><DeviceID>34020000002150000001</DeviceID><Name>分组&amp;区域</Name><Status>OFF</Status></item>\r\n'
    f'</DeviceList>\r\n</Response>\r\n')
records = (f'<?xml version="1.0" encoding="GB2312"?>\r\n<Response>\r\n<CmdType>RecordInfo</CmdType>\r\n<SN>9</SN>\r\n'
    f'<DeviceID>{DEV}</DeviceID>\r\n<Name>前门</Name>\r\n<SumNum>2</SumNum>\r\n<RecordList Num="2">\r\n'
    f'<Item><DeviceID>{DEV}</DeviceID><Name>前门</Name><StartTime>2026-11-23T08:00:00</StartTime>'
    f'<EndTime>2026-11-23T09:00:00</EndTime><Secrecy>0</Secrecy><Type>time</Type><FileSize> 1024 </FileSize></Item>\r\n'
    f'<Item><DeviceID>{DEV}</DeviceID><StartTime>2026-11-23T09:00:00</StartTime><EndTime>2026-11-23T09:10:00</EndTime>'
    f'<Type>alarm</Type></Item>\r\n</RecordList>\r\n</Response>\r\n')
put("manscdp", "keepalive", gb(keepalive))
put("manscdp", "keepalive_attributes", f'<Notify CmdType="Keepalive" SN=" 3"><DeviceID>{DEV}</DeviceID></Notify>'.encode())
put("manscdp", "catalog_gb18030", gb(catalog))
put("manscdp", "catalog_utf8", catalog.replace("GB2312", "UTF-8").encode())
put("manscdp", "recordinfo", gb(records))

answer_tcp = f"v=0\r\no={DEV} 0 0 IN IP4 10.0.0.5\r\ns=Play\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=video 15062 TCP/RTP/AVP 96\r\na=sendonly\r\na=setup:active\r\na=connection:new\r\na=rtpmap:96 PS/90000\r\ny=0100000009\r\nf=\r\n"
answer_udp = f"v=0\r\no={DEV} 0 0 IN IP6 2001:db8::5\r\ns=Download\r\nt=1700000000 1700003600\r\nm=video 6000/2 RTP/AVP 96 98\r\nc=IN IP6 2001:db8::5/127\r\na=rtpmap:96 PS/90000\r\na=rtpmap:98 H264/90000\r\na=filesize:123456\r\ny=1200000002\r\n"
digest_qop = 'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
digest_plain = f'Digest username="{DEV}",realm="{DOM}",nonce="abc\\"d",uri="sip:127.0.0.1:5060",response="0123456789ABCDEF0123456789abcdef",algorithm=MD5'
put("gb_sdp_digest", "tcp_qop", b"\xff".join([answer_tcp.encode(), digest_qop.encode(), b"2023-11-15T06:13:20"]))
put("gb_sdp_digest", "udp_plain", b"\xff".join([answer_udp.encode(), digest_plain.encode(), b" 2026-02-29 23:59:60.250 "]))

def sip(start, headers, body=b""):
    head = start + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
def dev_request(method, branch, body=b"", extra=(), call_id=None, to=None):
    return sip(f"{method} sip:{PLAT}@{DOM} SIP/2.0", [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:15061;rport;branch=z9hG4bK{branch}"),
        ("From", f"<sip:{DEV}@{DOM}>;tag=m{branch}"),
        ("To", to or f"<sip:{PLAT}@{DOM}>"),
        ("Call-ID", call_id or f"msg-{branch}"),
        ("CSeq", f"20 {method}"),
        *extra], body)
def reply(code, reason, method, body=b"", extra=()):
    # An answer to the platform's last request (the target fills in $B, $C, $T, $S).
    return sip(f"SIP/2.0 {code} {reason}", [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;rport=5060;branch=$B"),
        ("From", f"<sip:{PLAT}@{DOM}>;tag=$T"),
        ("To", f"<sip:{DEV}@{DOM}>;tag=dev1"),
        ("Call-ID", "$C"),
        ("CSeq", f"$S {method}"),
        *extra], body)
xml = ("Content-Type", "Application/MANSCDP+xml")
def steps(flags, *steps):
    # Flags byte, then steps of (control byte, datagram) separated by 0xFF.
    return bytes([flags]) + b"\xff".join(bytes([c]) + d for c, d in steps)
register = lambda branch, cseq, auth: sip(f"REGISTER sip:{PLAT}@{DOM} SIP/2.0", [
    ("Via", f"SIP/2.0/UDP 127.0.0.1:15061;rport;branch=z9hG4bK{branch}"),
    ("From", f"<sip:{DEV}@{DOM}>;tag=r1"), ("To", f"<sip:{DEV}@{DOM}>"), ("Call-ID", "reg-7"),
    ("CSeq", f"{cseq} REGISTER"), ("Contact", f"<sip:{DEV}@127.0.0.1:15061>"),
    *([("Authorization", "$A")] if auth else []), ("Expires", "3600"), ("User-Agent", "IP Camera")])
# Registration by the fuzzed device itself (qop on), a keepalive, a refresh and an unregister.
put("gb_platform", "register", steps(0x02,
    (0, register("r1", 1, False)), (0, register("r2", 2, True)), (6, dev_request("MESSAGE", "k1", gb(keepalive), [xml])),
    (6, register("r3", 3, False)), (0, register("r4", 4, True).replace(b"3600", b"0"))))
# Registered: catalog query answered in two messages, records query answered, an alarm, options.
cat1 = catalog.replace("<SN>17</SN>", "<SN>1</SN>")
put("gb_platform", "catalog_records", steps(0x09,
    (0x06, dev_request("MESSAGE", "k2", gb(keepalive), [xml])),
    (0x08, reply(200, "OK", "MESSAGE")),
    (0x01, dev_request("MESSAGE", "c1", gb(cat1), [xml])),
    (0x10, reply(200, "OK", "MESSAGE")),
    (0x01, dev_request("MESSAGE", "r1", gb(records.replace("<SN>9</SN>", "<SN>2</SN>")), [xml])),
    (0x01, dev_request("MESSAGE", "a1", gb(f'<?xml version="1.0"?><Notify><CmdType>Alarm</CmdType><SN>5</SN><DeviceID>{DEV}</DeviceID><AlarmPriority>1</AlarmPriority></Notify>'), [xml])),
    (0x80, reply(408, "Request Timeout", "MESSAGE")),
    (0x05, dev_request("OPTIONS", "o1")), (0x05, dev_request("SUBSCRIBE", "s1"))))
# Registered over TCP: a live INVITE answered 100 then 200 with SDP, the device's BYE; a
# download INVITE ended by MediaStatus 121; a third refused 486; a hang-up of ours.
sdp = answer_tcp.encode()
in_dialog = lambda method, branch, body=b"", extra=(): dev_request(method, branch, body, extra, call_id="$C", to=f"<sip:{PLAT}@{DOM}>;tag=$T")
put("gb_platform", "invite_bye", steps(0x0C,
    (0x18, reply(100, "Trying", "INVITE")),
    (0x02, reply(200, "OK", "INVITE", sdp, [("Content-Type", "application/sdp"), ("Contact", f"<sip:{DEV}@127.0.0.1:15061>")])),
    (0x02, reply(200, "OK", "INVITE", sdp, [("Content-Type", "application/sdp")])),
    (0x03, in_dialog("BYE", "b1")),
    (0x20, reply(200, "OK", "INVITE", answer_udp.encode(), [("Content-Type", "application/sdp")])),
    (0x04, in_dialog("MESSAGE", "ms1", gb(f'<?xml version="1.0"?><Notify><CmdType>MediaStatus</CmdType><SN>8</SN><DeviceID>{DEV}</DeviceID><NotifyType>121</NotifyType></Notify>'), [xml])),
    (0x80, reply(200, "OK", "BYE")),
    (0x18, reply(486, "Busy Here", "INVITE")),
    (0x18, b""), (0x28, b""), (0x80, reply(200, "OK", "CANCEL")), (0x86, b"")))
# Hostile requests: missing headers, a wrong password, an unknown device, a bad body.
put("gb_platform", "hostile", steps(0x40,
    (0, b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n"),
    (0, register("w1", 1, False)), (0x40, register("w2", 2, False).replace(b"\r\nExpires", b"\r\nAuthorization: Digest username=\"34020000001320000001\", nonce=\"$N\", uri=\"u\", response=\"00\"\r\nExpires")),
    (0, dev_request("MESSAGE", "x1", b"<Notify><SN>1</SN></Notify>", [xml])),
    (0, dev_request("MESSAGE", "x2", b"</Notify>", [xml])),
    (0, dev_request("INFO", "i1", b"MediaStatus 121"))))

# PS over RTP: the 240p fixture's first frames (real SPS/PPS, slices cut short).
def nals(path):
    data = open(path, "rb").read()
    return [p.rstrip(b"\x00") for p in re.split(b"\x00\x00\x01", data)[1:] if p]
def mux_frame(pts, key, es):  # media::ps::mux_frame
    scr = pts
    out = bytearray(b"\x00\x00\x01\xba")
    out += bytes([0x44 | (((scr >> 30) & 7) << 3) | ((scr >> 28) & 3), (scr >> 20) & 0xFF,
                  ((scr >> 12) & 0xF8) | 4 | ((scr >> 13) & 3), (scr >> 5) & 0xFF, ((scr & 0x1F) << 3) | 4, 1,
                  1, 0x89, 0xC3, 0xF8])
    if key:
        out += bytes([0, 0, 1, 0xBB, 0, 12, 0x80, 1, 0x89, 4, 0xE1, 0xFF, 0xE0, 0xE0, 0x80, 0xC0, 0xC0, 8])
        out += bytes([0, 0, 1, 0xBC, 0, 14, 0xE0, 0xFF, 0, 0, 0, 4, 0x1B, 0xE0, 0, 0, 0, 0, 0, 0])
    ln = 3 + 5 + len(es)
    out += bytes([0, 0, 1, 0xE0, ln >> 8, ln & 0xFF, 0x80, 0x80, 5,
                  0x21 | (((pts >> 30) & 7) << 1), (pts >> 22) & 0xFF, ((pts >> 14) & 0xFE) | 1, (pts >> 7) & 0xFF, ((pts & 0x7F) << 1) | 1])
    return bytes(out + es)
ns = nals("../tests/fixtures/h264_240p.h264")
sps = next(n for n in ns if n[0] & 0x1F == 7); pps = next(n for n in ns if n[0] & 0x1F == 8)
slices = [n for n in ns if n[0] & 0x1F in (1, 5)][:4]
sc = b"\x00\x00\x00\x01"
frames = [(i * 3600, s[0] & 0x1F == 5, (sc + sps + sc + pps if s[0] & 0x1F == 5 else b"") + sc + s[:300]) for i, s in enumerate(slices)]
def rtp(seq, ts, marker, payload, size=None):
    b0, pad = 0x80, b""
    if size is not None:
        n = size - 12 - len(payload)
        b0, pad = 0xA0, bytes(n - 1) + bytes([n])
    return struct.pack(">BBHII", b0, (0x80 if marker else 0) | 96, seq, ts, 0x0BEBC209) + payload + pad
def packets(size=None, room=400):
    seq, out = 0, []
    for pts, key, es in frames:
        ps = mux_frame(pts, key, es)
        parts = [ps[i:i + room] for i in range(0, len(ps), room)]
        for j, part in enumerate(parts):
            out.append(rtp(seq, pts, j == len(parts) - 1, part, size)); seq += 1
    return out
put("ps_rtp", "rfc4571", bytes([39, 0]) + b"".join(struct.pack(">H", len(p)) + p for p in packets()))
put("ps_rtp", "interleaved", bytes([7, 0]) + b"".join(b"$\x00" + struct.pack(">H", len(p)) + p for p in packets()))
# Datagrams of 12 + 8 x 26 = 220 bytes (RTP padding fills the last of each frame).
put("ps_rtp", "datagrams", bytes([63, 26]) + b"".join(packets(size=220, room=200)))
PY
