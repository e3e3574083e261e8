//! AdmissionReview in, AdmissionReview out (contract section 6), with no I/O:
//! the HTTP layer hands over the body and sends back what this returns.

use crate::decision::{judge, Outcome, Verdict};
use crate::model::{AuthPolicy, DestinationRule};
use crate::patch;
use crate::settings::{Mode, Settings};
use crate::snapshot::Snapshot;
use base64::Engine;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use serde_json::{json, Value};

const V1: &str = "admission.k8s.io/v1";
const V1BETA1: &str = "admission.k8s.io/v1beta1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(&self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// How a review ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewVerdict {
    Allowed,
    Patched,
    Denied,
    /// The review itself could not be read.
    Error,
}

impl ReviewVerdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewVerdict::Allowed => "allowed",
            ReviewVerdict::Patched => "patched",
            ReviewVerdict::Denied => "denied",
            ReviewVerdict::Error => "error",
        }
    }
}

/// The answer to one HTTP request, and what to log about it.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// 200 for every AdmissionReview answer, 400 when the body is not one.
    pub status: u16,
    pub body: Vec<u8>,
    pub verdict: ReviewVerdict,
    pub kind: String,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    pub dry_run: bool,
    pub warnings: usize,
}

/// Answers one AdmissionReview body for `endpoint`.
pub fn review(
    snapshot: &Snapshot,
    settings: &Settings,
    endpoint: Endpoint,
    body: &[u8],
) -> Reviewed {
    let parsed: Result<AdmissionReview<DynamicObject>, _> = serde_json::from_slice(body);
    let review = match parsed {
        Ok(r) => r,
        Err(e) => return unreadable(body, &e.to_string()),
    };
    let api_version = review.types.api_version.clone();
    if api_version != V1 && api_version != V1BETA1 {
        return error_answer(
            &api_version,
            "",
            format!("unsupported AdmissionReview apiVersion {api_version:?}: expected {V1} or {V1BETA1}"),
        );
    }
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            return error_answer(
                &api_version,
                "",
                "AdmissionReview has no `request`".to_string(),
            )
        }
    };
    let mut out = Reviewed {
        status: 200,
        body: Vec::new(),
        verdict: ReviewVerdict::Allowed,
        kind: request.kind.kind.clone(),
        uid: request.uid.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        name: request.name.clone(),
        operation: format!("{:?}", request.operation).to_ascii_uppercase(),
        dry_run: request.dry_run,
        warnings: 0,
    };
    let response = answer(snapshot, settings, endpoint, &request);
    out.verdict = if !response.allowed {
        ReviewVerdict::Denied
    } else if response.patch.is_some() {
        ReviewVerdict::Patched
    } else {
        ReviewVerdict::Allowed
    };
    out.warnings = response.warnings.as_ref().map_or(0, Vec::len);
    out.body = encode(response);
    out
}

