//! The webhook routes: `POST /mutate` and `POST /validate` hand the body to the pure
//! [`admission::review`] and send back what it returns; everything else is 404/405.

use super::logging::{clean, ReviewLog};
use super::metrics::Metrics;
use crate::admission::{self, Delivery, Endpoint, ReviewVerdict};
use crate::settings::Settings;
use crate::source::{SnapshotStore, Unsynced};
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct WebhookState {
    pub store: SnapshotStore,
    /// The flags' settings, for reviews answered before a snapshot is published
    /// (a published snapshot carries its own).
    pub settings: Settings,
    /// How reviews are answered before then (cluster mode).
    pub unsynced: Unsynced,
    pub metrics: Arc<Metrics>,
    /// Longest time to read a request body and answer it.
    pub review_timeout: Duration,
    /// Slots for reviews in flight (`ConnLimits::max_in_flight`): bounds the memory
    /// held by request bodies whatever the number of connections and streams.
    pub slots: tokio::sync::Semaphore,
    /// Largest body read (`BODY_LIMIT`).
    pub body_limit: usize,
    pub review_log: ReviewLog,
}

pub(crate) fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .fallback(not_found)
        .with_state(state)
}

async fn mutate(State(state): State<Arc<WebhookState>>, req: Request) -> Response {
    handle(&state, Endpoint::Mutate, req).await
}

async fn validate(State(state): State<Arc<WebhookState>>, req: Request) -> Response {
    handle(&state, Endpoint::Validate, req).await
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not found: this port serves POST /mutate and POST /validate",
    )
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// The API server appends `?timeout=10s` (the webhook's `timeoutSeconds`): past that
/// nobody waits for the answer.
fn caller_timeout(query: Option<&str>) -> Option<Duration> {
    let value = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))?;
    parse_go_duration(value)
}

/// Parses the simple Go durations the API server sends (`10s`, `1m30s`, `500ms`).
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => number * 3600.0,
            "m" => number * 60.0,
            "s" => number,
            "ms" => number / 1e3,
            "us" | "µs" => number / 1e6,
            "ns" => number / 1e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(seconds).ok()?;
    }
    Some(total)
}

async fn handle(state: &WebhookState, endpoint: Endpoint, req: Request) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.request_started();
    let deadline = caller_timeout(req.uri().query())
        .map_or(state.review_timeout, |t| t.min(state.review_timeout));
    // Held until the answer is built.
    let _slot = match tokio::time::timeout(deadline, state.slots.acquire()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            return refuse(
                state,
                endpoint,
                started,
                StatusCode::SERVICE_UNAVAILABLE,
                "too many reviews in flight: none could start before the deadline",
            )
        }
    };
    let remaining = deadline.saturating_sub(started.elapsed());
    let body = match tokio::time::timeout(remaining, read_body(req, state.body_limit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge(rest))) => {
            // The slot bounds memory; the rest of the body is only counted.
            drop(_slot);
            let remaining = deadline.saturating_sub(started.elapsed());
            let _ = tokio::time::timeout(remaining, drain(rest, DRAIN_LIMIT)).await;
            return refuse(
                state,
                endpoint,
                started,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large: an AdmissionReview is at most 3 MiB",
            );
        }
        Ok(Err(BodyError::Read(e))) => {
            let message = format!("cannot read the request body: {e}");
            return refuse(state, endpoint, started, StatusCode::BAD_REQUEST, &message);
        }
        Err(_) => {
            let message = format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            );
            return refuse(
                state,
                endpoint,
                started,
                StatusCode::REQUEST_TIMEOUT,
                &message,
            );
        }
    };
    // In cluster mode, a watch failing past the grace period may have left the
    // snapshot stale: answered as before the first sync, not judged.
    let lost = state.store.cluster().map(|c| c.lost()).unwrap_or_default();
    let reviewed = match state.store.current() {
        Some(view) if lost.is_empty() => {
            admission::review(&view.snapshot, &view.settings, endpoint, &body)
        }
        current => match state.store.cluster() {
            Some(cluster) => {
                let reason = if current.is_some() {
                    format!(
                        "mtls-guard has lost its watch of the cluster and cannot judge this \
                         against its current state ({}); retry in a moment",
                        lost.join("; ")
                    )
                } else {
                    let pending = cluster.pending();
                    let waiting = if pending.is_empty() {
                        "publishing the first snapshot".to_string()
                    } else {
                        format!("not listed yet: {}", pending.join(", "))
                    };
                    format!(
                        "mtls-guard is still syncing with the cluster and cannot judge this yet \
                         ({waiting}); retry in a moment"
                    )
                };
                let allow = state.unsynced == Unsynced::Allow;
                admission::review_unsynced(&state.settings, &body, allow, &reason)
            }
            None => {
                return refuse(
                    state,
                    endpoint,
                    started,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the mesh snapshot is not loaded yet",
                )
            }
        },
    };
    let elapsed = started.elapsed();
    state.metrics.observe_review(
        endpoint.as_str(),
        reviewed.verdict.as_str(),
        &reviewed.kind,
        elapsed,
    );
    let duration_ms = millis(elapsed);
    // Values from the request are cleaned; nothing of the object itself is logged.
    let (uid, kind) = (clean(&reviewed.uid), clean(&reviewed.kind));
    if reviewed.verdict == ReviewVerdict::Error {
        tracing::warn!(
            endpoint = %endpoint.as_str(),
            status = http_status(reviewed.delivery).as_u16(),
            %uid,
            %kind,
            verdict = %reviewed.verdict.as_str(),
            body_bytes = body.len(),
            duration_ms,
            "review: unreadable request"
        );
    } else {
        let changed = reviewed.verdict != ReviewVerdict::Allowed || reviewed.warnings > 0;
        let (namespace, name) = (clean(&reviewed.namespace), clean(&reviewed.name));
        let operation = clean(&reviewed.operation);
        macro_rules! review_line {
            ($level:ident) => {
                tracing::$level!(
                    endpoint = %endpoint.as_str(),
                    %uid,
                    %kind,
                    %namespace,
                    %name,
                    %operation,
                    verdict = %reviewed.verdict.as_str(),
                    dry_run = reviewed.dry_run,
                    warnings = reviewed.warnings,
                    duration_ms,
                    "review"
                )
            };
        }
        if state.review_log.at_info(changed) {
            review_line!(info);
        } else {
            review_line!(debug);
        }
    }
    if elapsed > deadline {
        tracing::warn!(
            %uid,
            deadline_ms = deadline.as_millis() as u64,
            duration_ms,
            "answered after the caller's deadline"
        );
    }
    (
        http_status(reviewed.delivery),
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(reviewed.body),
    )
        .into_response()
}

