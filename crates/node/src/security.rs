//! Who may do what on the node, and the record that they did: users, grants and tokens (from the
//! config and the directory file), the media-token key, and the hash-chained audit log.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::NodeError;
use crate::config::{Config, Secret};
use crate::error::StepContext;

/// The node's authenticator and audit log.
pub struct Security {
    /// Users, sessions, tokens and grants.
    pub auth: Arc<auth::Auth>,
    /// The audit log.
    pub audit: Arc<auth::audit::AuditLog>,
    /// The node's signing key (exports, audit heads).
    pub key: Arc<NodeSigner>,
    /// Where this node's signed audit heads are kept.
    pub heads: std::path::PathBuf,
}

/// The node's key as the audit log's head signer.
pub struct NodeSigner(pub store::export::NodeKey);

impl auth::audit::heads::HeadSigner for NodeSigner {
    fn public_key(&self) -> String {
        self.0.public_key()
    }

    fn sign(&self, message: &[u8]) -> String {
        self.0.sign(message)
    }
}

/// The config's users, departments, groups and grants, with plain passwords hashed.
pub fn directory(config: &Config) -> auth::Directory {
    config.directory(|u| match &u.secret {
        Secret::Plain(p) => auth::hash_password(p),
        Secret::Hash(h) => h.clone(),
    })
}

impl Security {
    /// Loads the media-token key, the audit log and the users of `config` and of the directory
    /// file in the first data directory; the permission catalog starts with the configured
    /// cameras and grows as cameras are added at run time.
    pub fn open(config: &Config) -> Result<Security, NodeError> {
        let first = &config.server.data_dirs[0];
        let key_path = first.join("media.key");
        let media = auth::MediaSigner::load_or_create(&key_path)
            .step(|| format!("loading the media-token key {}", key_path.display()))?;
        let audit_dir = first.join("audit");
        let audit = Arc::new(
            auth::audit::AuditLog::open(&audit_dir, auth::audit::AuditConfig::default())
                .step(|| format!("opening the audit log {}", audit_dir.display()))?,
        );
        let key_file = first.join("node.key");
        let key = store::export::NodeKey::load_or_create(&key_file)
            .step(|| format!("loading the node key {}", key_file.display()))?;
        let file =
            auth::DirectoryFile::new(&first.join("auth")).step(|| "opening the users and grants directory".into())?;
        let auth = Arc::new(
            auth::Auth::new(
                directory(config),
                Some(file),
                config
                    .cameras
                    .iter()
                    .map(|c| auth::CameraRef {
                        id: c.id.clone(),
                        org: c.org.clone(),
                    })
                    .collect(),
                media,
                config.auth.session_ttl,
            )
            .step(|| "loading users, departments, groups and grants".into())?,
        );
        Ok(Security {
            auth,
            audit,
            key: Arc::new(NodeSigner(key)),
            heads: audit_dir.join("heads.jsonl"),
        })
    }

    /// Signs the audit log's head if it moved since the last signed one; returns it if it did.
    pub fn sign_head(&self, node: &str) -> Option<auth::audit::heads::SignedHead> {
        let (seq, hash) = self.audit.head();
        if auth::audit::heads::last(&self.heads).is_some_and(|h| h.seq == seq && h.hash == hash && h.node == node) {
            return None;
        }
        let head = auth::audit::heads::SignedHead::sign(
            node,
            seq,
            &hash,
            &media::WallTime::now().to_rfc3339(),
            self.key.as_ref(),
        );
        match auth::audit::heads::append(&self.heads, &head) {
            Ok(()) => Some(head),
            Err(e) => {
                warn!("audit head not kept: {e}");
                None
            }
        }
    }

    /// Signs the head every `every` (when it moved), telling listeners (an upper level) with an
    /// `audit.head` event.
    pub fn spawn_head_signer(
        self: &Arc<Self>,
        node: String,
        every: Duration,
        events: Arc<api::AppState>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let s = me.clone();
                let n = node.clone();
                let signed = tokio::task::spawn_blocking(move || s.sign_head(&n))
                    .await
                    .ok()
                    .flatten();
                if let Some(h) = signed {
                    events.events.publish(api::events::NodeEvent {
                        kind: "audit.head",
                        camera: None,
                        data: serde_json::json!({ "node": h.node, "seq": h.seq, "at": h.at }),
                    });
                }
            }
        })
    }

    /// Picks up changes another process (`sharpeye user add`, an edit) makes to the directory
    /// file within a second, auditing each as `directory.reload`.
    pub fn spawn_reload(&self) -> tokio::task::JoinHandle<()> {
        let auth = self.auth.clone();
        let audit = self.audit.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let before = auth.snapshot();
                match auth.reload_if_changed() {
                    Ok(true) => {
                        info!("users and grants reloaded from the directory file");
                        audit.record(reload_event(&before.directory, &auth.snapshot().directory));
                    }
                    Ok(false) => {}
                    Err(e) => warn!("users and grants: {e}; keeping the previous ones"),
                }
            }
        })
    }
}

/// The audit entry for a change another process made to the directory file: what was added
/// and removed.
pub fn reload_event(old: &auth::Directory, new: &auth::Directory) -> auth::audit::Event {
    fn diff<'a>(old: impl Iterator<Item = &'a str>, new: impl Iterator<Item = &'a str>) -> serde_json::Value {
        let old: std::collections::BTreeSet<&str> = old.collect();
        let new: std::collections::BTreeSet<&str> = new.collect();
        serde_json::json!({
            "added": new.difference(&old).collect::<Vec<_>>(),
            "removed": old.difference(&new).collect::<Vec<_>>(),
        })
    }
    auth::audit::Event {
        actor: "-".into(),
        ip: None,
        action: "directory.reload".into(),
        outcome: "ok".into(),
        camera: None,
        target: None,
        reason: Some("the directory file was changed by another process".into()),
        detail: serde_json::json!({
            "users": diff(old.users.iter().map(|u| u.name.as_str()), new.users.iter().map(|u| u.name.as_str())),
            "departments": diff(old.departments.iter().map(|d| d.id.as_str()), new.departments.iter().map(|d| d.id.as_str())),
            "groups": diff(old.groups.iter().map(|g| g.id.as_str()), new.groups.iter().map(|g| g.id.as_str())),
            "grants": diff(old.grants.iter().map(|g| g.id.as_str()), new.grants.iter().map(|g| g.id.as_str())),
            "tokens": diff(old.tokens.iter().map(|t| t.id.as_str()), new.tokens.iter().map(|t| t.id.as_str())),
        }),
        on_behalf_of: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> auth::UserRecord {
        auth::UserRecord {
            name: name.into(),
            role: auth::Role::Viewer,
            department: None,
            password_hash: String::new(),
            disabled: false,
            source: auth::Source::Api,
        }
    }

    #[test]
    fn a_reload_names_what_was_added_and_removed() {
        let old = auth::Directory {
            users: vec![user("amy"), user("bob")],
            ..auth::Directory::default()
        };
        let new = auth::Directory {
            users: vec![user("bob"), user("cai")],
            ..auth::Directory::default()
        };
        let e = reload_event(&old, &new);
        assert_eq!(e.action, "directory.reload");
        assert_eq!(e.detail["users"]["added"], serde_json::json!(["cai"]));
        assert_eq!(e.detail["users"]["removed"], serde_json::json!(["amy"]));
        assert_eq!(e.detail["grants"]["added"], serde_json::json!([]));
    }
}
