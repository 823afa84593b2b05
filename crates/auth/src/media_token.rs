//! Short-lived signed media URLs: a token bound to one camera and one action, checked without
//! any session state. Used where a client cannot send an `Authorization` header on every
//! request: HLS players (Safari's native player, hls.js segment loads), ffmpeg, video-wall
//! decoders and upper-level platforms.
//!
//! Format: `v2.<expiry unix seconds>.<action>.<base64url user>.<base64url
//! HMAC-SHA256(key, "v2|camera|action|expiry|user")>`. The user is in the token so that what is
//! watched with it is audited under their name, and so that the grant is checked again at
//! use: a token stops working as soon as its user loses the grant or is disabled. The key is 32
//! random bytes kept in the data directory (mode 0600), so tokens survive restarts and a stolen
//! token opens one camera for one purpose until it expires.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use media::WallTime;
use sha2::Sha256;

use crate::AuthError;

/// What a media token allows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MediaAction {
    /// Live view.
    Live,
    /// Playback of recordings (MP4, HLS).
    Playback,
    /// Downloading an export package.
    Export,
}

impl MediaAction {
    /// Its name in tokens and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaAction::Live => "live",
            MediaAction::Playback => "playback",
            MediaAction::Export => "export",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(MediaAction::Live),
            "playback" => Some(MediaAction::Playback),
            "export" => Some(MediaAction::Export),
            _ => None,
        }
    }
}

/// Signs and checks media tokens with the node's secret.
pub struct MediaSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for MediaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaSigner(..)")
    }
}

impl MediaSigner {
    /// A signer with the given key (tests).
    pub fn with_key(key: [u8; 32]) -> Self {
        MediaSigner { key }
    }

    /// Loads the key at `path`, creating it (32 random bytes, mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a 32-byte key", path.display()),
                    )
                })?;
                Ok(MediaSigner { key })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                f.write_all(&key)?;
                f.sync_all()?;
                Ok(MediaSigner { key })
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, camera: &str, action: MediaAction, exp: i64, user: &str) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(format!("v2|{camera}|{}|{exp}|{user}", action.as_str()).as_bytes());
        m
    }

    /// A token for `user` to do `action` on `camera`, valid for `ttl`; returns it with its
    /// expiry.
    pub fn sign(&self, camera: &str, action: MediaAction, user: &str, ttl: Duration) -> (String, WallTime) {
        let exp = WallTime::now().as_micros() / 1_000_000 + ttl.as_secs() as i64;
        let sig = URL_SAFE_NO_PAD.encode(self.mac(camera, action, exp, user).finalize().into_bytes());
        (
            format!("v2.{exp}.{}.{}.{sig}", action.as_str(), URL_SAFE_NO_PAD.encode(user)),
            WallTime::from_micros(exp * 1_000_000),
        )
    }

    /// Checks that `token` allows `action` on `camera` now; returns the user it was issued to.
    pub fn verify(&self, token: &str, camera: &str, action: MediaAction) -> Result<String, AuthError> {
        let mut parts = token.splitn(5, '.');
        let (Some("v2"), Some(exp), Some(act), Some(user), Some(sig)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::BadToken);
        };
        let exp: i64 = exp.parse().map_err(|_| AuthError::BadToken)?;
        if act != action.as_str() || exp.saturating_mul(1_000_000) < WallTime::now().as_micros() {
            return Err(AuthError::BadToken);
        }
        let user = URL_SAFE_NO_PAD
            .decode(user)
            .ok()
            .and_then(|u| String::from_utf8(u).ok())
            .ok_or(AuthError::BadToken)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| AuthError::BadToken)?;
        // Constant-time comparison.
        self.mac(camera, action, exp, &user)
            .verify_slice(&sig)
            .map_err(|_| AuthError::BadToken)?;
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_to_camera_action_and_time() {
        let s = MediaSigner::with_key([7; 32]);
        let (t, exp) = s.sign("cam1", MediaAction::Playback, "alice", Duration::from_secs(60));
        assert!(exp > WallTime::now());
        assert_eq!(s.verify(&t, "cam1", MediaAction::Playback).unwrap(), "alice");
        let parts: Vec<&str> = t.split('.').collect();
        let as_bob = format!(
            "v2.{}.{}.{}.{}",
            parts[1],
            parts[2],
            URL_SAFE_NO_PAD.encode("bob"),
            parts[4]
        );
        assert!(s.verify(&as_bob, "cam1", MediaAction::Playback).is_err());
        assert!(s.verify(&t, "cam2", MediaAction::Playback).is_err());
        assert!(s.verify(&t, "cam1", MediaAction::Live).is_err());
        let forged = t.replace(".playback.", ".live.");
        assert!(s.verify(&forged, "cam1", MediaAction::Live).is_err());
        let other = MediaSigner::with_key([8; 32]);
        assert!(other.verify(&t, "cam1", MediaAction::Playback).is_err());
        let (old, _) = s.sign("cam1", MediaAction::Playback, "alice", Duration::ZERO);
        let expired = old.replacen(&old.split('.').nth(1).unwrap().to_string(), "1000", 1);
        assert!(s.verify(&expired, "cam1", MediaAction::Playback).is_err());
        for junk in [
            "",
            "v1",
            "v2.x.playback.YQ.y",
            "v1.1.playback.AAAA",
            "v2.99999999999.playback.YQ.!!",
            "v2.99999999999999999.playback.YQ.AAAA",
            "v2.99999999999.playback.!!.AAAA",
        ] {
            assert!(s.verify(junk, "cam1", MediaAction::Playback).is_err());
        }
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("media.key");
        let a = MediaSigner::load_or_create(&p).unwrap();
        let (t, _) = a.sign("c", MediaAction::Export, "u", Duration::from_secs(5));
        let b = MediaSigner::load_or_create(&p).unwrap();
        assert!(b.verify(&t, "c", MediaAction::Export).is_ok());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&p, b"short").unwrap();
        assert!(MediaSigner::load_or_create(&p).is_err());
    }
}
