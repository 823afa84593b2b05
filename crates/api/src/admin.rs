//! Administration: users, departments, camera groups, grants and API tokens. Every change is
//! applied at once (no restart), kept in `<data dir>/auth/directory.json`, and audited with who
//! made it and from where. Entries defined in the config file are shown but cannot be changed
//! here (409): they are changed by editing the config.

use std::sync::Arc;

use auth::{
    Action, Actions, AuthError, DepartmentRecord, Directory, DirectoryError, GrantRecord, GroupRecord, Resource, Role,
    Source, Subject, UserRecord,
};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::error::ApiError;
use crate::request::json_body as body;
use crate::state::AppState;
use crate::time;

type St = State<Arc<AppState>>;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Directory(d) => d.into(),
            AuthError::BadCredentials | AuthError::BadToken => ApiError::unauthorized(e.to_string()),
            AuthError::Throttled { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", e.to_string())
            }
            AuthError::BadHash { .. } => ApiError::internal(e),
        }
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Invalid(_) => ApiError::bad_request(e.to_string()),
            DirectoryError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
            DirectoryError::Missing(_) => ApiError::not_found(e.to_string()),
            DirectoryError::ReadOnly(_) => ApiError::new(StatusCode::CONFLICT, "read_only", e.to_string()),
            DirectoryError::Io { .. } | DirectoryError::Corrupt { .. } => ApiError::internal(e),
        }
    }
}

/// Applies a directory change off the async workers (it writes and fsyncs the directory file).
async fn change<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Directory) -> Result<T, DirectoryError> + Send + 'static,
) -> Result<T, ApiError> {
    let auth = state.auth.clone();
    Ok(tokio::task::spawn_blocking(move || auth.change(f))
        .await
        .map_err(ApiError::internal)??)
}

fn admin(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    caller.require(state, Action::Admin, None)
}

/// Audits an administrative change durably, then answers.
async fn done(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    detail: Value,
    status: StatusCode,
    out: Value,
) -> Result<Response, ApiError> {
    let mut e = caller.event(action, None);
    e.target = Some(target.to_owned());
    e.detail = detail;
    state.audit(e).await?;
    Ok((status, Json(out)).into_response())
}

fn writable(what: String, source: Source) -> Result<(), DirectoryError> {
    if source == Source::Config {
        Err(DirectoryError::ReadOnly(what))
    } else {
        Ok(())
    }
}

fn user_json(u: &UserRecord) -> Value {
    json!({ "name": u.name, "role": u.role, "department": u.department, "disabled": u.disabled, "source": u.source })
}

/// `GET /api/v1/users`.
pub async fn list_users(State(state): St, caller: Caller) -> Result<Json<Value>, ApiError> {
    admin(&state, &caller)?;
    Ok(Json(
        state.auth.snapshot().directory.users.iter().map(user_json).collect(),
    ))
}

/// `POST /api/v1/users` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    password: String,
    role: Role,
    #[serde(default)]
    department: Option<String>,
}

fn check_password_rules(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < 8 || p.len() > 1024 {
        return Err(ApiError::bad_request("password: use 8 to 1024 characters"));
    }
    Ok(())
}

async fn hash(p: String) -> Result<String, ApiError> {
    // argon2 costs tens of milliseconds of CPU: off the async workers.
    tokio::task::spawn_blocking(move || auth::hash_password(&p))
        .await
        .map_err(ApiError::internal)
}

/// `POST /api/v1/users`.
pub async fn create_user(
    State(state): St,
    caller: Caller,
    b: Result<Json<NewUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let req = body(b, "{name, password, role, department?}")?;
    auth::directory::check_id("user", &req.name)?;
    check_password_rules(&req.password)?;
    let record = UserRecord {
        name: req.name.clone(),
        role: req.role,
        department: req.department,
        password_hash: hash(req.password).await?,
        disabled: false,
        source: Source::Api,
    };
    let out = user_json(&record);
    change(&state, move |d| {
        if d.users.iter().any(|u| u.name == record.name) {
            return Err(DirectoryError::Exists(format!("user {:?}", record.name)));
        }
        d.users.push(record);
        Ok(())
    })
    .await?;
    done(
        &state,
        &caller,
        "user.create",
        &req.name,
        json!({ "role": req.role }),
        StatusCode::CREATED,
        out,
    )
    .await
}

/// `PATCH /api/v1/users/{name}` body: what to change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default)]
    role: Option<Role>,
    /// `""` clears the department.
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
}