/// The HTTP status of a review's answer: 200 for every AdmissionReview answer
/// (a denial included: the API server reads it from the body), 400 when the body
/// was not an AdmissionReview that could be answered.
pub fn http_status(delivery: Delivery) -> StatusCode {
    match delivery {
        Delivery::Answer => StatusCode::OK,
        Delivery::Rejected => StatusCode::BAD_REQUEST,
    }
}

/// How much of a too-large body is read and thrown away before the 413 is sent.
///
/// A client that answers only once it has sent its whole body (curl; HTTP/2
/// clients that treat a reset stream as a failure) can then read the 413. A server
/// may answer early and reset the stream with NO_ERROR (RFC 9113 section 8.1),
/// which hyper does, but not every client reads an answer that arrives while it is
/// still sending. Past this much, the answer goes out anyway.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

enum BodyError {
    /// Over the limit: what is left of the body, not read yet.
    TooLarge(BodyDataStream),
    Read(axum::Error),
}

/// Reads a body of at most `limit` bytes; a larger one is refused before it is
/// read whole when its Content-Length says so.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = req.into_body().into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(stream));
    }
    let capacity = declared.map_or(16 * 1024, |n| n as usize);
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(stream));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// Reads and drops up to `limit` bytes of `rest`.
async fn drain(mut rest: BodyDataStream, limit: usize) {
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = rest.next().await {
        seen += chunk.len();
        if seen > limit {
            return;
        }
    }
}

/// Milliseconds, rounded to the microsecond, for logs.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Answers a request that never reached the review (too large, too slow, no snapshot).
fn refuse(
    state: &WebhookState,
    endpoint: Endpoint,
    started: Instant,
    status: StatusCode,
    message: &str,
) -> Response {
    let elapsed = started.elapsed();
    state.metrics.observe_review(
        endpoint.as_str(),
        ReviewVerdict::Error.as_str(),
        "",
        elapsed,
    );
    tracing::warn!(
        endpoint = %endpoint.as_str(),
        status = status.as_u16(),
        verdict = %ReviewVerdict::Error.as_str(),
        duration_ms = millis(elapsed),
        error = message,
        "review: refused"
    );
    json_error(status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("s"), None);
    }

    #[test]
    fn timeout_from_query() {
        assert_eq!(
            caller_timeout(Some("timeout=10s")),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            caller_timeout(Some("a=b&timeout=3s")),
            Some(Duration::from_secs(3))
        );
        assert_eq!(caller_timeout(None), None);
        assert_eq!(caller_timeout(Some("timeout=soon")), None);
    }
}
