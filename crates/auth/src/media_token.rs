//! Short-lived signed media URLs: a token bound to one camera and one action, checked without
//! any session state. Used where a client cannot send an `Authorization` header on every
//! request: HLS players (Safari's native player, hls.js segment loads), ffmpeg, video-wall
//! decoders and upper-level platforms.
//!
//! Format: `v1.<expiry unix seconds>.<action>.<base64url HMAC-SHA256(key, "v1|camera|action|expiry")>`.
//! The key is 32 random bytes kept in the data directory (mode 0600), so tokens survive
//! restarts and a stolen token opens one camera for one purpose until it expires.

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

    fn mac(&self, camera: &str, action: MediaAction, exp: i64) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(format!("v1|{camera}|{}|{exp}", action.as_str()).as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// A token for `action` on `camera`, valid for `ttl`; returns it with its expiry.
    pub fn sign(&self, camera: &str, action: MediaAction, ttl: Duration) -> (String, WallTime) {
        let exp = WallTime::now().as_micros() / 1_000_000 + ttl.as_secs() as i64;
        let sig = URL_SAFE_NO_PAD.encode(self.mac(camera, action, exp));
        (
            format!("v1.{exp}.{}.{sig}", action.as_str()),
            WallTime::from_micros(exp * 1_000_000),
        )
    }

    /// Checks that `token` allows `action` on `camera` now.
    pub fn verify(&self, token: &str, camera: &str, action: MediaAction) -> Result<(), AuthError> {
        let mut parts = token.splitn(4, '.');
        let (Some("v1"), Some(exp), Some(act), Some(sig)) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::BadToken);
        };
        let exp: i64 = exp.parse().map_err(|_| AuthError::BadToken)?;
        if act != action.as_str() || exp * 1_000_000 < WallTime::now().as_micros() {
            return Err(AuthError::BadToken);
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| AuthError::BadToken)?;
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(format!("v1|{camera}|{}|{exp}", action.as_str()).as_bytes());
        // Constant-time comparison.
        m.verify_slice(&sig).map_err(|_| AuthError::BadToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_to_camera_action_and_time() {
        let s = MediaSigner::with_key([7; 32]);
        let (t, exp) = s.sign("cam1", MediaAction::Playback, Duration::from_secs(60));
        assert!(exp > WallTime::now());
        assert!(s.verify(&t, "cam1", MediaAction::Playback).is_ok());
        assert!(s.verify(&t, "cam2", MediaAction::Playback).is_err());
        assert!(s.verify(&t, "cam1", MediaAction::Live).is_err());
        let forged = t.replace(".playback.", ".live.");
        assert!(s.verify(&forged, "cam1", MediaAction::Live).is_err());
        let other = MediaSigner::with_key([8; 32]);
        assert!(other.verify(&t, "cam1", MediaAction::Playback).is_err());
        let (old, _) = s.sign("cam1", MediaAction::Playback, Duration::ZERO);
        let expired = old.replacen(&old.split('.').nth(1).unwrap().to_string(), "1000", 1);
        assert!(s.verify(&expired, "cam1", MediaAction::Playback).is_err());
        for junk in [
            "",
            "v1",
            "v1.x.playback.y",
            "v2.1.playback.AAAA",
            "v1.99999999999.playback.!!",
        ] {
            assert!(s.verify(junk, "cam1", MediaAction::Playback).is_err());
        }
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("media.key");
        let a = MediaSigner::load_or_create(&p).unwrap();
        let (t, _) = a.sign("c", MediaAction::Export, Duration::from_secs(5));
        let b = MediaSigner::load_or_create(&p).unwrap();
        assert!(b.verify(&t, "c", MediaAction::Export).is_ok());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&p, b"short").unwrap();
        assert!(MediaSigner::load_or_create(&p).is_err());
    }
}
