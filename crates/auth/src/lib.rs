//! Users, passwords (argon2id) and session tokens.
//!
//! This is the first slice of the `auth` crate of DESIGN.md: login and bearer tokens for the
//! API. Departments, grants over camera groups and org subtrees, scoped API tokens, signed media
//! URLs and the audit log build on it.

mod media_token;

pub use media_token::{MediaAction, MediaSigner};

use std::collections::HashMap;

use std::sync::Mutex;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use media::WallTime;

/// A role: what a user may do (the permission model comes with the permissions work).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Watches live video and playback.
    Viewer,
    /// Operates cameras (PTZ) in addition.
    Operator,
    /// Runs video walls and incidents.
    Dispatcher,
    /// Reads the audit log.
    Auditor,
    /// Administers everything.
    Admin,
}

impl Role {
    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "dispatcher" => Role::Dispatcher,
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Dispatcher => "dispatcher",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// A user who can log in.
#[derive(Clone, Debug)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Department.
    pub department: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// Who is calling, once a token is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// User name.
    pub user: String,
    /// Role.
    pub role: Role,
}

/// A session token handed out at login.
#[derive(Clone, Debug)]
pub struct Session {
    /// The bearer token.
    pub token: String,
    /// When it stops working.
    pub expires_at: WallTime,
}

/// Why authentication failed. Messages never say whether the user exists.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Wrong user name or password.
    #[error("wrong user name or password")]
    BadCredentials,
    /// Unknown, expired or revoked token.
    #[error("the token is invalid or has expired; log in again")]
    BadToken,
    /// A password hash in the configuration is unusable.
    #[error("user {user}: password_hash is not a valid argon2id hash")]
    BadHash {
        /// The user.
        user: String,
    },
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

/// The users and their live sessions.
#[derive(Debug)]
pub struct Auth {
    users: HashMap<String, User>,
    sessions: Mutex<HashMap<String, (Principal, WallTime)>>,
    ttl: Duration,
    dummy_hash: String,
}

impl Auth {
    /// An authenticator for `users`; sessions last `ttl`.
    pub fn new(users: Vec<User>, ttl: Duration) -> Result<Auth, AuthError> {
        for u in &users {
            let usable = PasswordHash::new(&u.password_hash)
                .is_ok_and(|h| h.algorithm == argon2::ARGON2ID_IDENT && h.salt.is_some() && h.hash.is_some());
            if !usable {
                return Err(AuthError::BadHash { user: u.name.clone() });
            }
        }
        Ok(Auth {
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            sessions: Mutex::new(HashMap::new()),
            ttl,
            dummy_hash: hash_password("sharpeye-timing-equaliser"),
        })
    }

    /// Checks a user's password (RTSP Basic, login) without opening a session.
    pub fn check_password(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        let user = self.users.get(name);
        // Verify against a dummy hash for unknown users so that timing does not reveal names.
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let parsed = PasswordHash::new(hash).map_err(|_| AuthError::BadCredentials)?;
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        match (user, ok) {
            (Some(u), true) => Ok(Principal {
                user: u.name.clone(),
                role: u.role,
            }),
            _ => Err(AuthError::BadCredentials),
        }
    }

    /// Checks a user's password and opens a session.
    pub fn login(&self, name: &str, password: &str) -> Result<Session, AuthError> {
        let principal = self.check_password(name, password)?;
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let expires_at = WallTime::now().add_micros(self.ttl.as_micros() as i64);
        let mut sessions = self.lock();
        let now = WallTime::now();
        sessions.retain(|_, (_, exp)| *exp > now);
        sessions.insert(token.clone(), (principal, expires_at));
        Ok(Session { token, expires_at })
    }

    /// The principal of a bearer token.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let sessions = self.lock();
        match sessions.get(token) {
            Some((p, exp)) if *exp > WallTime::now() => Ok(p.clone()),
            _ => Err(AuthError::BadToken),
        }
    }

    /// Ends a session.
    pub fn logout(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Principal, WallTime)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(ttl: Duration) -> Auth {
        Auth::new(
            vec![User {
                name: "admin".into(),
                role: Role::Admin,
                department: None,
                password_hash: hash_password("correct horse"),
            }],
            ttl,
        )
        .unwrap()
    }

    #[test]
    fn login_verify_logout() {
        let a = auth(Duration::from_secs(60));
        let s = a.login("admin", "correct horse").unwrap();
        assert_eq!(a.verify(&s.token).unwrap().role, Role::Admin);
        a.logout(&s.token);
        assert_eq!(a.verify(&s.token), Err(AuthError::BadToken));
    }

    #[test]
    fn wrong_password_and_unknown_user_look_the_same() {
        let a = auth(Duration::from_secs(60));
        assert_eq!(a.login("admin", "wrong").unwrap_err(), AuthError::BadCredentials);
        assert_eq!(
            a.login("nobody", "correct horse").unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(a.verify("made-up"), Err(AuthError::BadToken));
    }

    #[test]
    fn tokens_expire() {
        let a = auth(Duration::from_millis(1));
        let s = a.login("admin", "correct horse").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(a.verify(&s.token), Err(AuthError::BadToken));
    }

    #[test]
    fn bad_configured_hash_is_rejected() {
        let err = Auth::new(
            vec![User {
                name: "x".into(),
                role: Role::Viewer,
                department: None,
                password_hash: "$argon2id$garbage".into(),
            }],
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(err, AuthError::BadHash { user: "x".into() });
    }
}