/// `PATCH /api/v1/users/{name}`. Disabling a user or changing their password ends their
/// sessions.
pub async fn update_user(
    State(state): St,
    caller: Caller,
    Path(name): Path<String>,
    b: Result<Json<UserChange>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let req = body(b, "{role?, department?, password?, disabled?}")?;
    let new_hash = match req.password.clone() {
        Some(p) => {
            check_password_rules(&p)?;
            Some(hash(p).await?)
        }
        None => None,
    };
    let detail = json!({
        "role": req.role,
        "department": req.department,
        "password_changed": new_hash.is_some(),
        "disabled": req.disabled,
    });
    let n = name.clone();
    let out = change(&state, move |d| {
        let u = d
            .users
            .iter_mut()
            .find(|u| u.name == n)
            .ok_or_else(|| DirectoryError::Missing(format!("user {n:?}")))?;
        writable(format!("user {n:?}"), u.source)?;
        if let Some(r) = req.role {
            u.role = r;
        }
        if let Some(dep) = req.department {
            u.department = (!dep.is_empty()).then_some(dep);
        }
        if let Some(h) = new_hash {
            u.password_hash = h;
        }
        if let Some(x) = req.disabled {
            u.disabled = x;
        }
        Ok(user_json(u))
    })
    .await?;
    if detail["password_changed"] == true || detail["disabled"] == true {
        state.auth.revoke_sessions(&name);
    }
    done(&state, &caller, "user.update", &name, detail, StatusCode::OK, out).await
}

/// `DELETE /api/v1/users/{name}`: also removes the grants naming the user and the tokens
/// acting for them, and ends their sessions.
pub async fn delete_user(State(state): St, caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    if name == caller.who.user {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot delete yourself",
        ));
    }
    let n = name.clone();
    let (grants, tokens) = change(&state, move |d| {
        let u = d
            .users
            .iter()
            .find(|u| u.name == n)
            .ok_or_else(|| DirectoryError::Missing(format!("user {n:?}")))?;
        writable(format!("user {n:?}"), u.source)?;
        let subject = Subject::User(n.clone());
        if let Some(g) = d
            .grants
            .iter()
            .find(|g| g.subject == subject && g.source == Source::Config)
        {
            return Err(DirectoryError::ReadOnly(format!("grant {:?} naming user {n:?}", g.id)));
        }
        let before = (d.grants.len(), d.tokens.len());
        d.users.retain(|u| u.name != n);
        d.grants.retain(|g| g.subject != subject);
        d.tokens.retain(|t| t.owner != n);
        Ok((before.0 - d.grants.len(), before.1 - d.tokens.len()))
    })
    .await?;
    let sessions = state.auth.revoke_sessions(&name);
    let detail = json!({ "grants_removed": grants, "tokens_removed": tokens, "sessions_ended": sessions });
    done(
        &state,
        &caller,
        "user.delete",
        &name,
        detail.clone(),
        StatusCode::OK,
        detail,
    )
    .await
}

/// `DELETE /api/v1/users/{name}/sessions`.
pub async fn revoke_sessions(State(state): St, caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    if state.auth.snapshot().policy.user(&name).is_none() {
        return Err(DirectoryError::Missing(format!("user {:?}", name.chars().take(64).collect::<String>())).into());
    }
    let n = state.auth.revoke_sessions(&name);
    done(
        &state,
        &caller,
        "session.revoke",
        &name,
        json!({ "sessions_ended": n }),
        StatusCode::OK,
        json!({ "sessions_ended": n }),
    )
    .await
}

/// `GET /api/v1/departments`.
pub async fn list_departments(State(state): St, caller: Caller) -> Result<Json<Value>, ApiError> {
    admin(&state, &caller)?;
    Ok(Json(json!(state.auth.snapshot().directory.departments)))
}

/// `POST /api/v1/departments` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDepartment {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parent: Option<String>,
}

/// `POST /api/v1/departments`.
pub async fn create_department(
    State(state): St,
    caller: Caller,
    b: Result<Json<NewDepartment>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let req = body(b, "{id, name?, parent?}")?;
    let rec = DepartmentRecord {
        name: req.name.unwrap_or_else(|| req.id.clone()),
        id: req.id.clone(),
        parent: req.parent,
        source: Source::Api,
    };
    let out = json!(rec);
    change(&state, move |d| {
        if d.departments.iter().any(|x| x.id == rec.id) {
            return Err(DirectoryError::Exists(format!("department {:?}", rec.id)));
        }
        d.departments.push(rec);
        Ok(())
    })
    .await?;
    done(
        &state,
        &caller,
        "department.create",
        &req.id,
        out.clone(),
        StatusCode::CREATED,
        out,
    )
    .await
}

