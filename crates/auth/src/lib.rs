//! Who may do what: users (argon2id passwords), departments, roles, camera groups and grants,
//! the tokens that prove identity (sessions, scoped API tokens, signed media URLs), login
//! throttling, and the hash-chained audit log.
//!
//! [`Auth`] is what the API and the RTSP server hold. It keeps the compiled [`Policy`] of the
//! config's entries merged with `<data dir>/auth/directory.json` and swaps in a new one after
//! every change, whether made through the API, by `sharpeye user add`, or by another process
//! editing the file ([`Auth::reload_if_changed`]): changes take effect without a restart.
//! `docs/permissions.md` describes the model.

pub mod audit;
pub mod directory;
pub mod directory_merge;
mod media_token;
pub mod model;
pub mod policy;
pub mod throttle;

pub use directory::{
    DepartmentRecord, Directory, DirectoryError, DirectoryFile, GrantRecord, GroupRecord, Source, TokenRecord,
    UserRecord,
};
pub use media_token::{MediaAction, MediaSigner};
pub use model::{Action, Actions, Resource, Role, Subject};
pub use policy::{CameraRef, Decision, Policy, Principal, TokenScope, Via};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use media::WallTime;
use sha2::{Digest, Sha256};

/// A session token handed out at login.
#[derive(Clone, Debug)]
pub struct Session {
    /// The bearer token.
    pub token: String,
    /// When it stops working.
    pub expires_at: WallTime,
}

/// Why authentication or an administrative change failed. Messages never say whether a user
/// exists.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong user name or password (or a disabled user).
    #[error("wrong user name or password")]
    BadCredentials,
    /// Unknown, expired, tampered or revoked token.
    #[error("the token is invalid, expired or revoked; log in again")]
    BadToken,
    /// Too many failed logins from this address for this name.
    #[error("too many failed logins; try again in {} s", retry_after.as_secs().max(1))]
    Throttled {
        /// How long to wait.
        retry_after: Duration,
    },
    /// A password hash in the configuration is unusable.
    #[error("user {user}: password_hash is not a valid argon2id hash")]
    BadHash {
        /// The user.
        user: String,
    },
    /// The directory refused a change, or its file could not be read or written.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> String {
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    // 16 random bytes always encode to a valid salt.
    let Ok(salt) = SaltString::encode_b64(&raw) else {
        return String::new();
    };
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing with default parameters and a fresh salt cannot fail for any input.
        .unwrap_or_default()
}

/// True if `hash` is an argon2id PHC string we can verify against.
pub fn is_argon2id(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| h.algorithm == argon2::ARGON2ID_IDENT && h.salt.is_some() && h.hash.is_some())
}

/// The directory and its compiled policy, swapped whole on every change.
#[derive(Debug)]
pub struct Snapshot {
    /// Everything (config and file entries).
    pub directory: Directory,
    /// Compiled from it.
    pub policy: Policy,
    tokens: HashMap<String, TokenRecord>,
    hashes: HashMap<String, String>,
    stamp: directory::FileStamp,
}

/// Prefix of API tokens, which tells them apart from session tokens.
pub const API_TOKEN_PREFIX: &str = "sk_";

/// Users, permissions and tokens.
#[derive(Debug)]
pub struct Auth {
    config: Directory,
    file: Option<DirectoryFile>,
    snapshot: RwLock<Arc<Snapshot>>,
    cameras: RwLock<Arc<Vec<CameraRef>>>,
    sessions: Mutex<HashMap<String, (String, WallTime)>>,
    throttle: Mutex<throttle::Throttle>,
    ttl: Duration,
    media: MediaSigner,
    dummy_hash: String,
    /// Times the camera catalog was replaced (each rebuilds the policy).
    camera_rebuilds: std::sync::atomic::AtomicU64,
}

