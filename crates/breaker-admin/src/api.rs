//! The routes: list and inspect breakers, apply operator actions, who am I; and the
//! headers and limits every answer gets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use breaker_core::{OperatorAction, Registered};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderName};
use http::{HeaderValue, Method, StatusCode};
use serde_json::{Value, json};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::auth::Role;
use crate::error::{Refusal, error_response};
use crate::feed::unix_ms;
use crate::hub::Shared;
use crate::{dashboard, stream, view};

/// The largest request body accepted: an action with its reason fits in far less.
pub(crate) const MAX_BODY: usize = 4096;
/// The longest reason, in characters.
const MAX_REASON: usize = 500;
/// The longest operator name, in characters.
const MAX_OPERATOR: usize = 64;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let cors = (!shared.settings.origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(shared.settings.origins.clone()))
            .allow_methods(AllowMethods::list([Method::GET, Method::POST]))
            .allow_headers(AllowHeaders::list([
                http::header::AUTHORIZATION,
                CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ]))
    });
    let router = Router::new()
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/whoami", get(whoami))
        .route("/breakers", get(list))
        .route("/breakers/{*name}", get(one).post(act))
        .route("/events", get(stream::events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(common_headers))
        .with_state(shared);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn common_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "no such route: see GET breakers, GET breakers/<name>, POST breakers/<name>, GET events, \
         GET dashboard",
    )
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// `GET /whoami`: what the presented token (or none) allows.
async fn whoami(State(shared): State<Arc<Shared>>, headers: http::HeaderMap) -> Response {
    let caller = match shared.auth.reader(&headers) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let role = match (&caller.token, caller.role) {
        (None, _) => "anonymous",
        (Some(_), Role::Reader) => "reader",
        (Some(_), Role::Operator) => "operator",
    };
    axum::Json(json!({
        "role": role,
        "token": caller.token,
        "operator_actions": shared.auth.steers(),
        "read_token_required": shared.auth.reads_need_token(),
        "actions": OperatorAction::ALL.map(|a| a.as_str()),
    }))
    .into_response()
}

/// `GET /breakers`: every breaker.
async fn list(State(shared): State<Arc<Shared>>, headers: http::HeaderMap) -> Response {
    if let Err(refused) = shared.auth.reader(&headers) {
        return refused.into_response();
    }
    let breakers = lock_tracker(&shared).listing(&shared.registry, false);
    axum::Json(json!({ "at": now_ms(), "breakers": breakers })).into_response()
}

fn lock_tracker(shared: &Shared) -> std::sync::MutexGuard<'_, crate::tracker::Tracker> {
    shared.tracker.lock().unwrap_or_else(|e| e.into_inner())
}

fn view_of(shared: &Shared, registered: &Registered) -> Value {
    let snapshot = registered.breaker.snapshot();
    view::breaker(
        &registered.name,
        registered.critical,
        &*registered.breaker,
        &snapshot,
        lock_tracker(shared)
            .get(&registered.name)
            .map(crate::tracker::Tracked::seen),
    )
}

fn unknown_breaker(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": "no breaker by this name", "breaker": name })),
    )
        .into_response()
}

fn bad_path(rejection: PathRejection) -> Response {
    error_response(StatusCode::BAD_REQUEST, &rejection.body_text())
}

/// `GET /breakers/<name>`: one breaker (`group/key` for a member of a group).
async fn one(
    State(shared): State<Arc<Shared>>,
    name: Result<Path<String>, PathRejection>,
    headers: http::HeaderMap,
) -> Response {
    if let Err(refused) = shared.auth.reader(&headers) {
        return refused.into_response();
    }
    let Path(name) = match name {
        Ok(name) => name,
        Err(rejection) => return bad_path(rejection),
    };
    match shared.registry.get(&name) {
        Some(registered) => axum::Json(view_of(&shared, &registered)).into_response(),
        None => unknown_breaker(&name),
    }
}

