//! Everything the permission model reads from outside: subject, resource and action names
//! (config and admin API bodies), a directory document (the directory file), bearer tokens and
//! media tokens. Any bytes give a value or an error, never a panic; what parses prints back to
//! itself; a directory that validates compiles into a policy that answers.
#![no_main]
use std::sync::OnceLock;
use std::time::Duration;

use auth::{Action, Actions, Auth, CameraRef, Directory, MediaAction, MediaSigner, Policy, Resource, Subject};
use libfuzzer_sys::fuzz_target;

fn auth() -> &'static Auth {
    static A: OnceLock<Auth> = OnceLock::new();
    A.get_or_init(|| {
        Auth::new(
            Directory::default(),
            None,
            vec![],
            MediaSigner::with_key([3; 32]),
            Duration::from_secs(60),
        )
        .expect("an empty directory is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 5 {
        0 => {
            if let Ok(s) = Subject::parse(&text) {
                assert_eq!(Subject::parse(&s.to_string()), Ok(s));
            }
            if let Ok(r) = Resource::parse(&text) {
                assert_eq!(Resource::parse(&r.to_string()), Ok(r));
            }
        }
        1 => {
            let names: Vec<&str> = text.split(',').collect();
            if let Ok(a) = Actions::parse(&names) {
                assert_eq!(Actions::parse(&a.names()), Ok(a));
            }
        }
        2 => {
            if let Ok(d) = serde_json::from_slice::<Directory>(rest)
                && d.validate().is_ok()
            {
                let cams: Vec<CameraRef> = d
                    .groups
                    .iter()
                    .flat_map(|g| g.cameras.iter())
                    .map(|c| CameraRef {
                        id: c.clone(),
                        org: "a/b".into(),
                    })
                    .collect();
                let p = Policy::build(&d, &cams);
                for u in &d.users {
                    let who = auth::Principal {
                        user: u.name.clone(),
                        role: u.role,
                        department: u.department.clone(),
                        via: auth::Via::Session,
                    };
                    let _ = p.visible_cameras(&who);
                    for c in &cams {
                        let _ = p.decide(&who, Action::Live, Some(&c.id));
                    }
                }
            }
        }
        3 => assert!(auth().verify(&text).is_err()),
        _ => assert!(auth().verify_media(&text, "cam", MediaAction::Live).is_err()),
    }
});