impl Auth {
    /// An authenticator for the `config` entries (all marked [`Source::Config`]) plus those of
    /// `file`, over `cameras`; sessions last `ttl`; media URLs are signed with `media`.
    pub fn new(
        mut config: Directory,
        file: Option<DirectoryFile>,
        cameras: Vec<CameraRef>,
        media: MediaSigner,
        ttl: Duration,
    ) -> Result<Auth, AuthError> {
        for u in &config.users {
            if !is_argon2id(&u.password_hash) {
                return Err(AuthError::BadHash { user: u.name.clone() });
            }
        }
        config.users.iter_mut().for_each(|u| u.source = Source::Config);
        config.departments.iter_mut().for_each(|d| d.source = Source::Config);
        config.groups.iter_mut().for_each(|g| g.source = Source::Config);
        config.grants.iter_mut().for_each(|g| g.source = Source::Config);
        let cameras = Arc::new(cameras);
        let snapshot = Self::compile(&config, file.as_ref(), &cameras)?;
        Ok(Auth {
            config,
            file,
            snapshot: RwLock::new(Arc::new(snapshot)),
            cameras: RwLock::new(cameras),
            sessions: Mutex::default(),
            throttle: Mutex::default(),
            ttl,
            media,
            dummy_hash: hash_password("sharpeye-timing-equaliser"),
            camera_rebuilds: Default::default(),
        })
    }

    fn compile(config: &Directory, file: Option<&DirectoryFile>, cameras: &[CameraRef]) -> Result<Snapshot, AuthError> {
        let (stamp, stored) = match file {
            Some(f) => {
                let stamp = f.stamp();
                (stamp, f.load()?)
            }
            None => (None, Directory::default()),
        };
        let directory = config.clone().merge(stored)?;
        Ok(Self::snapshot_of(directory, cameras, stamp))
    }

