//! The web UI: plain ES modules, a style sheet and the two language tables, embedded in the
//! binary so the UI needs no build step and no files beside the binary. The page works only
//! through the public API, like any other client (see `docs/ui.md`).

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The page every UI address loads; the app reads the address (`/`, `/wall/{id}`, `#/playback`)
/// to pick its screen.
const INDEX: &str = include_str!("../static/index.html");

macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        /// Every asset under `/ui/`, by file name.
        const ASSETS: &[(&str, &str)] = &[$(($name, include_str!(concat!("../static/", $name)))),*];
    };
}

assets!(
    "app.css",
    "app.js",
    "dom.js",
    "api.js",
    "i18n.js",
    "tree.js",
    "player.js",
    "wall.js",
    "playback.js",
    "evidence.js",
    "health.js",
    "admin.js",
    "mobile.js",
);

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _)| *n == name) {
        Some((n, body)) => (
            [
                (header::CONTENT_TYPE, content_type(n)),
                // Revalidated on every load: a node upgrade must not leave a wall on old code.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => {
            ApiError::not_found(format!("no UI asset {:?}", name.chars().take(64).collect::<String>())).into_response()
        }
    }
}

async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// The addresses of the UI's page (the operators' screens, a kiosk wall screen, the handheld
/// view); the page reads the address to pick its screen.
pub const PAGES: &[&str] = &["/", "/wall/{id}", "/m"];

/// Where the UI's embedded modules are served.
pub const ASSET_PATH: &str = "/ui/{name}";

/// Every page of [`PAGES`] and the assets.
pub fn routes() -> Router<Arc<AppState>> {
    PAGES
        .iter()
        .fold(Router::new(), |r, p| r.route(p, axum::routing::get(index)))
        .route(ASSET_PATH, axum::routing::get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        let mut imported: Vec<String> = vec![];
        for (_, body) in ASSETS.iter().chain([("index.html", INDEX)].iter()) {
            for part in body.split("from \"./").skip(1).chain(body.split("src=\"/ui/").skip(1)) {
                if let Some(name) = part.split('"').next() {
                    imported.push(name.to_owned());
                }
            }
        }
        assert!(!imported.is_empty());
        for name in imported {
            assert!(
                ASSETS.iter().any(|(n, _)| *n == name),
                "{name} is imported but not embedded"
            );
        }
    }
}
