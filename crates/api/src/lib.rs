//! The HTTP API (axum), mounted by the binary.
//!
//! Every `/api/v1` endpoint except `login` and the OpenAPI document requires a token, and
//! each checks the caller's grant for what it does (see [`ENDPOINTS`]); errors are JSON
//! `{"error":{"code","message"}}` with the right status, including for unknown routes, wrong
//! methods, oversized bodies and handler panics. The contract is `docs/api.md`.

pub mod access;
mod admin;
pub mod audit;
mod audit_api;
mod cameras;
pub mod cluster;
pub mod device_access;
mod devices;
mod error;
pub mod event_stream;
pub mod events;
pub mod export_jobs;
mod exports;
pub mod fragmented;
mod grids;
mod health;
mod holds;
mod incidents;
pub mod intact;
mod links;
mod live;
mod live_socket;
mod metrics;
pub mod movies;
pub mod openapi;
mod playback;
mod ranged;
pub mod rate_report;
pub mod recent_accesses;
mod relayed;
pub mod remote_access;
pub mod request;
mod session;
mod snapshots;
pub mod spatial;
mod state;
pub mod time;
pub mod ui;
pub mod walls;
pub mod webhooks;

use std::sync::Arc;

use auth::Action;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use access::Caller;
pub use audit::Viewing;
pub use error::ApiError;
pub use request::MAX_BODY;
pub use state::{AppState, CameraEntry, CameraInfo, CameraMap, HeadFiles, NodeInfo, RemoteState};

/// What an endpoint requires of its caller.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Nothing (login, the OpenAPI document).
    Public,
    /// Any valid bearer token; what is listed is cut to what the caller may see.
    Authenticated,
    /// A bearer token whose holder has any action on the camera.
    CameraAny,
    /// A bearer token whose holder has the action on the camera named by the path or body.
    Camera(Action),
    /// As `Camera`, or a signed media token for that camera and action in `?token=`.
    Media(Action),
    /// A bearer token whose holder has the node-wide action.
    Node(Action),
    /// The token of a lower node's link that dials up (`[[lower]] dial = "up"`).
    LinkToken,
}

/// One endpoint of the API. The router, the OpenAPI document and the authorization matrix
/// test are all generated from [`ENDPOINTS`], so they cannot disagree.
#[derive(Copy, Clone, Debug)]
pub struct Endpoint {
    /// HTTP method (upper case).
    pub method: &'static str,
    /// Path, with `{param}` segments.
    pub path: &'static str,
    /// What the caller needs.
    pub access: Access,
    /// The status of a successful answer.
    pub ok: u16,
    /// Query parameters it reads.
    pub query: &'static [&'static str],
    /// What it does.
    pub summary: &'static str,
}

macro_rules! endpoints {
    ($( $method:ident $path:literal => $handler:path, $access:expr, $ok:literal, [$($q:literal),*], $summary:literal; )*) => {
        /// Every endpoint.
        pub const ENDPOINTS: &[Endpoint] = &[
            $( Endpoint {
                method: const_upper(stringify!($method)),
                path: $path,
                access: $access,
                ok: $ok,
                query: &[$($q),*],
                summary: $summary,
            }, )*
        ];

        fn routes() -> Router<Arc<AppState>> {
            let r = Router::new();
            $( let r = r.route($path, axum::routing::$method($handler)); )*
            r
        }
    };
}

