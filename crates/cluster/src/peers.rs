//! What a member asks the others directly, over their API (`advertise_url`): whether they reach
//! etcd. While etcd does not answer this member, it goes on recording past its lease only if
//! every other member it knew says etcd is down for it too — then nobody can claim its
//! cameras. A member that cannot be asked, or that reaches etcd, means this one may be the one
//! cut off, and must stop when its lease would have expired.

use std::time::Duration;

use serde_json::Value;

/// Whether the member at `url` says it reaches etcd: `Some(false)` when it says etcd is down
/// for it too, `None` when it cannot be asked or answers something else.
pub fn reaches_etcd(agent: &ureq::Agent, url: &str) -> Option<bool> {
    let mut resp = agent
        .get(&format!("{}/api/v1/cluster/etcd", url.trim_end_matches('/')))
        .call()
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let text = resp.body_mut().with_config().limit(4096).read_to_string().ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["etcd_reachable"].as_bool()
}

/// An agent for asking peers, each call bounded by `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Whether etcd is down for every member of `others` (their URLs), so that this member may go
/// on recording what it holds: all must answer, and all must say so. With no other member,
/// nobody can take anything over without etcd either.
pub fn all_confirm_down(agent: &ureq::Agent, others: &[crate::MemberInfo]) -> bool {
    others.iter().all(|m| reaches_etcd(agent, &m.url) == Some(false))
}

/// What went wrong asking another member.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// It could not be reached.
    #[error("cluster member {member} at {url} unreachable: {why}")]
    Unreachable {
        /// Its name.
        member: String,
        /// Its `advertise_url`.
        url: String,
        /// Why.
        why: String,
    },
    /// It answered with an error or something that is not JSON.
    #[error("cluster member {member} at {url} answered {status}: {body}")]
    Refused {
        /// Its name.
        member: String,
        /// Its `advertise_url`.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What it said (at most 300 characters).
        body: String,
    },
}

/// `GET path` (with its query) on member `m` as this member (`me`) with the cluster's node
/// credential: its JSON answer (at most 16 MiB).
pub fn get_json(
    agent: &ureq::Agent,
    m: &crate::MemberInfo,
    path: &str,
    me: &str,
    credential: &str,
) -> Result<Value, PeerError> {
    let refused = |status, body: &str| PeerError::Refused {
        member: m.name.clone(),
        url: m.url.clone(),
        status,
        body: body.into(),
    };
    let body = get_bytes(agent, m, path, me, credential, 16 << 20)?.ok_or_else(|| refused(404, "not found"))?;
    serde_json::from_slice(&body).map_err(|_| refused(200, "not JSON"))
}

/// The header a member names itself in when it calls another (for the other's audit log).
pub const NODE_HEADER: &str = "x-sharpeye-node";

/// The prefix of the node credential: `node_` and the cluster's secret.
pub const CREDENTIAL_PREFIX: &str = "node_";

/// The cluster's node credential, `node_<secret>`: created by the first member that joins
/// (`/sharpeye/<cluster>/secret`, 32 random bytes, no lease) and read by every other. Whoever
/// can read etcd is inside the cluster's trust boundary already.
pub fn credential(etcd: &crate::Etcd, cluster: &str) -> Result<String, crate::EtcdError> {
    let key = crate::keys::secret(cluster);
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    let fresh: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    etcd.claim(&key, fresh.as_bytes(), 0)?;
    let secret = etcd
        .get(&key)?
        .and_then(|kv| String::from_utf8(kv.value).ok())
        .filter(|s| s.len() >= 32 && s.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| crate::EtcdError::BadAnswer {
            endpoint: "etcd".into(),
            call: "kv/range",
            what: format!("{key} is not a 32-byte hex secret"),
        })?;
    Ok(format!("{CREDENTIAL_PREFIX}{secret}"))
}

