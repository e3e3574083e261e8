//! The admin port (plain HTTP): `/healthz`, `/readyz`, `/metrics` and `/audit`.

use super::audit::AuditCell;
use super::metrics::{Metrics, CONTENT_TYPE};
use crate::source::SnapshotStore;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub(crate) struct AdminState {
    pub store: SnapshotStore,
    pub metrics: Arc<Metrics>,
    /// The webhook's TLS listener is bound and accepting.
    pub listening: Arc<AtomicBool>,
    pub audit: Arc<AuditCell>,
}

pub(crate) fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/audit", get(audit))
        .with_state(state)
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: a snapshot is loaded (in cluster mode: every watched kind listed, and
/// no watch failing for longer than the grace period) and the TLS listener
/// accepts connections.
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let mut missing = state.store.not_ready();
    if missing.is_empty() && !state.store.is_loaded() {
        missing.push("the mesh snapshot is not published yet".to_string());
    }
    if !state.listening.load(Ordering::SeqCst) {
        missing.push("the webhook listener is not accepting connections".to_string());
    }
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join("; ")),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    if let Some(status) = state.store.cluster() {
        state.metrics.read_watches(status);
    }
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct AuditQuery {
    namespace: Option<String>,
}

/// The last audit of the stored DestinationRules (JSON; `?namespace=` keeps one
/// namespace's findings), or 503 until the first one is done.
async fn audit(State(state): State<Arc<AdminState>>, Query(query): Query<AuditQuery>) -> Response {
    let Some(computed) = state.audit.latest() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "error": "no audit yet: it runs once a snapshot is loaded"
            })),
        )
            .into_response();
    };
    // Large meshes have large audits: rendered off the async workers.
    let body = tokio::task::spawn_blocking(move || {
        computed.findings.to_json(
            computed.computed_at,
            computed.took.as_secs_f64(),
            query.namespace.as_deref(),
        )
    })
    .await;
    match body {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("audit: {e}\n")).into_response(),
    }
}