    fn snapshot_of(directory: Directory, cameras: &[CameraRef], stamp: directory::FileStamp) -> Snapshot {
        let policy = Policy::build(&directory, cameras);
        Snapshot {
            tokens: directory.tokens.iter().map(|t| (t.id.clone(), t.clone())).collect(),
            hashes: directory
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone()))
                .collect(),
            directory,
            policy,
            stamp,
        }
    }

    /// The current directory and policy.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn install(&self, s: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
    }

    /// Re-reads the directory file if another process (the CLI) changed it. Returns true if it
    /// did.
    pub fn reload_if_changed(&self) -> Result<bool, AuthError> {
        let Some(f) = &self.file else { return Ok(false) };
        if f.stamp() == self.snapshot().stamp {
            return Ok(false);
        }
        let cams = self.cameras.read().unwrap_or_else(|e| e.into_inner()).clone();
        self.install(Self::compile(&self.config, Some(f), &cams)?);
        Ok(true)
    }

    /// Replaces the camera catalog (cameras added or removed at run time).
    pub fn set_cameras(&self, cameras: Vec<CameraRef>) {
        let cams = Arc::new(cameras);
        *self.cameras.write().unwrap_or_else(|e| e.into_inner()) = cams.clone();
        let s = self.snapshot();
        self.install(Self::snapshot_of(s.directory.clone(), &cams, s.stamp));
        self.camera_rebuilds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times the camera catalog was replaced since start: a batch of cameras added
    /// at run time (a lower platform's thousands of channels) is one.
    pub fn camera_rebuilds(&self) -> u64 {
        self.camera_rebuilds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies an administrative change: to the file when there is one (under its lock, so
    /// the CLI and the server do not overwrite each other), in memory otherwise. Entries from
    /// the config cannot be changed.
    pub fn change<T>(&self, f: impl FnOnce(&mut Directory) -> Result<T, DirectoryError>) -> Result<T, AuthError> {
        let cams = self.cameras.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (directory, out, stamp) = match &self.file {
            Some(file) => {
                let (d, out) = file.update(&self.config, f)?;
                (d, out, file.stamp())
            }
            None => {
                let mut d = self.snapshot().directory.clone();
                let out = f(&mut d)?;
                d.validate()?;
                (d, out, None)
            }
        };
        self.install(Self::snapshot_of(directory, &cams, stamp));
        Ok(out)
    }

    fn principal(&self, s: &Snapshot, user: &str, via: Via) -> Result<Principal, AuthError> {
        match s.policy.user(user) {
            Some(u) if !u.disabled => Ok(Principal {
                user: user.to_owned(),
                role: u.role,
                department: u.department.clone(),
                via,
            }),
            _ => Err(AuthError::BadToken),
        }
    }

    /// Checks a user's password (RTSP Basic, login) without opening a session. Costs one
    /// argon2id verification whether or not the user exists, so timing does not reveal names.
    pub fn check_password(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        let s = self.snapshot();
        let hash = s.hashes.get(name).map_or(self.dummy_hash.as_str(), String::as_str);
        let parsed = PasswordHash::new(hash).map_err(|_| AuthError::BadCredentials)?;
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        if !ok || !s.hashes.contains_key(name) {
            return Err(AuthError::BadCredentials);
        }
        self.principal(&s, name, Via::Session)
            .map_err(|_| AuthError::BadCredentials)
    }

    /// Checks a password, subject to throttling per (`ip`, `name`) and per `ip`.
    pub fn check_password_throttled(
        &self,
        name: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(ip, name, Instant::now())
            .map_err(|retry_after| AuthError::Throttled { retry_after })?;
        let r = self.check_password(name, password);
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        match &r {
            Ok(_) => t.succeeded(ip, name),
            Err(_) => t.failed(ip, name, Instant::now()),
        }
        r
    }

    /// Checks a password (throttled) and opens a session.
    pub fn login(&self, name: &str, password: &str, ip: Option<IpAddr>) -> Result<(Session, Principal), AuthError> {
        let principal = self.check_password_throttled(name, password, ip)?;
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let now = WallTime::now();
        let expires_at = now.add_micros(self.ttl.as_micros() as i64);
        let mut sessions = self.sessions();
        sessions.retain(|_, (_, exp)| *exp > now);
        sessions.insert(token.clone(), (principal.user.clone(), expires_at));
        Ok((Session { token, expires_at }, principal))
    }

    /// The principal of a bearer token: a session token or an API token.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let s = self.snapshot();
        if let Some(rest) = token.strip_prefix(API_TOKEN_PREFIX) {
            let (id, secret) = rest.split_once('_').ok_or(AuthError::BadToken)?;
            let t = s.tokens.get(id).ok_or(AuthError::BadToken)?;
            let digest = hex(&Sha256::digest(secret.as_bytes()));
            // Both are hex SHA-256 digests of equal length; comparing digests rather than
            // secrets keeps the comparison's timing independent of the secret.
            if digest != t.secret_sha256 {
                return Err(AuthError::BadToken);
            }
            if t.expires_at
                .is_some_and(|e| e * 1_000_000 <= WallTime::now().as_micros())
            {
                return Err(AuthError::BadToken);
            }
            let scope = TokenScope {
                id: t.id.clone(),
                name: t.name.clone(),
                actions: t.actions,
                resources: t.resources.clone(),
            };
            return self.principal(&s, &t.owner, Via::ApiToken(Arc::new(scope)));
        }
        let user = match self.sessions().get(token) {
            Some((user, exp)) if *exp > WallTime::now() => user.clone(),
            _ => return Err(AuthError::BadToken),
        };
        self.principal(&s, &user, Via::Session)
    }

    /// Ends a session.
    pub fn logout(&self, token: &str) {
        self.sessions().remove(token);
    }

    /// Ends every session of `user`; returns how many.
    pub fn revoke_sessions(&self, user: &str) -> usize {
        let mut s = self.sessions();
        let before = s.len();
        s.retain(|_, (u, _)| u != user);
        before - s.len()
    }

    /// Creates an API token for `owner` limited to `actions` over `resources`. Returns the
    /// token string (shown once; only its hash is kept) and its record.
    pub fn create_token(
        &self,
        owner: &str,
        name: &str,
        actions: Actions,
        resources: Vec<Resource>,
        expires_at: Option<i64>,
    ) -> Result<(String, TokenRecord), AuthError> {
        let mut raw = [0u8; 9];
        rand::fill(&mut raw);
        let id = hex(&raw);
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let secret = URL_SAFE_NO_PAD.encode(secret);
        let record = TokenRecord {
            id: id.clone(),
            name: name.to_owned(),
            owner: owner.to_owned(),
            actions,
            resources,
            expires_at,
            secret_sha256: hex(&Sha256::digest(secret.as_bytes())),
            created_at: WallTime::now().as_micros() / 1_000_000,
        };
        directory::check_id("token name", name)?;
        if actions.is_empty() || record.resources.is_empty() {
            return Err(DirectoryError::Invalid("a token needs at least one action and one resource".into()).into());
        }
        let r = record.clone();
        self.change(move |d| {
            d.tokens.push(r);
            Ok(())
        })?;
        Ok((format!("{API_TOKEN_PREFIX}{id}_{secret}"), record))
    }

    /// Signs a media URL token for `p` to do `action` on `camera`.
    pub fn sign_media(&self, p: &Principal, camera: &str, action: MediaAction, ttl: Duration) -> (String, WallTime) {
        self.media.sign(camera, action, &p.user, ttl)
    }

    /// Checks a media URL token, and that its user still exists and is enabled. (The caller
    /// checks the grant with the returned principal, so a token stops working when the grant
    /// goes.)
    pub fn verify_media(&self, token: &str, camera: &str, action: MediaAction) -> Result<Principal, AuthError> {
        let user = self.media.verify(token, camera, action)?;
        self.principal(&self.snapshot(), &user, Via::MediaToken)
    }

    /// Shortcut: the policy's decision on `p` doing `action` (to `camera`).
    pub fn decide(&self, p: &Principal, action: Action, camera: Option<&str>) -> Decision {
        self.snapshot().policy.decide(p, action, camera)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, WallTime)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role, dept: Option<&str>) -> UserRecord {
        UserRecord {
            name: name.into(),
            role,
            department: dept.map(Into::into),
            password_hash: hash_password("correct horse"),
            disabled: false,
            source: Source::Config,
        }
    }

    fn auth(ttl: Duration, file: Option<DirectoryFile>) -> Auth {
        let config = Directory {
            users: vec![user("admin", Role::Admin, None)],
            ..Default::default()
        };
        let cams = vec![CameraRef {
            id: "c1".into(),
            org: "a/b".into(),
        }];
        Auth::new(config, file, cams, MediaSigner::with_key([1; 32]), ttl).unwrap()
    }

    #[test]
    fn login_verify_logout_revoke() {
        let a = auth(Duration::from_secs(60), None);
        let (s, _) = a.login("admin", "correct horse", None).unwrap();
        assert_eq!(a.verify(&s.token).unwrap().role, Role::Admin);
        a.logout(&s.token);
        assert!(matches!(a.verify(&s.token), Err(AuthError::BadToken)));
        let (s1, _) = a.login("admin", "correct horse", None).unwrap();
        let (s2, _) = a.login("admin", "correct horse", None).unwrap();
        assert_eq!(a.revoke_sessions("admin"), 2);
        assert!(a.verify(&s1.token).is_err() && a.verify(&s2.token).is_err());
    }

    #[test]
    fn wrong_password_and_unknown_user_look_the_same() {
        let a = auth(Duration::from_secs(60), None);
        let e1 = a.login("admin", "wrong", None).unwrap_err().to_string();
        let e2 = a.login("nobody", "correct horse", None).unwrap_err().to_string();
        assert_eq!(e1, e2);
        assert!(matches!(a.verify("made-up"), Err(AuthError::BadToken)));
    }

    #[test]
    fn tokens_expire() {
        let a = auth(Duration::from_millis(1), None);
        let (s, _) = a.login("admin", "correct horse", None).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(a.verify(&s.token), Err(AuthError::BadToken)));
    }

    #[test]
    fn logins_are_throttled() {
        let a = auth(Duration::from_secs(60), None);
        let ip = Some("192.0.2.1".parse().unwrap());
        for _ in 0..=throttle::FREE_PER_USER {
            assert!(matches!(a.login("admin", "guess", ip), Err(AuthError::BadCredentials)));
        }
        // Locked: even the right password is refused until the lock ends.
        let e = a.login("admin", "correct horse", ip).unwrap_err();
        assert!(matches!(e, AuthError::Throttled { .. }), "{e}");
        assert!(
            a.login("admin", "correct horse", Some("192.0.2.2".parse().unwrap()))
                .is_ok()
        );
    }

    #[test]
    fn bad_configured_hash_is_rejected() {
        let config = Directory {
            users: vec![UserRecord {
                password_hash: "$argon2id$garbage".into(),
                ..user("x", Role::Viewer, None)
            }],
            ..Default::default()
        };
        let err = Auth::new(
            config,
            None,
            vec![],
            MediaSigner::with_key([0; 32]),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::BadHash { user } if user == "x"));
    }

    #[test]
    fn changes_apply_at_once_persist_and_are_seen_by_other_processes() {
        let tmp = tempfile::tempdir().unwrap();
        let file = || DirectoryFile::new(&tmp.path().join("auth")).unwrap();
        let a = auth(Duration::from_secs(60), Some(file()));
        let b = auth(Duration::from_secs(60), Some(file()));
        a.change(|d| {
            d.users.push(UserRecord {
                source: Source::Api,
                ..user("vera", Role::Viewer, None)
            });
            Ok(())
        })
        .unwrap();
        let (s, p) = a.login("vera", "correct horse", None).unwrap();
        assert_eq!(p.role, Role::Viewer);
        assert_eq!(a.decide(&p, Action::Live, Some("c1")), Decision::Hidden);
        a.change(|d| {
            d.grants.push(GrantRecord {
                id: "g1".into(),
                subject: Subject::User("vera".into()),
                actions: Actions::of(&[Action::Live]),
                resource: Resource::Org("a".into()),
                source: Source::Api,
            });
            Ok(())
        })
        .unwrap();
        let p = a.verify(&s.token).unwrap();
        assert_eq!(a.decide(&p, Action::Live, Some("c1")), Decision::Allow);
        // The other "process" sees it after a reload, not before.
        assert!(b.login("vera", "correct horse", None).is_err());
        assert!(b.reload_if_changed().unwrap());
        assert!(!b.reload_if_changed().unwrap());
        assert!(b.login("vera", "correct horse", None).is_ok());
        // Disabling a user ends their sessions' use at once.
        a.change(|d| {
            d.users
                .iter_mut()
                .filter(|u| u.name == "vera")
                .for_each(|u| u.disabled = true);
            Ok(())
        })
        .unwrap();
        assert!(a.verify(&s.token).is_err());
        assert!(matches!(
            a.login("vera", "correct horse", None),
            Err(AuthError::BadCredentials)
        ));
    }

    #[test]
    fn api_tokens_are_scoped_revocable_and_expire() {
        let a = auth(Duration::from_secs(60), None);
        let (t, rec) = a
            .create_token(
                "admin",
                "grid",
                Actions::of(&[Action::Live]),
                vec![Resource::Camera("c1".into())],
                None,
            )
            .unwrap();
        let p = a.verify(&t).unwrap();
        assert_eq!(p.actor(), "token:grid@admin");
        assert_eq!(a.decide(&p, Action::Live, Some("c1")), Decision::Allow);
        assert_eq!(a.decide(&p, Action::Admin, None), Decision::Forbidden);
        let mut tampered = t.clone();
        tampered.pop();
        tampered.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(a.verify(&tampered).is_err());
        assert!(a.verify("sk_nothing").is_err() && a.verify("sk_").is_err());
        a.change(|d| {
            d.tokens.retain(|x| x.id != rec.id);
            Ok(())
        })
        .unwrap();
        assert!(a.verify(&t).is_err());
        let (old, _) = a
            .create_token(
                "admin",
                "old",
                Actions::of(&[Action::Live]),
                vec![Resource::All],
                Some(WallTime::now().as_micros() / 1_000_000 - 1),
            )
            .unwrap();
        assert!(a.verify(&old).is_err());
    }

    #[test]
    fn media_tokens_carry_their_user_and_die_with_it() {
        let a = auth(Duration::from_secs(60), None);
        let p = a.check_password("admin", "correct horse").unwrap();
        let (t, _) = a.sign_media(&p, "c1", MediaAction::Live, Duration::from_secs(30));
        let v = a.verify_media(&t, "c1", MediaAction::Live).unwrap();
        assert_eq!((v.user.as_str(), &v.via), ("admin", &Via::MediaToken));
        assert!(a.verify_media(&t, "c2", MediaAction::Live).is_err());
    }
}