/// `GET path` on member `m` with the node credential: the body's bytes (at most `limit`), or
/// `None` when it answered 404 (nothing there).
pub fn get_bytes(
    agent: &ureq::Agent,
    m: &crate::MemberInfo,
    path: &str,
    me: &str,
    credential: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, PeerError> {
    let url = format!("{}{path}", m.url.trim_end_matches('/'));
    let mut resp = agent
        .get(&url)
        .header("authorization", &format!("Bearer {credential}"))
        .header(NODE_HEADER, me)
        .call()
        .map_err(|e| PeerError::Unreachable {
            member: m.name.clone(),
            url: m.url.clone(),
            why: e.to_string(),
        })?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Ok(None);
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| PeerError::Unreachable {
            member: m.name.clone(),
            url: m.url.clone(),
            why: format!("the answer was cut: {e}"),
        })?;
    if status != 200 {
        return Err(PeerError::Refused {
            member: m.name.clone(),
            url: m.url.clone(),
            status,
            body: String::from_utf8_lossy(&body)
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect(),
        });
    }
    Ok(Some(body))
}

/// The segments an HLS playlist of ours names: `(seq, start µs)` of each distinct
/// `segments/<seq>.mp4?t=<start>` it refers to, in order. Anything else is left out.
pub fn playlist_segments(m3u8: &str) -> Vec<(u64, i64)> {
    let mut out: Vec<(u64, i64)> = Vec::new();
    for line in m3u8.lines() {
        let Some(i) = line.find("segments/") else { continue };
        let rest = &line[i + "segments/".len()..];
        let Some((seq, query)) = rest.split_once(".mp4?") else {
            continue;
        };
        let Ok(seq) = seq.parse::<u64>() else { continue };
        let t = query
            .split(['&', '"'])
            .find_map(|kv| kv.strip_prefix("t="))
            .and_then(|t| t.parse::<i64>().ok());
        if let Some(t) = t
            && !out.contains(&(seq, t))
        {
            out.push((seq, t));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake member on loopback that answers every request with `answer`, then closes.
    fn fake_member(answer: &'static [u8]) -> crate::MemberInfo {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming().take(4) {
                let Ok(mut s) = s else { continue };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer);
            }
        });
        crate::MemberInfo {
            name: "rec-9".into(),
            url,
            weight: 1.0,
        }
    }

    #[test]
    fn hostile_or_broken_answers_from_a_member_are_errors_that_name_it() {
        let a = agent(Duration::from_secs(2));
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nnot json!"[..],
            &b"HTTP/1.1 500 Internal\r\ncontent-length: 4\r\n\r\n\x1b[2J"[..],
            &b"garbage that is not HTTP at all"[..],
            &b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\ncut"[..],
        ] {
            let m = fake_member(answer);
            let e = get_json(&a, &m, "/api/v1/cameras/x/recordings", "rec-1", "node_x").unwrap_err();
            let text = e.to_string();
            assert!(text.contains("rec-9") && text.contains(&m.url), "{text}");
            assert!(!text.contains('\x1b'), "control characters passed on: {text:?}");
        }
        let m = fake_member(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}");
        assert!(get_bytes(&a, &m, "/x", "rec-1", "node_x", 1024).unwrap().is_none());
        let m = fake_member(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n");
        let e = get_bytes(&a, &m, "/x", "rec-1", "node_x", 1024).unwrap_err();
        assert!(e.to_string().contains("rec-9"), "{e}");
        // Nobody there.
        let gone = crate::MemberInfo {
            name: "rec-8".into(),
            url: "http://127.0.0.1:1".into(),
            weight: 1.0,
        };
        assert!(matches!(
            get_json(&a, &gone, "/", "rec-1", "node_x"),
            Err(PeerError::Unreachable { .. })
        ));
        assert_eq!(reaches_etcd(&a, &gone.url), None);
    }

    #[test]
    fn a_playlist_names_its_segments_once_each_and_nothing_else() {
        let m3u8 = "#EXTM3U\n#EXT-X-MAP:URI=\"segments/7.mp4?t=1000&stream=main&token=x\",BYTERANGE=\"800@0\"\n#EXTINF:2.000,\n#EXT-X-BYTERANGE:100@800\nsegments/7.mp4?t=1000&stream=main&token=x\n#EXTINF:2.000,\nsegments/8.mp4?stream=main&t=3000\nsegments/x.mp4?t=1\nsegments/9.mp4?t=abc\n../../etc/passwd\n";
        assert_eq!(playlist_segments(m3u8), vec![(7, 1000), (8, 3000)]);
        assert!(playlist_segments("").is_empty());
    }
}