/// Serializes the answer. kube-core writes `patch` as an array of numbers;
/// the AdmissionReview API defines it as base64 (Go's `[]byte`), so it is
/// re-encoded here.
fn encode(response: AdmissionResponse) -> Vec<u8> {
    let patch = response.patch.clone();
    let mut value = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let (Some(bytes), Some(slot)) = (patch, value.pointer_mut("/response/patch")) {
        *slot = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The decision for a readable request.
fn answer(
    snapshot: &Snapshot,
    settings: &Settings,
    endpoint: Endpoint,
    request: &AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let allow = AdmissionResponse::from(request);
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return allow;
    }
    let group = request.kind.group.as_str();
    let kind = request.kind.kind.as_str();
    let Some(object) = request.object.as_ref() else {
        return deny(allow, 400, format!("{kind} {} has no object", request.name));
    };
    let raw = match serde_json::to_value(object) {
        Ok(v) => v,
        Err(e) => return deny(allow, 400, format!("cannot read the object: {e}")),
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| object.metadata.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let mode = snapshot.namespace_mode(&namespace).unwrap_or(settings.mode);
    if mode == Mode::Off {
        return allow;
    }
    match (group, kind) {
        ("networking.istio.io", "DestinationRule") => {
            let rule = match DestinationRule::deserialize_from(&raw) {
                Ok(r) => r,
                Err(e) => {
                    return deny(
                        allow,
                        400,
                        format!("DestinationRule {namespace}/{}: {e}", request.name),
                    )
                }
            };
            let verdict = judge(snapshot, settings, &rule, &namespace);
            destination_rule(settings, endpoint, mode, allow, &verdict, &rule, &raw)
        }
        ("authentication.istio.io", "Policy" | "MeshPolicy") => {
            // Allowed untouched; only the YAML-null trap is worth a word.
            match serde_json::from_value::<AuthPolicy>(raw) {
                Ok(p) if p.spec.has_peer_without_mtls() => with_warnings(
                    allow,
                    vec![format!(
                        "mtls-guard: {kind} {}: a peers element has no `mtls` key, so Istio reads it as no mTLS (PLAINTEXT); write `mtls: {{}}` if mutual TLS was meant (a YAML `mtls:` null is dropped by client-side kubectl apply)",
                        request.name
                    )],
                ),
                _ => allow,
            }
        }
        _ => allow,
    }
}

fn destination_rule(
    settings: &Settings,
    endpoint: Endpoint,
    mode: Mode,
    allow: AdmissionResponse,
    verdict: &Verdict,
    rule: &DestinationRule,
    raw: &Value,
) -> AdmissionResponse {
    let domain = &settings.cluster_domain;
    let mut warnings: Vec<String> = verdict
        .warnings
        .iter()
        .map(|w| format!("mtls-guard: {}", w.message))
        .collect();
    match (endpoint, mode) {
        (_, Mode::Off) => allow,
        (Endpoint::Mutate, Mode::Enforce) => {
            let plan = patch::plan(verdict, &rule.spec, raw);
            warnings.extend(plan.changes.iter().cloned());
            let allow = with_warnings(allow, warnings);
            if plan.is_empty() {
                return allow;
            }
            match allow.clone().with_patch(plan.patch) {
                Ok(r) => r,
                Err(e) => deny(allow, 500, format!("cannot serialize the patch: {e}")),
            }
        }
        (Endpoint::Mutate, Mode::Warn) => {
            warnings.extend(verdict.changes().map(|f| {
                format!(
                    "mtls-guard (warn mode, not applied): {}",
                    verdict.message(f, domain)
                )
            }));
            with_warnings(allow, warnings)
        }
        (Endpoint::Validate, Mode::Enforce) => {
            let conflicts: Vec<String> = verdict
                .conflicts()
                .map(|f| verdict.message(f, domain))
                .collect();
            warnings.extend(verdict.changes().map(|f| {
                format!(
                    "mtls-guard: {} (the mutating webhook did not apply this)",
                    verdict.message(f, domain)
                )
            }));
            let allow = with_warnings(allow, warnings);
            if conflicts.is_empty() {
                allow
            } else {
                deny(allow, 403, conflicts.join("; "))
            }
        }
        (Endpoint::Validate, Mode::Warn) => {
            warnings.extend(
                verdict
                    .findings
                    .iter()
                    .filter(|f| f.outcome == Outcome::Conflict)
                    .map(|f| {
                        format!(
                            "mtls-guard (warn mode, not denied): {}",
                            verdict.message(f, domain)
                        )
                    }),
            );
            with_warnings(allow, warnings)
        }
    }
}

fn with_warnings(mut r: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        r.warnings = Some(warnings);
    }
    r
}

fn deny(r: AdmissionResponse, code: u16, message: String) -> AdmissionResponse {
    let reason = match code {
        400 => "BadRequest",
        403 => "Forbidden",
        _ => "InternalError",
    };
    let mut r = r.deny(&message);
    r.result = Status::failure(&message, reason).with_code(code);
    r
}

/// A body that is not an AdmissionReview: answer 400, in the review's own
/// version and with its uid where those can still be read.
fn unreadable(body: &[u8], error: &str) -> Reviewed {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let mut r = error_answer(V1, "", format!("request body is not JSON: {error}"));
        r.body =
            serde_json::to_vec(&json!({ "error": format!("request body is not JSON: {error}") }))
                .unwrap_or_default();
        return r;
    };
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|v| *v == V1 || *v == V1BETA1)
        .unwrap_or(V1);
    let uid = value
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut r = error_answer(
        api_version,
        uid,
        format!("request body is not a valid AdmissionReview: {error}"),
    );
    if !uid.is_empty() {
        // With a uid, the API server can match the answer: a denial, not an HTTP error.
        r.status = 200;
    }
    r.kind = value
        .pointer("/request/kind/kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    r
}

fn error_answer(api_version: &str, uid: &str, message: String) -> Reviewed {
    let body = json!({
        "apiVersion": if api_version == V1BETA1 { V1BETA1 } else { V1 },
        "kind": "AdmissionReview",
        "response": {
            "uid": uid,
            "allowed": false,
            "status": { "status": "Failure", "code": 400, "reason": "BadRequest", "message": message },
        },
    });
    Reviewed {
        status: 400,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        verdict: ReviewVerdict::Error,
        kind: String::new(),
        uid: uid.to_string(),
        namespace: String::new(),
        name: String::new(),
        operation: String::new(),
        dry_run: false,
        warnings: 0,
    }
}
