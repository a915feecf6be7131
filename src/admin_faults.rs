//! The admin routes of issue 16: live faults and the traffic journal.
//! - `GET /services/NAME/faults`: the faults in force, as JSON with the keys
//!   of the service's `[*.faults]` table (`{}` = none).
//! - `PUT /services/NAME/faults`: replaces them (the same JSON; every key
//!   absent = that fault off), effective at once on open connections and
//!   sockets; `DELETE` clears them. Both need `[admin] control = true` (403
//!   otherwise); the bearer token is checked before, as for every route.
//! - `GET /services/NAME/journal?since=SEQ`: entries after SEQ;
//!   `DELETE /services/NAME/journal` clears it (needs `control`).
//!
//! Data flow: handlers look the service up in the [`Registry`] the
//! supervisor keeps and change its [`crate::faults::Fixture`]; the services
//! read it on their next batch. A config reload resets faults to the file's values.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tracing::info;

use crate::admin::Shared;
use crate::faults::{Faults, Fixture};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/services/{name}/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .route(
            "/services/{name}/journal",
            get(get_journal).delete(delete_journal),
        )
}

fn text(status: StatusCode, msg: String) -> Response {
    (status, format!("{msg}\n")).into_response()
}

/// A refused request: status and message (small, unlike a `Response`).
pub(crate) struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn find(s: &Shared, name: &str) -> Result<Arc<Fixture>, Refusal> {
    s.fixtures.get(name).ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            format!("no service named {name:?}; GET /services lists them"),
        )
    })
}

/// 403 unless `[admin] control = true`.
pub(crate) fn control(s: &Shared, what: &str) -> Result<(), Refusal> {
    if s.control {
        return Ok(());
    }
    Err(Refusal(
        StatusCode::FORBIDDEN,
        format!(
            "{what} changes the daemon; it needs [admin] control = true in the config (off by default)"
        ),
    ))
}

async fn get_faults(Extract(s): Extract<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match find(&s, &name) {
        Ok(fx) => axum::Json(fx.faults().to_json()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn put_faults(
    Extract(s): Extract<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let fx = match control(&s, "PUT /services/NAME/faults").and_then(|()| find(&s, &name)) {
        Ok(fx) => fx,
        Err(r) => return r.into_response(),
    };
    let faults = match Faults::from_json(fx.kind, &body) {
        Ok(f) => f,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("service {name:?}: {e}")),
    };
    let problems = crate::config::fault_problems(&faults);
    if !problems.is_empty() {
        let lines: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
        return text(
            StatusCode::BAD_REQUEST,
            format!("service {name:?}: {}", lines.join("; ")),
        );
    }
    info!(service = %name, faults = %faults.to_json(), "faults set over the admin endpoint");
    let shown = faults.to_json();
    fx.set(faults);
    axum::Json(shown).into_response()
}

async fn delete_faults(Extract(s): Extract<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let fx = match control(&s, "DELETE /services/NAME/faults").and_then(|()| find(&s, &name)) {
        Ok(fx) => fx,
        Err(r) => return r.into_response(),
    };
    info!(service = %name, "faults cleared over the admin endpoint");
    fx.set(Faults::none_for(fx.kind));
    axum::Json(json!({})).into_response()
}

async fn get_journal(
    Extract(s): Extract<Arc<Shared>>,
    Path(name): Path<String>,
    uri: Uri,
) -> Response {
    let fx = match find(&s, &name) {
        Ok(fx) => fx,
        Err(r) => return r.into_response(),
    };
    let since = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="));
    let since = match since.map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "since must be a sequence number (an integer >= 0)".into(),
            );
        }
    };
    let j = &fx.journal;
    axum::Json(json!({
        "service": name,
        "capacity": j.capacity(),
        "last_seq": j.last_seq(),
        "entries": j.since(since),
    }))
    .into_response()
}

async fn delete_journal(Extract(s): Extract<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let fx = match control(&s, "DELETE /services/NAME/journal").and_then(|()| find(&s, &name)) {
        Ok(fx) => fx,
        Err(r) => return r.into_response(),
    };
    fx.journal.clear();
    info!(service = %name, "journal cleared over the admin endpoint");
    axum::Json(json!({"last_seq": fx.journal.last_seq()})).into_response()
}