/// An operator action, as posted.
struct ActionRequest {
    action: OperatorAction,
    reason: String,
    operator: Option<String>,
}

fn bad_request(message: &str) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, message)
}

/// A string without control characters (they could forge log lines), of 1 to `max`
/// characters once trimmed.
fn text_field(value: &Value, field: &str, max: usize) -> Result<String, Refusal> {
    let Some(text) = value.as_str() else {
        return Err(bad_request(&format!("`{field}` must be a string")));
    };
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max {
        return Err(bad_request(&format!(
            "`{field}` must be 1 to {max} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(bad_request(&format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(text.to_string())
}

fn parse_action(body: &[u8]) -> Result<ActionRequest, Refusal> {
    let allowed: Vec<&str> = OperatorAction::ALL.iter().map(|a| a.as_str()).collect();
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(&format!("the body is not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(bad_request(
            "the body must be a JSON object: {\"action\": ..., \"reason\": ...}",
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "action" | "reason" | "operator"))
    {
        return Err(bad_request(&format!(
            "unknown field `{unknown}`: the fields are action, reason and operator"
        )));
    }
    let action = match object.get("action").map(|a| a.as_str()) {
        None => return Err(bad_request("`action` is missing")),
        Some(None) => return Err(bad_request("`action` must be a string")),
        Some(Some(name)) => OperatorAction::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| {
                Refusal::with_body(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "unknown action", "allowed": allowed }),
                )
            })?,
    };
    let reason = match object.get("reason") {
        None => {
            return Err(bad_request(
                "`reason` is missing: say why, it is recorded with the action",
            ));
        }
        Some(reason) => text_field(reason, "reason", MAX_REASON)?,
    };
    let operator = match object.get("operator") {
        None | Some(Value::Null) => None,
        Some(operator) => Some(text_field(operator, "operator", MAX_OPERATOR)?),
    };
    Ok(ActionRequest {
        action,
        reason,
        operator,
    })
}

/// `POST /breakers/<name>` with `{"action": "...", "reason": "...", "operator": "..."}`:
/// applies an operator action, records it as an event and logs it.
async fn act(
    State(shared): State<Arc<Shared>>,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    // Nothing is read from a request before its token is checked.
    let caller = match shared.auth.operator(request.headers()) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let Path(name) = match name {
        Ok(name) => name,
        Err(rejection) => return bad_path(rejection),
    };
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the action as JSON (Content-Type: application/json)",
        );
    }
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let body: Body = request.into_body();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return too_large();
    };
    let wanted = match parse_action(&body) {
        Ok(wanted) => wanted,
        Err(refused) => return refused.into_response(),
    };
    let Some(registered) = shared.registry.get(&name) else {
        return unknown_breaker(&name);
    };
    let before = registered.breaker.snapshot().state;
    if let Err(unsupported) = registered.breaker.apply(wanted.action) {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({ "error": unsupported.to_string(), "breaker": name })),
        )
            .into_response();
    }
    let after = registered.breaker.snapshot().state;
    shared.count_action();
    let token = caller.token.unwrap_or_default();
    tracing::warn!(
        target: "breaker_admin",
        breaker = %name,
        action = wanted.action.as_str(),
        reason = %wanted.reason,
        token = %token,
        operator = wanted.operator.as_deref().unwrap_or(""),
        address = address.as_deref().unwrap_or(""),
        from = before.as_str(),
        to = after.as_str(),
        "operator action"
    );
    let view = view_of(&shared, &registered);
    let event_id = shared.publish(
        "action",
        &json!({
            "at": now_ms(),
            "breaker": name,
            "action": wanted.action.as_str(),
            "reason": wanted.reason,
            "by": { "token": token, "operator": wanted.operator, "address": address },
            "from": before.as_str(),
            "to": after.as_str(),
            "view": view,
        }),
    );
    axum::Json(json!({
        "event_id": format!("{}-{event_id}", shared.boot),
        "from": before.as_str(),
        "to": after.as_str(),
        "breaker": view,
    }))
    .into_response()
}