/// Refuses to remove `what` while something refers to it, naming the first referrer.
fn unused(
    d: &Directory,
    what: &str,
    subject: Option<&Subject>,
    resource: Option<&Resource>,
) -> Result<(), DirectoryError> {
    if let Some(g) = d
        .grants
        .iter()
        .find(|g| Some(&g.subject) == subject || Some(&g.resource) == resource)
    {
        return Err(DirectoryError::Invalid(format!(
            "{what} is used by grant {:?}; revoke it first",
            g.id
        )));
    }
    Ok(())
}

/// `DELETE /api/v1/departments/{id}`.
pub async fn delete_department(State(state): St, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let i = id.clone();
    change(&state, move |d| {
        let what = format!("department {i:?}");
        let x = d
            .departments
            .iter()
            .find(|x| x.id == i)
            .ok_or_else(|| DirectoryError::Missing(what.clone()))?;
        writable(what.clone(), x.source)?;
        unused(d, &what, Some(&Subject::Department(i.clone())), None)?;
        if let Some(u) = d.users.iter().find(|u| u.department.as_deref() == Some(&i)) {
            return Err(DirectoryError::Invalid(format!(
                "{what} has user {:?}; move them first",
                u.name
            )));
        }
        if let Some(c) = d.departments.iter().find(|c| c.parent.as_deref() == Some(&i)) {
            return Err(DirectoryError::Invalid(format!("{what} has sub-department {:?}", c.id)));
        }
        d.departments.retain(|x| x.id != i);
        Ok(())
    })
    .await?;
    done(
        &state,
        &caller,
        "department.delete",
        &id,
        Value::Null,
        StatusCode::OK,
        json!({}),
    )
    .await
}

/// `GET /api/v1/groups`.
pub async fn list_groups(State(state): St, caller: Caller) -> Result<Json<Value>, ApiError> {
    admin(&state, &caller)?;
    Ok(Json(json!(state.auth.snapshot().directory.groups)))
}

/// `POST /api/v1/groups` and `PUT /api/v1/groups/{id}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    cameras: Vec<String>,
}

/// Most cameras in one group.
const MAX_GROUP: usize = 100_000;

fn group_of(id: String, req: GroupBody, state: &AppState) -> Result<GroupRecord, ApiError> {
    if req.cameras.len() > MAX_GROUP {
        return Err(ApiError::bad_request(format!("cameras: at most {MAX_GROUP}")));
    }
    if let Some(c) = req.cameras.iter().find(|c| !state.cameras.contains_key(c.as_str())) {
        return Err(ApiError::bad_request(format!(
            "cameras: no camera {:?}",
            c.chars().take(64).collect::<String>()
        )));
    }
    Ok(GroupRecord {
        name: req.name.unwrap_or_else(|| id.clone()),
        id,
        cameras: req.cameras,
        source: Source::Api,
    })
}

/// `POST /api/v1/groups`.
pub async fn create_group(
    State(state): St,
    caller: Caller,
    b: Result<Json<GroupBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let mut req = body(b, "{id, name?, cameras: [...]}")?;
    let id = req.id.take().ok_or_else(|| ApiError::bad_request("id: missing"))?;
    let rec = group_of(id.clone(), req, &state)?;
    let out = json!(rec);
    change(&state, move |d| {
        if d.groups.iter().any(|x| x.id == rec.id) {
            return Err(DirectoryError::Exists(format!("group {:?}", rec.id)));
        }
        d.groups.push(rec);
        Ok(())
    })
    .await?;
    done(
        &state,
        &caller,
        "group.create",
        &id,
        out.clone(),
        StatusCode::CREATED,
        out,
    )
    .await
}

/// `PUT /api/v1/groups/{id}`.
pub async fn replace_group(
    State(state): St,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<GroupBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let req = body(b, "{name?, cameras: [...]}")?;
    let rec = group_of(id.clone(), req, &state)?;
    let out = json!(rec);
    change(&state, move |d| {
        let what = format!("group {:?}", rec.id);
        let g = d
            .groups
            .iter_mut()
            .find(|x| x.id == rec.id)
            .ok_or_else(|| DirectoryError::Missing(what.clone()))?;
        writable(what, g.source)?;
        *g = rec;
        Ok(())
    })
    .await?;
    done(&state, &caller, "group.update", &id, out.clone(), StatusCode::OK, out).await
}

/// `DELETE /api/v1/groups/{id}`.
pub async fn delete_group(State(state): St, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let i = id.clone();
    change(&state, move |d| {
        let what = format!("group {i:?}");
        let g = d
            .groups
            .iter()
            .find(|x| x.id == i)
            .ok_or_else(|| DirectoryError::Missing(what.clone()))?;
        writable(what.clone(), g.source)?;
        unused(d, &what, None, Some(&Resource::Group(i.clone())))?;
        d.groups.retain(|x| x.id != i);
        Ok(())
    })
    .await?;
    done(
        &state,
        &caller,
        "group.delete",
        &id,
        Value::Null,
        StatusCode::OK,
        json!({}),
    )
    .await
}

