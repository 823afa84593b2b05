//! Playback of recorded video over HTTP from a real `sharpeye run` process: frame-accurate MP4s
//! of random ranges, byte ranges, speed playback, HLS through ffmpeg, gaps, and bad requests.

mod common;

use std::path::Path;

use camsim::BuiltinFixture;
use common::*;

const FIX_240: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/h264_240p.h264");

struct Served {
    node: Node,
    base: i64,
    token: String,
    // After the node: its log is printed from its drop when a test fails.
    _dir: tempfile::TempDir,
}

/// 12 minutes of camera `a` (H.264 240p), then a 20 s gap and 1 minute more; `b` (H.265) 3 min.
fn serve() -> Served {
    assert!(have_ffmpeg());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Whole seconds, two hours ago: inside every window, and frame times are exact.
    let base = (now_us() / 1_000_000 - 7200) * 1_000_000;
    synthesize(
        &data,
        base,
        60,
        &[
            Stretch {
                camera: "a",
                fixture: BuiltinFixture::H264_240p,
                offset_s: 0.0,
                seconds: 720.0,
            },
            Stretch {
                camera: "a",
                fixture: BuiltinFixture::H264_240p,
                offset_s: 740.0,
                seconds: 60.0,
            },
            Stretch {
                camera: "b",
                fixture: BuiltinFixture::H265_240p,
                offset_s: 0.0,
                seconds: 180.0,
            },
        ],
    );
    let addr = free_addr();
    let cams = [
        camera_toml("a", "rtsp://127.0.0.1:1/a"),
        camera_toml("b", "rtsp://127.0.0.1:1/b"),
    ]
    .concat();
    let config =
        config_with(addr, &data, "", "", &cams).replace("[ingest]", "[playback]\nmax_range = \"1h\"\n\n[ingest]");
    let mut node = Node::start(dir.path(), &config, addr);
    let token = node.token();
    Served {
        _dir: dir,
        node,
        base,
        token,
    }
}

fn mp4_url(s: &Served, cam: &str, from: f64, to: f64, extra: &str) -> String {
    s.node.url(&format!(
        "/api/v1/cameras/{cam}/playback.mp4?start={}&end={}{extra}",
        at(s.base, from),
        at(s.base, to)
    ))
}

fn save(dir: &Path, name: &str, body: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn random_ranges_are_frame_accurate_decode_and_serve_byte_ranges() {
    let s = serve();
    let tmp = tempfile::tempdir().unwrap();
    // (start s, length s): inside a segment, across one and many boundaries, on and off key
    // frames (a key frame every second), from 1 s to 10 min; starts on frame boundaries.
    let mut cases: Vec<(f64, f64)> = vec![
        (10.0, 1.0),
        (61.0, 5.0),
        (59.52, 2.0),
        (125.36, 30.0),
        (3.04, 600.0),
        (100.0, 119.96),
    ];
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..6 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let frame = (seed >> 33) % (600 * 25);
        let len_frames = 25 + (seed >> 12) % (90 * 25);
        cases.push((frame as f64 * 0.04, len_frames as f64 * 0.04));
    }
    for (i, &(from, len)) in cases.iter().enumerate() {
        let url = mp4_url(&s, "a", from, from + len, "");
        let (status, headers, body) = fetch(&url, &s.token, &[]);
        assert_eq!(status, 200, "case {i}: {}", String::from_utf8_lossy(&body));
        let path = save(tmp.path(), &format!("c{i}.mp4"), &body);
        let d = duration(&path);
        assert!(
            (d - len).abs() <= 0.040 + 1e-6,
            "case {i} ({from}+{len}): ffprobe duration {d}"
        );
        let (errors, frames) = decode(path.to_str().unwrap());
        assert!(errors.is_empty(), "case {i}: {errors}");
        assert!(
            ((frames as f64) - len * 25.0).abs() <= 1.0,
            "case {i}: {frames} frames shown for {len} s"
        );
        // The first frame shown is the one recorded at `from`: frame n of the recording is
        // frame n mod 100 of the looped fixture.
        let n = (from * 25.0).round() as u32 % 100;
        assert_eq!(
            first_frame(path.to_str().unwrap(), None),
            first_frame(FIX_240, Some(n)),
            "case {i}: first frame is not frame {n}"
        );
        assert_eq!(
            header(&headers, "x-sharpeye-first-frame").map(parse_time),
            Some(s.base + (from * 1e6).round() as i64)
        );
        if i == 3 {
            byte_ranges(&s, &url, &body, header(&headers, "etag").unwrap());
        }
    }
}

