//! RTSP re-serve access through the API's one media policy: the same credentials (a live media
//! token, or a user's name and password, throttled like logins), the same grants, the same
//! audit entries as `live.mp4` and WHEP.

use std::net::SocketAddr;
use std::sync::Arc;

use api::AppState;
use api::access::{MediaCredentials, authorize_media};
use auth::MediaAction;
use futures::future::BoxFuture;
use media::StreamId;

/// [`rtspd::Authorize`] for the node's API state.
pub struct RtspAuth(pub Arc<AppState>);

impl rtspd::Authorize for RtspAuth {
    fn authorize(
        &self,
        stream: &StreamId,
        token: Option<&str>,
        basic: Option<(&str, &str)>,
        peer: SocketAddr,
    ) -> Option<String> {
        let credentials = match (token, basic) {
            (Some(t), _) => MediaCredentials::MediaToken(t),
            (None, Some((user, password))) => MediaCredentials::Password { user, password },
            (None, None) => return None,
        };
        authorize_media(
            &self.0,
            credentials,
            Some(peer.ip()),
            None,
            stream.camera(),
            MediaAction::Live,
            "rtsp",
        )
        .ok()
        .map(|caller| caller.who.actor())
    }

    fn admit(&self, stream: &StreamId, who: &str) -> Result<StreamId, String> {
        let Some(remote) = &self.0.remote else {
            return Ok(stream.clone());
        };
        let user = format!("{who}@{}", self.0.node.id);
        match remote.admit_live(stream.camera(), stream.kind(), &user) {
            None => Ok(stream.clone()),
            Some(Ok(kind)) => Ok(StreamId::new(stream.camera(), kind)),
            Some(Err(e)) => Err(e.to_string()),
        }
    }

    fn playing(&self, stream: &StreamId, who: &str, peer: SocketAddr) -> BoxFuture<'static, Option<Box<dyn Send>>> {
        let (state, stream, who) = (self.0.clone(), stream.clone(), who.to_owned());
        Box::pin(async move {
            api::audit::start_viewing(&state, &who, Some(peer.ip()), None, &stream, "rtsp")
                .await
                .ok()
                .map(|v| Box::new(v) as Box<dyn Send>)
        })
    }
}
