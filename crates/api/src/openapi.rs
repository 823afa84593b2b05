//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from [`crate::ENDPOINTS`]:
//! the same table the router is built from, so the document cannot list an endpoint that does
//! not exist or miss one that does. Each operation says what permission it needs
//! (`x-sharpeye-access`) and which errors it answers with.
//!
//! Written by hand rather than with `utoipa`: the document's source of truth is the endpoint
//! table, which also drives the router and the authorization matrix test; annotating every
//! handler a second time would be a second list to keep in step.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use crate::state::AppState;
use crate::{Access, ENDPOINTS, Endpoint};

fn access_text(a: Access) -> String {
    match a {
        Access::Public => "public".into(),
        Access::Authenticated => "any valid token; results cut to what the caller may see".into(),
        Access::CameraAny => "bearer token with any action on the camera".into(),
        Access::Camera(x) => format!("bearer token with `{x}` on the camera"),
        Access::Media(x) => format!("bearer token with `{x}` on the camera, or `?token=` media token for it"),
        Access::Node(x) => format!("bearer token with node-wide `{x}`"),
        Access::LinkToken => "the link token of a lower node that dials up".into(),
    }
}

fn error_ref() -> Value {
    json!({ "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn operation(e: &Endpoint) -> Value {
    let mut params: Vec<Value> = e
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    params.extend(
        e.query
            .iter()
            .map(|q| json!({ "name": q, "in": "query", "required": false, "schema": { "type": "string" } })),
    );
    let mut responses = Map::new();
    responses.insert(e.ok.to_string(), json!({ "description": "success" }));
    let mut errors = vec![("400", "bad input"), ("404", "unknown (or not visible to the caller)")];
    if e.access != Access::Public {
        errors.push(("401", "no, expired, tampered or revoked token"));
        errors.push(("403", "the caller lacks the permission"));
    }
    if e.path.ends_with("/login") {
        errors.push(("401", "wrong user name or password"));
        errors.push(("429", "too many failed logins; see Retry-After"));
    }
    if e.method != "GET" && e.method != "DELETE" {
        errors.push(("413", "body too large"));
        errors.push(("415", "wrong content type"));
    }
    errors.push(("503", "not available now (e.g. the audit log cannot be written)"));
    for (code, what) in errors {
        let mut r = error_ref();
        r["description"] = json!(what);
        responses.insert(code.into(), r);
    }
    let tag = e
        .path
        .trim_start_matches("/api/v1/")
        .split('/')
        .next()
        .unwrap_or("")
        .trim_start_matches('/');
    let mut op = json!({
        "summary": e.summary,
        "operationId": format!("{}{}", e.method.to_lowercase(), e.path.replace(['/', '{', '}', '.', '-'], "_")),
        "tags": [tag],
        "parameters": params,
        "responses": responses,
        "x-sharpeye-access": access_text(e.access),
    });
    if e.access == Access::Public {
        op["security"] = json!([]);
    }
    if matches!(e.method, "POST" | "PUT" | "PATCH") {
        let content = if e.path.ends_with("/whep") {
            "application/sdp"
        } else {
            "application/json"
        };
        op["requestBody"] = json!({ "required": !e.path.ends_with("/logout") && !e.path.ends_with("/media-token"), "content": { content: {} } });
    }
    op
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for e in ENDPOINTS {
        let entry = paths.entry(e.path.to_owned()).or_insert_with(|| json!({}));
        entry[e.method.to_lowercase()] = operation(e);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Sharpeye",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "NVR/VMS core: cameras, live view, playback, export, evidence holds, permissions and audit. Times are RFC 3339 with an offset; errors are {\"error\":{\"code\",\"message\"}}.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "A session token from POST /api/v1/login, or an API token (sk_...)." },
                "mediaToken": { "type": "apiKey", "in": "query", "name": "token", "description": "A signed media token for one camera and action." },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"], "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } },
                },
            },
        },
        "security": [{ "bearer": [] }],
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn serve(State(_): State<Arc<AppState>>) -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(document).clone())
}