const fn const_upper(m: &'static str) -> &'static str {
    match m.as_bytes() {
        b"get" => "GET",
        b"post" => "POST",
        b"put" => "PUT",
        b"patch" => "PATCH",
        b"delete" => "DELETE",
        _ => "?",
    }
}

use Access::{Authenticated, Camera, CameraAny, LinkToken, Media, Node, Public};
use Action::{Admin, Audit, Export, Hold, Live, Metrics, Playback, Ptz};

endpoints! {
    post "/api/v1/login" => session::login, Public, 200, [], "Logs in: {username, password} to {token, expires_at}. Throttled after repeated failures (429).";
    post "/api/v1/logout" => session::logout, Authenticated, 200, [], "Ends the caller's session.";
    get "/api/v1/me" => session::me, Authenticated, 200, [], "Who the caller is and what they may do.";
    get "/api/v1/openapi.json" => openapi::serve, Public, 200, [], "This API as an OpenAPI 3.1 document.";
    get "/api/v1/events" => event_stream::stream, Authenticated, 200, ["after"], "Server-sent events, each with its sequence number as id: camera online/offline (with recording gaps), holds, incidents, disk alarms, exports done, for what the caller may see; Last-Event-ID (or after=) replays what came after from the durable log, across restarts.";
    get "/api/v1/webhooks" => webhooks::list, Node(Admin), 200, [], "Webhook subscriptions with their delivery state: cursor, lag, failures, last error, delivered, missed.";
    post "/api/v1/webhooks" => webhooks::create, Node(Admin), 201, [], "Subscribes a receiver {url, secret, kinds?, cameras?, org?, grid?, max_failures?, from?}: events POSTed as HMAC-signed JSON batches, at least once, retried with backoff and jitter, dead-lettered after max_failures. Audited.";
    get "/api/v1/webhooks/{id}" => webhooks::get, Node(Admin), 200, [], "One webhook subscription and its delivery state.";
    delete "/api/v1/webhooks/{id}" => webhooks::delete, Node(Admin), 200, [], "Deletes a webhook subscription. Audited.";
    post "/api/v1/webhooks/{id}/retry" => webhooks::retry, Node(Admin), 200, [], "Revives a dead-lettered webhook: delivery goes on from its cursor. Audited.";
    get "/api/v1/node" => links::node, Authenticated, 200, [], "This node: id, name and level.";
    get "/api/v1/cluster" => cluster::status, Node(Admin), 200, [], "This node's cluster (several nodes of one level on etcd): members with their URL, weight and the cameras each records, this node's lease state, and whether the cluster is degraded; {state: standalone} without [cluster].";
    get "/api/v1/cluster/etcd" => cluster::etcd, Public, 200, [], "Whether this node reaches etcd, {etcd_reachable}: asked by a member that lost etcd before it goes on recording past its lease; null without [cluster].";
    get "/api/v1/links" => links::list, Node(Admin), 200, [], "Links to lower nodes: budget, use, pulls, refusals, state.";
    get "/api/v1/links/{id}/tunnel" => links::tunnel, LinkToken, 101, [], "A lower node dialing up (dial = \"up\"): upgraded to sharpeye-tunnel/1, over which this node's requests and the media flow (HTTP/2).";
    get "/api/v1/health" => health::health, Authenticated, 200, [], "Node health: disks, retention forecast, cameras online.";
    get "/api/v1/cameras" => cameras::cameras, Authenticated, 200, ["near", "radius", "sees", "grid", "polygon"], "The cameras the caller may see; near=LAT,LON&radius=M (nearest first, with distance_m), sees=LAT,LON (field of view holds the point), grid=ID or polygon=LAT,LON;... select by place.";
    get "/api/v1/rates" => rate_report::report, Authenticated, 200, ["org", "camera", "from", "to", "interval", "key", "format"], "Online, intact (完好) and networked (联网) rates and recording completeness of the cameras the caller may see under org, per day (UTC+8) and over from..to, time-weighted, with the seconds of each cause of failure; instant rates now; format=csv for monthly reports.";
    get "/api/v1/maintenance" => rate_report::list_windows, Node(Admin), 200, [], "Maintenance windows: cameras or an org, a span and why; their time is not counted against the rates.";
    post "/api/v1/maintenance" => rate_report::create_window, Node(Admin), 201, [], "Declares a maintenance window {cameras? | org?, start, end, reason}. Audited.";
    delete "/api/v1/maintenance/{id}" => rate_report::delete_window, Node(Admin), 200, [], "Removes a maintenance window. Audited.";
    get "/api/v1/grids" => grids::list, Authenticated, 200, [], "Grid cells (网格): id, name, source, bbox and how many cameras each holds.";
    post "/api/v1/grids" => grids::import, Node(Admin), 201, [], "Imports grid cells from a GeoJSON Feature or FeatureCollection of Polygon/MultiPolygon features (id, properties.name); all or none. Audited.";
    get "/api/v1/grids/{id}" => grids::get, Authenticated, 200, [], "One grid cell as a GeoJSON Feature.";
    delete "/api/v1/grids/{id}" => grids::delete, Node(Admin), 200, [], "Removes an imported grid cell (409 for one from the config file). Audited.";
    post "/api/v1/incidents" => incidents::open, Authenticated, 201, [], "Opens an incident {point:{lat,lon} | grid, at?, radius?, before?, after?, hold?, sees?, wall?, reason}: the cameras the caller may see there with live and playback URLs (media tokens), holds on the window when asked, the cameras put on a wall. Audited as one incident entry.";
    get "/api/v1/cameras/{id}" => cameras::camera_detail, CameraAny, 200, [], "One camera, with health (any action on it shows it).";
    get "/api/v1/cameras/{id}/recordings" => cameras::recordings, Camera(Playback), 200, ["start", "end", "stream", "local"], "What is recorded in a window; in a cluster, merged over every member that recorded the camera (members_unanswered names those that could not be asked), local=1 for this member's own.";
    get "/api/v1/cameras/{id}/playback.mp4" => playback::playback_mp4, Media(Playback), 200, ["start", "end", "speed", "stream", "token", "source", "download", "scale", "local"], "A progressive MP4 of exactly that range (Range, ETag); in a cluster, over what every member recorded of it (local=1: this member's own); source=device streams a GB/T 28181 device's recording as fragmented MP4.";
    get "/api/v1/cameras/{id}/playback.m3u8" => playback::playback_m3u8, Media(Playback), 200, ["start", "end", "stream", "token"], "HLS (fMP4) of a range.";
    get "/api/v1/cameras/{id}/segments/{file}" => playback::segment_file, Media(Playback), 200, ["token"], "Byte ranges of a segment file, for HLS.";
    get "/api/v1/cameras/{id}/live.mp4" => live::live_mp4, Media(Live), 200, ["stream", "token", "relay"], "Live fragmented MP4 from a key frame on (relay=1: the form another node pulls, each frame at once with its wall time). For a camera of a lower node, the sub-stream when the link has room only for it (x-sharpeye-stream), or 503 link_budget. With Upgrade: websocket, the same bytes over a WebSocket after a text message with the stream served or the error.";
    get "/api/v1/cameras/{id}/snapshot.jpg" => snapshots::snapshot, Media(Live), 200, ["at", "stream", "token"], "A JPEG of the live picture (needs live) or of the recorded instant at= (needs playback; decoded from the key frame before it, the exact frame); 501 not_built without the gstreamer feature. Audited.";
    post "/api/v1/cameras/{id}/whep" => live::whep_offer, Media(Live), 201, ["stream", "token"], "WebRTC live view by WHEP: SDP offer in, answer out.";
    delete "/api/v1/cameras/{id}/whep/{session}" => live::whep_end, Media(Live), 200, ["token"], "Ends a WHEP session.";
    get "/api/v1/cameras/{id}/device-recordings" => devices::recordings, Camera(Playback), 200, ["start", "end"], "Recordings the camera's GB/T 28181 device holds (RecordInfo); 409 for cameras that are not device channels.";
    post "/api/v1/cameras/{id}/ptz" => devices::ptz, Camera(Ptz), 200, [], "Moves a GB/T 28181 channel {pan, tilt, zoom: -1|0|1, speed: 0-255}; all 0 stops. Audited.";
    get "/api/v1/gb28181/devices" => devices::list, Node(Admin), 200, [], "Registered GB/T 28181 devices: online state, address, catalog size.";
    get "/api/v1/gb28181/uppers" => devices::uppers, Node(Admin), 200, [], "Upper platforms this node registers to (GB/T 28181 cascade): registered, last keepalive, sessions, how many cameras are shared.";
    post "/api/v1/cameras/{id}/media-token" => playback::media_token, Camera(Playback), 200, [], "A signed, short-lived URL token for one camera and action ({action, ttl_s}); needs that action.";
    post "/api/v1/exports" => exports::create, Camera(Export), 202, [], "Starts an evidence export {camera, start, end, reason}.";
    get "/api/v1/exports" => exports::list, Authenticated, 200, [], "Exports of cameras the caller may export.";
    get "/api/v1/exports/{id}" => exports::status, Camera(Export), 200, [], "An export's status.";
    get "/api/v1/exports/{id}/download" => exports::download, Media(Export), 200, ["token"], "The export package (zip, Range supported).";
    get "/api/v1/exports/{id}/verify" => exports::verify, Camera(Export), 200, [], "Verifies a finished export package as sharpeye verify-export does: {intact, problems, manifest}.";
    post "/api/v1/holds" => holds::create, Camera(Hold), 201, [], "Pins a range against deletion {camera, start, end, reason}.";
    get "/api/v1/holds" => holds::list, Authenticated, 200, [], "Holds on cameras the caller may hold.";
    delete "/api/v1/holds/{id}" => holds::release, Camera(Hold), 200, [], "Releases a hold.";
    get "/api/v1/audit/heads" => audit_api::heads, Authenticated, 200, ["since"], "Signed heads of the audit log: this node's after `since` (a sequence number), and those it holds for lower nodes; an upper level keeps them as tamper evidence.";
    get "/api/v1/audit" => audit_api::list, Node(Audit), 200, ["start", "end", "user", "camera", "action", "after", "limit", "members"], "Audit entries, oldest first, filtered; in a cluster, members=all merges every member's log (each entry tagged with its node; paging per member in next_by_member).";
    get "/api/v1/audit/verify" => audit_api::verify, Node(Audit), 200, [], "Walks the audit log's hash chain: {intact, entries, head} or {intact: false, error}.";
    get "/api/v1/users" => admin::list_users, Node(Admin), 200, [], "Users.";
    post "/api/v1/users" => admin::create_user, Node(Admin), 201, [], "Creates a user {name, password, role, department?}.";
    patch "/api/v1/users/{name}" => admin::update_user, Node(Admin), 200, [], "Changes a user's role, department, password or disabled flag.";
    delete "/api/v1/users/{name}" => admin::delete_user, Node(Admin), 200, [], "Deletes a user and ends their sessions and tokens.";
    delete "/api/v1/users/{name}/sessions" => admin::revoke_sessions, Node(Admin), 200, [], "Ends every session of a user.";
    get "/api/v1/departments" => admin::list_departments, Node(Admin), 200, [], "Departments.";
    post "/api/v1/departments" => admin::create_department, Node(Admin), 201, [], "Creates a department {id, name, parent?}.";
    delete "/api/v1/departments/{id}" => admin::delete_department, Node(Admin), 200, [], "Deletes a department nothing refers to.";
    get "/api/v1/groups" => admin::list_groups, Node(Admin), 200, [], "Camera groups.";
    post "/api/v1/groups" => admin::create_group, Node(Admin), 201, [], "Creates a camera group {id, name, cameras}.";
    put "/api/v1/groups/{id}" => admin::replace_group, Node(Admin), 200, [], "Replaces a group's name and cameras.";
    delete "/api/v1/groups/{id}" => admin::delete_group, Node(Admin), 200, [], "Deletes a group nothing refers to.";
    get "/api/v1/grants" => admin::list_grants, Node(Admin), 200, [], "Grants.";
    post "/api/v1/grants" => admin::create_grant, Node(Admin), 201, [], "Grants {subject, actions, resource}.";
    delete "/api/v1/grants/{id}" => admin::delete_grant, Node(Admin), 200, [], "Revokes a grant.";
    get "/api/v1/tokens" => admin::list_tokens, Node(Admin), 200, [], "API tokens (never their secrets).";
    post "/api/v1/tokens" => admin::create_token, Node(Admin), 201, [], "Creates a scoped API token {name, owner?, actions, resources, expires_at?}; the secret is shown once.";
    delete "/api/v1/tokens/{id}" => admin::revoke_token, Node(Admin), 200, [], "Revokes an API token.";
    get "/api/v1/walls" => walls::list, Authenticated, 200, [], "Named wall screens and what each shows.";
    get "/api/v1/walls/{id}" => walls::get, Authenticated, 200, [], "What a wall screen shows: {layout, tiles, tour, version}.";
    put "/api/v1/walls/{id}" => walls::put, Authenticated, 200, [], "Puts a layout on a wall screen {layout, tiles:[{camera, stream?}], tour?}; needs live view of every camera on it; screens at /wall/{id} switch on the wall.changed event. Audited.";
    get "/api/v1/views" => walls::list_views, Authenticated, 200, [], "The caller's saved wall views and those shared with their department.";
    post "/api/v1/views" => walls::create_view, Authenticated, 201, [], "Saves a wall view {name, layout, tiles, tour?, shared?}.";
    delete "/api/v1/views/{id}" => walls::delete_view, Authenticated, 200, [], "Deletes a saved view (its owner or an administrator).";
    get "/metrics" => metrics::metrics, Node(Metrics), 200, [], "Prometheus metrics.";
}

/// The router for `state`: every endpoint of [`ENDPOINTS`], `/healthz` and the web page at `/`.
pub fn router(state: Arc<AppState>) -> Router {
    routes()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(ui::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/v1 in docs/api.md") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(CatchPanicLayer::custom(|_| -> Response {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the server log",
            )
            .into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// How long requests in flight may finish once the node stops; connections still open then
/// (a live stream, a long download) are closed.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        stopping.send_replace(true);
    });
    tokio::select! {
        r = server => r,
        () = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "HTTP connections still open after the grace period; closing them");
            Ok(())
        }
    }
}
