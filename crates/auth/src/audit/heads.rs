//! Signed audit heads: a node's signature over its log's last entry (sequence number and hash),
//! made at least every minute and at shutdown, kept by the node and sent up to the level above.
//!
//! The hash chain alone cannot show that entries were cut off the end: a shorter chain still
//! verifies. A head signed when the log was longer can: [`check_log`] finds the entry it names
//! missing or different, and says where. An upper level that keeps the heads of the nodes below
//! it holds that evidence out of their reach.
//!
//! Heads are stored one JSON object a line (`heads.jsonl`).

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{AuditError, io_err};

/// One signed head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// The node whose log it is.
    pub node: String,
    /// The last entry's sequence number (0: an empty log).
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// When it was signed (RFC 3339).
    pub at: String,
    /// The node's public key (base64 Ed25519).
    pub key: String,
    /// The signature (base64) over [`SignedHead::message`].
    pub sig: String,
}

/// What signs heads: the node's key.
pub trait HeadSigner {
    /// The public key, base64.
    fn public_key(&self) -> String;
    /// A base64 Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> String;
}

impl SignedHead {
    /// The bytes signed: a fixed label and the fields, one a line, so no field can pass for
    /// another.
    pub fn message(node: &str, seq: u64, hash: &str, at: &str) -> String {
        format!("sharpeye audit head v1\n{node}\n{seq}\n{hash}\n{at}\n")
    }

    /// Signs the head `(seq, hash)` of `node`'s log with `signer`, as of `at`.
    pub fn sign(node: &str, seq: u64, hash: &str, at: &str, signer: &dyn HeadSigner) -> SignedHead {
        SignedHead {
            node: node.to_owned(),
            seq,
            hash: hash.to_owned(),
            at: at.to_owned(),
            key: signer.public_key(),
            sig: signer.sign(Self::message(node, seq, hash, at).as_bytes()),
        }
    }

    /// Checks the signature against the head's own key (and, if given, that it is `trusted`).
    pub fn verify(&self, trusted: Option<&str>) -> Result<(), String> {
        if let Some(t) = trusted
            && t != self.key
        {
            return Err(format!("head {} of {} is signed by another key", self.seq, self.node));
        }
        let key: [u8; 32] = B64
            .decode(&self.key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "head {} of {}: the key is not an Ed25519 public key",
                    self.seq, self.node
                )
            })?;
        let sig: [u8; 64] = B64
            .decode(&self.sig)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("head {} of {}: the signature is malformed", self.seq, self.node))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| format!("head {} of {}: the key is not valid", self.seq, self.node))?;
        key.verify(
            Self::message(&self.node, self.seq, &self.hash, &self.at).as_bytes(),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| {
            format!(
                "head {} of {} signed at {}: the signature does not match",
                self.seq, self.node, self.at
            )
        })
    }
}

/// Appends `head` to the heads file at `path` (created with its directory), durably.
pub fn append(path: &Path, head: &SignedHead) -> Result<(), AuditError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "creating the directory", e))?;
    }
    let mut line = serde_json::to_vec(head).unwrap_or_default();
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err(path, "opening", e))?;
    f.write_all(&line).map_err(|e| io_err(path, "write", e))?;
    f.sync_data().map_err(|e| io_err(path, "fdatasync", e))
}

/// The heads in the file at `path` (none if it does not exist); unreadable lines are skipped.
pub fn read(path: &Path) -> Vec<SignedHead> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The last head in `path` (the one with the highest sequence number).
pub fn last(path: &Path) -> Option<SignedHead> {
    read(path).into_iter().max_by_key(|h| h.seq)
}