fn byte_ranges(s: &Served, url: &str, full: &[u8], etag: &str) {
    let len = full.len();
    // In uneven pieces, the last one open-ended.
    let cuts = [0, 1, 1000, len / 3, len / 3 + 7, len - 100, len];
    let mut joined = Vec::new();
    for w in cuts.windows(2) {
        let range = if w[1] == len {
            format!("bytes={}-", w[0])
        } else {
            format!("bytes={}-{}", w[0], w[1] - 1)
        };
        let (status, headers, body) = fetch(url, &s.token, &[("Range", &range)]);
        assert_eq!(status, 206, "{range}");
        assert_eq!(
            header(&headers, "content-range"),
            Some(format!("bytes {}-{}/{len}", w[0], w[1] - 1).as_str())
        );
        assert_eq!(
            header(&headers, "content-length"),
            Some((w[1] - w[0]).to_string().as_str())
        );
        joined.extend_from_slice(&body);
    }
    assert!(joined == full, "byte ranges joined equal the full body");
    let (status, _, body) = fetch(url, &s.token, &[("Range", "bytes=-500")]);
    assert_eq!((status, &body[..]), (206, &full[len - 500..]));
    // If-Range: a current ETag gives the range, a stale one the whole file.
    let (status, _, _) = fetch(url, &s.token, &[("Range", "bytes=0-9"), ("If-Range", etag)]);
    assert_eq!(status, 206);
    let (status, _, body) = fetch(url, &s.token, &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")]);
    assert_eq!((status, body.len()), (200, len));
    let (status, headers, _) = fetch(url, &s.token, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(status, 416);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    // HEAD: same length and validator, no body.
    let mut resp = ureq::head(url)
        .header("Authorization", &format!("Bearer {}", s.token))
        .call()
        .unwrap();
    assert_eq!(
        resp.headers().get("content-length").unwrap().to_str().unwrap(),
        len.to_string()
    );
    assert_eq!(resp.headers().get("etag").unwrap().to_str().unwrap(), etag);
    assert!(resp.body_mut().read_to_vec().unwrap().is_empty());
}

#[test]
fn fast_playback_scales_timestamps_and_keeps_key_frames_only_from_4x() {
    let s = serve();
    let tmp = tempfile::tempdir().unwrap();
    for cam in ["a", "b"] {
        let (from, len) = (30.2, 96.0);
        for speed in [2u32, 4, 8, 16] {
            let (status, _, body) = fetch(
                &mp4_url(&s, cam, from, from + len, &format!("&speed={speed}")),
                &s.token,
                &[],
            );
            assert_eq!(status, 200);
            let path = save(tmp.path(), &format!("{cam}{speed}.mp4"), &body);
            let d = duration(&path);
            let want = len / f64::from(speed);
            assert!(
                (d - want).abs() <= 0.040,
                "{cam} speed {speed}: duration {d}, want {want}"
            );
            let (errors, frames) = decode(path.to_str().unwrap());
            assert!(errors.is_empty(), "{cam} speed {speed}: {errors}");
            if speed >= 4 {
                // One key frame per second of recording.
                assert!(
                    frames <= (len as u64) + 2 && frames >= (len as u64) - 2,
                    "{cam} speed {speed}: {frames} frames"
                );
            }
        }
    }
}

#[test]
fn hls_playlist_plays_end_to_end_through_ffmpeg() {
    let s = serve();
    let (from, to) = (55.0, 200.0);
    let (status, body) = post_json(
        &s.node.url("/api/v1/cameras/a/media-token"),
        &serde_json::json!({"action": "playback", "ttl_s": 600}),
        Some(&s.token),
    );
    assert_eq!(status, 200, "{body}");
    let t = body["token"].as_str().unwrap();
    let url = s.node.url(&format!(
        "/api/v1/cameras/a/playback.m3u8?start={}&end={}&token={t}",
        at(s.base, from),
        at(s.base, to)
    ));
    let playlist = ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(playlist.starts_with("#EXTM3U") && playlist.contains("#EXT-X-ENDLIST") && playlist.contains("#EXT-X-MAP:"));
    assert!(
        playlist.matches("#EXT-X-MAP:").count() >= 3,
        "several segment files: {playlist}"
    );
    assert!(
        !playlist.contains("#EXT-X-DISCONTINUITY"),
        "one continuous recording plays as one timeline: {playlist}"
    );

    let (errors, frames) = decode(&url);
    assert!(errors.is_empty(), "{errors}");
    // Whole HLS segments: starts at or before `from`, ends at or after `to`.
    let want = (to - from) * 25.0;
    assert!(
        frames as f64 >= want && frames as f64 <= want + 10.0 * 25.0,
        "{frames} frames for {want}"
    );
    // The playlist's segment URLs carry a token for this camera only.
    let seg = playlist.lines().find(|l| l.starts_with("segments/")).unwrap();
    let other = s.node.url(&format!("/api/v1/cameras/b/{seg}"));
    assert_eq!(get_json(&other, None).0, 401);
}

#[test]
fn a_gap_is_collapsed_and_reported() {
    let s = serve();
    let tmp = tempfile::tempdir().unwrap();
    // 700..760 s: 20 s recorded, 20 s gap (720..740), 20 s recorded.
    let (status, headers, body) = fetch(&mp4_url(&s, "a", 700.0, 760.0, ""), &s.token, &[]);
    assert_eq!(status, 200);
    let gaps = header(&headers, "x-sharpeye-gaps").expect("gap header");
    let (a, b) = gaps.split_once('/').unwrap();
    assert_eq!(
        (parse_time(a), parse_time(b)),
        (s.base + 720_000_000, s.base + 740_000_000)
    );
    let path = save(tmp.path(), "gap.mp4", &body);
    let d = duration(&path);
    assert!((d - 40.0).abs() <= 0.04, "recorded parts back to back: {d}");
    assert!(decode(path.to_str().unwrap()).0.is_empty());
    let (_, listing) = get_json(
        &s.node.url(&format!(
            "/api/v1/cameras/a/recordings?start={}&end={}",
            at(s.base, 0.0),
            at(s.base, 900.0)
        )),
        Some(&s.token),
    );
    assert_eq!(listing["ranges"].as_array().unwrap().len(), 2, "{listing}");
    // HLS across the gap: a discontinuity, and ffmpeg plays both sides.
    let (_, tok) = post_json(
        &s.node.url("/api/v1/cameras/a/media-token"),
        &serde_json::json!({"action": "playback"}),
        Some(&s.token),
    );
    let url = s.node.url(&format!(
        "/api/v1/cameras/a/playback.m3u8?start={}&end={}&token={}",
        at(s.base, 700.0),
        at(s.base, 760.0),
        tok["token"].as_str().unwrap()
    ));
    let playlist = ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap();
    assert_eq!(playlist.matches("#EXT-X-DISCONTINUITY").count(), 1, "{playlist}");
    let (errors, frames) = decode(&url);
    assert!(errors.is_empty(), "{errors}");
    assert!((1000..=1100).contains(&frames), "{frames} frames for 40 s recorded");
}

#[test]
fn bad_playback_requests_get_the_right_status() {
    let s = serve();
    let t = Some(s.token.as_str());
    let code = |url: String, tok: Option<&str>| {
        let (status, v) = get_json(&url, tok);
        (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
    };
    let u = |q: &str| s.node.url(&format!("/api/v1/cameras/a/playback.mp4?{q}"));
    assert_eq!(
        code(mp4_url(&s, "a", 20.0, 10.0, ""), t),
        (400, "bad_request".into()),
        "end before start"
    );
    assert_eq!(
        code(mp4_url(&s, "a", 0.0, 3700.0, ""), t),
        (400, "range_too_long".into())
    );
    assert_eq!(
        code(mp4_url(&s, "a", 900.0, 960.0, ""), t),
        (404, "nothing_recorded".into())
    );
    assert_eq!(code(mp4_url(&s, "zz", 0.0, 10.0, ""), t), (404, "not_found".into()));
    assert_eq!(code(u("start=noon&end=2026-01-01T00:00:00Z"), t).0, 400);
    assert_eq!(code(u("end=2026-01-01T00:00:00Z"), t).0, 400);
    assert_eq!(code(mp4_url(&s, "a", 0.0, 10.0, "&speed=3"), t).0, 400);
    assert_eq!(
        code(mp4_url(&s, "a", 0.0, 10.0, ""), None),
        (401, "unauthorized".into())
    );
    assert_eq!(
        code(mp4_url(&s, "a", 0.0, 10.0, "&token=v1.9999999999.playback.AAAA"), None).0,
        401
    );
    let huge = format!("bytes={}", "1-2,".repeat(600));
    let (status, headers, body) = fetch(&mp4_url(&s, "a", 0.0, 10.0, ""), &s.token, &[("Range", &huge)]);
    assert_eq!(status, 416);
    assert!(String::from_utf8_lossy(&body).contains("range_not_satisfiable"));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let hls = s.node.url(&format!(
        "/api/v1/cameras/a/playback.m3u8?start={}&end={}",
        at(s.base, 900.0),
        at(s.base, 950.0)
    ));
    assert_eq!(code(hls, t), (404, "nothing_recorded".into()));
}
