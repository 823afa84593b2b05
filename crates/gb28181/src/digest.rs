//! SIP digest authentication (RFC 2617 / 3261 §22.4, MD5) as GB/T 28181 devices use it.
//!
//! GB quirks handled (gb28181-notes.md §2): `algorithm=MD5` is always sent in the challenge
//! (Dahua NVRs do not answer a challenge without it); the response is checked with the `uri`
//! and `nc` exactly as the device wrote them (sipp sends `uri="sip:<ip>:<port>"`, not the
//! Request-URI); with and without `qop=auth`.

use md5::{Digest, Md5};

/// Longest `Authorization` header value accepted.
const MAX_HEADER: usize = 4096;

/// What a device sent in its `Authorization: Digest ...` header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `username` (the device id).
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce` it answers.
    pub nonce: String,
    /// `uri` as sent.
    pub uri: String,
    /// `response`: the hex MD5 to check.
    pub response: String,
    /// `qop` (`auth`), if used.
    pub qop: Option<String>,
    /// `nc` as sent (with qop).
    pub nc: Option<String>,
    /// `cnonce` (with qop).
    pub cnonce: Option<String>,
    /// `algorithm`, if sent.
    pub algorithm: Option<String>,
}

/// Why an `Authorization` header could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// Not a `Digest` scheme.
    #[error("the Authorization header is not Digest")]
    NotDigest,
    /// Over [`MAX_HEADER`] bytes.
    #[error("the Authorization header is {0} bytes long (at most {MAX_HEADER})")]
    TooLong(usize),
    /// A required parameter is missing.
    #[error("the Authorization header has no {0}")]
    Missing(&'static str),
    /// A quoted string does not end.
    #[error("the Authorization header has an unterminated quoted value")]
    Unterminated,
    /// An algorithm other than MD5.
    #[error("digest algorithm {0:?} is not supported (only MD5)")]
    Algorithm(String),
    /// qop without nc/cnonce, or a qop other than auth.
    #[error("digest qop {0:?} is not supported (only auth, with nc and cnonce)")]
    Qop(String),
}

fn hex_md5(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut s = String::with_capacity(32);
    for b in d {
        s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    s
}

/// Splits `a=b, c="d, e"` into pairs, honouring quotes and backslash escapes.
fn params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or(DigestError::Missing("value"))?;
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or(DigestError::Unterminated)?;
            value = v;
            rest = &q[end + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.push((name, value));
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(out)
}

/// The parameters of a `Digest` header value (after the scheme), if it is one of a sane size.
fn digest_params(header: &str) -> Result<&str, DigestError> {
    if header.len() > MAX_HEADER {
        return Err(DigestError::TooLong(header.len()));
    }
    let h = header.trim_start();
    let (scheme, rest) = h.split_at(h.find(char::is_whitespace).unwrap_or(h.len()));
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(DigestError::NotDigest);
    }
    Ok(rest)
}

impl Credentials {
    /// Reads an `Authorization` (or `Proxy-Authorization`) header value.
    pub fn parse(header: &str) -> Result<Credentials, DigestError> {
        let rest = digest_params(header)?;
        let mut c = Credentials::default();
        for (k, v) in params(rest)? {
            match k.as_str() {
                "username" => c.username = v,
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "uri" => c.uri = v,
                "response" => c.response = v.to_ascii_lowercase(),
                "qop" => c.qop = Some(v),
                "nc" => c.nc = Some(v),
                "cnonce" => c.cnonce = Some(v),
                "algorithm" => c.algorithm = Some(v),
                _ => {}
            }
        }
        for (name, v) in [
            ("username", &c.username),
            ("nonce", &c.nonce),
            ("uri", &c.uri),
            ("response", &c.response),
        ] {
            if v.is_empty() {
                return Err(DigestError::Missing(name));
            }
        }
        if let Some(a) = &c.algorithm
            && !a.eq_ignore_ascii_case("md5")
        {
            return Err(DigestError::Algorithm(a.clone()));
        }
        if let Some(q) = &c.qop
            && (!q.eq_ignore_ascii_case("auth") || c.nc.is_none() || c.cnonce.is_none())
        {
            return Err(DigestError::Qop(q.clone()));
        }
        Ok(c)
    }

    /// The response a holder of `password` would have computed for `method`.
    pub fn expected(&self, method: &str, password: &str) -> String {
        let ha1 = hex_md5(&[&self.username, &self.realm, password]);
        let ha2 = hex_md5(&[method, &self.uri]);
        match (&self.qop, &self.nc, &self.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) => hex_md5(&[&ha1, &self.nonce, nc, cnonce, qop, &ha2]),
            _ => hex_md5(&[&ha1, &self.nonce, &ha2]),
        }
    }

    /// True if the response proves `password` (compared in constant time).
    pub fn verify(&self, method: &str, password: &str) -> bool {
        let want = self.expected(method, password);
        want.len() == self.response.len()
            && want
                .bytes()
                .zip(self.response.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// A challenge we were sent (`WWW-Authenticate`), when we are the one registering (toward an
/// upper platform).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `qop="auth"` was offered.
    pub qop_auth: bool,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
    /// `stale=true`: only the nonce was old, the password was right.
    pub stale: bool,
}

impl Challenge {
    /// Reads a `WWW-Authenticate` (or `Proxy-Authenticate`) value.
    pub fn parse(header: &str) -> Result<Challenge, DigestError> {
        let rest = digest_params(header)?;
        let mut c = Challenge {
            realm: String::new(),
            nonce: String::new(),
            qop_auth: false,
            opaque: None,
            stale: false,
        };
        for (k, v) in params(rest)? {
            match k.as_str() {
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "qop" => c.qop_auth = v.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")),
                "opaque" => c.opaque = Some(v),
                "stale" => c.stale = v.eq_ignore_ascii_case("true"),
                "algorithm" if !v.eq_ignore_ascii_case("md5") => return Err(DigestError::Algorithm(v)),
                _ => {}
            }
        }
        if c.nonce.is_empty() {
            return Err(DigestError::Missing("nonce"));
        }
        Ok(c)
    }

    /// The `Authorization` value answering this challenge for `username` with `password`, for
    /// `method` on `uri`; `nc` counts the requests made with this nonce (from 1), `cnonce` is
    /// ours.
    pub fn authorize(&self, username: &str, password: &str, method: &str, uri: &str, nc: u32, cnonce: &str) -> String {
        let nc = format!("{nc:08x}");
        let mut c = Credentials {
            username: username.to_owned(),
            realm: self.realm.clone(),
            nonce: self.nonce.clone(),
            uri: uri.to_owned(),
            qop: self.qop_auth.then(|| "auth".to_owned()),
            nc: self.qop_auth.then(|| nc.clone()),
            cnonce: self.qop_auth.then(|| cnonce.to_owned()),
            algorithm: Some("MD5".to_owned()),
            ..Credentials::default()
        };
        c.response = c.expected(method, password);
        let mut v = format!(
            "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{}\", algorithm=MD5",
            c.realm, c.nonce, c.response
        );
        if self.qop_auth {
            v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        v
    }
}

/// The `WWW-Authenticate` value of a challenge.
pub fn challenge(realm: &str, nonce: &str, qop: bool) -> String {
    if qop {
        format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5")
    } else {
        format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's example, with qop.
    #[test]
    fn rfc2617_example() {
        let h = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = Credentials::parse(h).unwrap();
        assert!(c.verify("GET", "Circle Of Life"));
        assert!(!c.verify("GET", "circle of life"));
        assert!(!c.verify("POST", "Circle Of Life"));
    }

    #[test]
    fn without_qop_and_with_uri_as_sent() {
        let mut c = Credentials {
            username: "34020000001320000001".into(),
            realm: "3402000000".into(),
            nonce: "abc".into(),
            uri: "sip:127.0.0.1:5060".into(),
            ..Credentials::default()
        };
        c.response = c.expected("REGISTER", "12345678");
        let header = format!(
            "Digest username=\"{}\",realm=\"{}\",nonce=\"{}\",uri=\"{}\",response=\"{}\",algorithm=MD5",
            c.username, c.realm, c.nonce, c.uri, c.response
        );
        let parsed = Credentials::parse(&header).unwrap();
        assert!(parsed.verify("REGISTER", "12345678"));
        assert!(!parsed.verify("REGISTER", "1234567"));
    }

    #[test]
    fn a_challenge_we_answer_verifies_on_the_other_side() {
        for qop in [false, true] {
            let header = challenge("3402000000", "n0nce", qop);
            let c = Challenge::parse(&header).unwrap();
            assert_eq!((c.realm.as_str(), c.qop_auth, c.stale), ("3402000000", qop, false));
            let auth = c.authorize(
                "34020000002000000010",
                "pw",
                "REGISTER",
                "sip:34020000002000000099@3402000000",
                2,
                "c0ffee",
            );
            let back = Credentials::parse(&auth).unwrap();
            assert!(back.verify("REGISTER", "pw"), "{auth}");
            assert!(!back.verify("REGISTER", "wrong"));
            assert_eq!(back.nc.is_some(), qop);
        }
        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", opaque=\"o1\", stale=TRUE, qop=\"auth-int,auth\"")
            .unwrap();
        assert!(c.stale && c.qop_auth);
        assert!(
            c.authorize("u", "p", "REGISTER", "sip:x", 1, "c")
                .contains("opaque=\"o1\"")
        );
        assert!(Challenge::parse("Digest realm=\"r\"").is_err());
        assert!(Challenge::parse("Basic realm=\"r\"").is_err());
        assert!(Challenge::parse("Digest nonce=\"n\", algorithm=SHA-256").is_err());
    }

    #[test]
    fn hostile_headers_are_errors() {
        assert_eq!(Credentials::parse("Basic abc"), Err(DigestError::NotDigest));
        assert_eq!(
            Credentials::parse("Digest username=\"x"),
            Err(DigestError::Unterminated)
        );
        assert_eq!(
            Credentials::parse("Digest username=x, nonce=n, uri=u"),
            Err(DigestError::Missing("response"))
        );
        assert!(matches!(
            Credentials::parse("Digest username=x, nonce=n, uri=u, response=r, algorithm=SHA-256"),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            Credentials::parse("Digest username=x, nonce=n, uri=u, response=r, qop=auth"),
            Err(DigestError::Qop(_))
        ));
        assert!(matches!(
            Credentials::parse(&format!("Digest {}", "a".repeat(5000))),
            Err(DigestError::TooLong(_))
        ));
        for cut in 0..60 {
            let h = &r#"Digest username="a", realm="b", nonce="c", uri="d", response="e""#[..cut];
            let _ = Credentials::parse(h);
        }
        assert!(challenge("3402000000", "n1", false).contains("algorithm=MD5"));
    }
}