/// Checks the log in `dir` against `heads` of node `node`: each head's signature (all by one
/// key), and the entry each names present with that hash. Returns how many heads were checked,
/// or what does not hold, naming the entry.
pub fn check_log(dir: &Path, node: &str, heads: &[SignedHead]) -> Result<usize, String> {
    let heads: Vec<&SignedHead> = heads.iter().filter(|h| h.node == node).collect();
    let Some(first) = heads.first() else { return Ok(0) };
    let key = first.key.clone();
    let mut wanted: std::collections::BTreeMap<u64, &SignedHead> = std::collections::BTreeMap::new();
    for h in &heads {
        h.verify(Some(&key))?;
        wanted.insert(h.seq, h);
    }
    // One pass over the log: the hash of every entry a head names.
    let mut found: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let mut last = 0;
    let (entries, _) = super::query(dir, &super::Filter::default(), usize::MAX).map_err(|e| e.to_string())?;
    for r in entries {
        last = last.max(r.seq);
        if wanted.contains_key(&r.seq) {
            found.insert(r.seq, r.hash);
        }
    }
    for (seq, h) in &wanted {
        if *seq == 0 {
            continue;
        }
        match found.get(seq) {
            None if *seq > last => {
                return Err(format!(
                    "entries {}..{seq} are missing: a head {node} signed at {} names entry {seq}, and the log ends at entry {last} (cut off after it)",
                    last + 1,
                    h.at
                ));
            }
            None => {
                return Err(format!(
                    "entry {seq}, named by a head {node} signed at {}, is missing",
                    h.at
                ));
            }
            Some(hash) if *hash != h.hash => {
                return Err(format!(
                    "entry {seq} was rewritten: its hash differs from the one {node} signed at {}",
                    h.at
                ));
            }
            Some(_) => {}
        }
    }
    Ok(wanted.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::audit::{AuditConfig, AuditLog, Event};

    struct Key(SigningKey);

    impl HeadSigner for Key {
        fn public_key(&self) -> String {
            B64.encode(self.0.verifying_key().as_bytes())
        }
        fn sign(&self, m: &[u8]) -> String {
            B64.encode(self.0.sign(m).to_bytes())
        }
    }

    fn ev(i: usize) -> Event {
        Event {
            actor: format!("u{i}"),
            ip: None,
            action: "login".into(),
            outcome: "ok".into(),
            camera: None,
            target: None,
            reason: None,
            detail: serde_json::Value::Null,
            on_behalf_of: None,
        }
    }

    #[test]
    fn a_cut_or_rewritten_tail_is_found_and_named() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("audit");
        let log = Arc::new(AuditLog::open(&dir, AuditConfig::default()).unwrap());
        let key = Key(SigningKey::from_bytes(&[7u8; 32]));
        let mut heads = Vec::new();
        for i in 0..30 {
            log.append_blocking(ev(i)).unwrap();
            if i % 10 == 9 {
                let (seq, hash) = log.head();
                heads.push(SignedHead::sign("community", seq, &hash, &format!("t{i}"), &key));
            }
        }
        drop(log);
        assert_eq!(check_log(&dir, "community", &heads), Ok(3));
        // Heads of another node are not this log's.
        assert_eq!(check_log(&dir, "street", &heads), Ok(0));
        // A forged head, or one by another key, is refused.
        let mut forged = heads.clone();
        forged[1].seq += 1;
        assert!(check_log(&dir, "community", &forged).unwrap_err().contains("signature"));
        let mut other = heads.clone();
        other.push(SignedHead::sign(
            "community",
            5,
            "x",
            "t",
            &Key(SigningKey::from_bytes(&[8u8; 32])),
        ));
        assert!(
            check_log(&dir, "community", &other)
                .unwrap_err()
                .contains("another key")
        );
        // Cut the last 10 entries: the chain still verifies, the heads do not.
        let path = crate::audit::files(&dir).unwrap()[0].1.clone();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, lines[..20].join("\n") + "\n").unwrap();
        assert!(crate::audit::verify(&dir).is_ok());
        let e = check_log(&dir, "community", &heads).unwrap_err();
        assert!(e.starts_with("entries 21..30 are missing"), "{e}");
        assert!(e.contains("ends at entry 20"), "{e}");
        // The file of heads round-trips.
        let f = d.path().join("heads.jsonl");
        for h in &heads {
            append(&f, h).unwrap();
        }
        assert_eq!(read(&f), heads);
        assert_eq!(last(&f).unwrap().seq, 30);
    }
}