/// `GET /api/v1/grants`.
pub async fn list_grants(State(state): St, caller: Caller) -> Result<Json<Value>, ApiError> {
    admin(&state, &caller)?;
    Ok(Json(json!(state.auth.snapshot().directory.grants)))
}

/// `POST /api/v1/grants` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    subject: Subject,
    actions: Actions,
    resource: Resource,
}

fn random_id() -> String {
    let mut raw = [0u8; 8];
    rand::fill(&mut raw);
    auth::hex(&raw)
}

/// `POST /api/v1/grants`.
pub async fn create_grant(
    State(state): St,
    caller: Caller,
    b: Result<Json<NewGrant>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let req = body(
        b,
        "{subject: \"department:ID\", actions: [\"live\"], resource: \"group:ID\"}",
    )?;
    let rec = GrantRecord {
        id: random_id(),
        subject: req.subject,
        actions: req.actions,
        resource: req.resource,
        source: Source::Api,
    };
    let out = json!(rec);
    let id = rec.id.clone();
    change(&state, move |d| {
        d.grants.push(rec);
        Ok(())
    })
    .await?;
    done(
        &state,
        &caller,
        "grant.create",
        &id,
        out.clone(),
        StatusCode::CREATED,
        out,
    )
    .await
}

/// `DELETE /api/v1/grants/{id}`.
pub async fn delete_grant(State(state): St, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let i = id.clone();
    let removed = change(&state, move |d| {
        let what = format!("grant {:?}", i.chars().take(64).collect::<String>());
        let g = d
            .grants
            .iter()
            .find(|x| x.id == i)
            .ok_or_else(|| DirectoryError::Missing(what.clone()))?;
        writable(what, g.source)?;
        let g = g.clone();
        d.grants.retain(|x| x.id != i);
        Ok(g)
    })
    .await?;
    done(
        &state,
        &caller,
        "grant.delete",
        &id,
        json!(removed),
        StatusCode::OK,
        json!({}),
    )
    .await
}

fn token_json(t: &auth::TokenRecord) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "owner": t.owner,
        "actions": t.actions,
        "resources": t.resources,
        "expires_at": t.expires_at.map(|s| time::format(media::WallTime::from_micros(s * 1_000_000))),
        "created_at": time::format(media::WallTime::from_micros(t.created_at * 1_000_000)),
    })
}

/// `GET /api/v1/tokens`.
pub async fn list_tokens(State(state): St, caller: Caller) -> Result<Json<Value>, ApiError> {
    admin(&state, &caller)?;
    Ok(Json(
        state.auth.snapshot().directory.tokens.iter().map(token_json).collect(),
    ))
}

/// `POST /api/v1/tokens` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    #[serde(default)]
    owner: Option<String>,
    actions: Actions,
    resources: Vec<Resource>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// `POST /api/v1/tokens`: the answer holds the token itself, once.
pub async fn create_token(
    State(state): St,
    caller: Caller,
    b: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let req = body(b, "{name, owner?, actions: [...], resources: [...], expires_at?}")?;
    let expires_at = match &req.expires_at {
        Some(t) => {
            let t = time::parse("expires_at", t)?;
            Some(t.as_micros().div_euclid(1_000_000))
        }
        None => None,
    };
    let owner = req.owner.unwrap_or_else(|| caller.who.user.clone());
    if state.auth.snapshot().policy.user(&owner).is_none() {
        return Err(ApiError::bad_request(format!(
            "owner: no user {:?}",
            owner.chars().take(64).collect::<String>()
        )));
    }
    let auth = state.auth.clone();
    let (token, rec) = tokio::task::spawn_blocking(move || {
        auth.create_token(&owner, &req.name, req.actions, req.resources, expires_at)
    })
    .await
    .map_err(ApiError::internal)??;
    let mut out = token_json(&rec);
    out["token"] = json!(token);
    done(
        &state,
        &caller,
        "token.create",
        &rec.id,
        token_json(&rec),
        StatusCode::CREATED,
        out,
    )
    .await
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn revoke_token(State(state): St, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    admin(&state, &caller)?;
    let i = id.clone();
    change(&state, move |d| {
        let before = d.tokens.len();
        d.tokens.retain(|t| t.id != i);
        if d.tokens.len() == before {
            return Err(DirectoryError::Missing(format!(
                "token {:?}",
                i.chars().take(64).collect::<String>()
            )));
        }
        Ok(())
    })
    .await?;
    done(
        &state,
        &caller,
        "token.revoke",
        &id,
        Value::Null,
        StatusCode::OK,
        json!({}),
    )
    .await
}
