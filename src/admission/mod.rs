//! AdmissionReview in, AdmissionReview out (contract section 6), with no I/O:
//! the HTTP layer hands over the body and sends back what this returns.

mod request;

use crate::decision::policy_object::{auth_policy_warnings, peer_authentication_warnings};
use crate::decision::{judge, Outcome, Verdict, Warning};
use crate::enforcement::{self, Mode};
use crate::model::{AuthPolicy, DestinationRule, ObjectKind, ObjectRef, PeerAuthentication};
use crate::patch;
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use base64::Engine;
use kube::core::admission::Operation;
use kube::core::Status;
use request::{ObjectIn, RequestIn};
use serde::Serialize;
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
    pub const ALL: [ReviewVerdict; 4] = [
        ReviewVerdict::Allowed,
        ReviewVerdict::Patched,
        ReviewVerdict::Denied,
        ReviewVerdict::Error,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewVerdict::Allowed => "allowed",
            ReviewVerdict::Patched => "patched",
            ReviewVerdict::Denied => "denied",
            ReviewVerdict::Error => "error",
        }
    }
}

/// Whether the body could be answered as an AdmissionReview; the HTTP layer
/// picks the status code from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The request's AdmissionReview answer (allowed or denied), for its uid.
    Answer,
    /// The body is not an AdmissionReview that can be answered (not JSON, another
    /// version, no request or no uid); the body says why.
    Rejected,
}

/// The answer to one HTTP request, and what to log about it.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub delivery: Delivery,
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

/// The AdmissionReview answer, in the request's version. `patch` is base64, as
/// the API defines it (Go's `[]byte`).
#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// What the decision says about one request.
#[derive(Default)]
struct Answer {
    denied: Option<Status>,
    patch: Option<json_patch::Patch>,
    warnings: Vec<String>,
    /// The request could not be judged (no object, an object of the wrong shape):
    /// counted as an error whether or not it was allowed.
    unreadable: bool,
}

impl Answer {
    fn allow() -> Answer {
        Answer::default()
    }

    fn with_warnings(warnings: Vec<String>) -> Answer {
        Answer {
            warnings,
            ..Answer::default()
        }
    }

    /// An object that does not fit the typed view: the validating webhook denies
    /// it in mode `enforce`; otherwise it passes with a warning (the API server's
    /// schema check, which runs after the mutating webhooks, has the last word).
    fn unjudged(endpoint: Endpoint, mode: Mode, message: String) -> Answer {
        match endpoint {
            Endpoint::Validate if mode.enforces() => Answer::unreadable(message),
            _ => Answer {
                warnings: vec![format!("mtls-guard: not judged: {message}")],
                unreadable: true,
                ..Answer::default()
            },
        }
    }

    fn unreadable(message: String) -> Answer {
        Answer {
            denied: Some(status(400, message)),
            unreadable: true,
            ..Answer::default()
        }
    }
}

/// Answers one AdmissionReview body for `endpoint`.
pub fn review(
    snapshot: &Snapshot,
    settings: &Settings,
    endpoint: Endpoint,
    body: &[u8],
) -> Reviewed {
    respond(body, |request| {
        answer(snapshot, settings, endpoint, request)
    })
}

/// Answers a review while there is no snapshot to judge against (the cluster is
/// still being listed): a request that would be judged is denied with `reason`,
/// or with `allow` let through with a warning; the others are allowed as usual.
pub fn review_unsynced(settings: &Settings, body: &[u8], allow: bool, reason: &str) -> Reviewed {
    respond(body, |request| {
        let judged = matches!(request.operation, Operation::Create | Operation::Update)
            && request.kind.group == "networking.istio.io"
            && request.kind.kind == "DestinationRule"
            && settings.mode != Mode::Off;
        match (judged, allow) {
            (false, _) => Answer::allow(),
            (true, true) => Answer::with_warnings(vec![format!(
                "mtls-guard: not judged: {reason} (--unsynced allow)"
            )]),
            (true, false) => Answer {
                denied: Some(status(503, reason.to_string())),
                ..Answer::default()
            },
        }
    })
}

/// Reads the review and answers it with what `answer` says about its request.
fn respond(body: &[u8], answer: impl FnOnce(&RequestIn) -> Answer) -> Reviewed {
    let parsed = match request::parse(body) {
        Ok(r) => r,
        Err(e) => return unreadable(body, &e.to_string()),
    };
    let api_version = parsed.api_version.as_deref().unwrap_or("");
    if api_version != V1 && api_version != V1BETA1 {
        return error_answer(
            api_version,
            "",
            format!(
                "unsupported AdmissionReview apiVersion {api_version:?}: expected {V1} or {V1BETA1}"
            ),
        );
    }
    let Some(request) = parsed.request else {
        return error_answer(
            api_version,
            "",
            "AdmissionReview has no `request`".to_string(),
        );
    };
    let answer = answer(&request);
    let verdict = if answer.unreadable {
        ReviewVerdict::Error
    } else if answer.denied.is_some() {
        ReviewVerdict::Denied
    } else if answer.patch.is_some() {
        ReviewVerdict::Patched
    } else {
        ReviewVerdict::Allowed
    };
    let warnings = answer.warnings.len();
    let patch = answer.patch.map(|p| {
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&p).unwrap_or_default())
    });
    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: &request.uid,
            allowed: answer.denied.is_none(),
            status: answer.denied,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: answer.warnings,
        },
    };
    Reviewed {
        delivery: Delivery::Answer,
        body: serde_json::to_vec(&out).unwrap_or_default(),
        verdict,
        kind: request.kind.kind.clone(),
        uid: request.uid.to_string(),
        namespace: request.namespace.as_deref().unwrap_or("").to_string(),
        name: request.name.to_string(),
        operation: format!("{:?}", request.operation).to_ascii_uppercase(),
        dry_run: request.dry_run,
        warnings,
    }
}

/// The decision for a readable request.
fn answer(
    snapshot: &Snapshot,
    settings: &Settings,
    endpoint: Endpoint,
    request: &RequestIn,
) -> Answer {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Answer::allow();
    }
    let group = request.kind.group.as_str();
    let kind = request.kind.kind.as_str();
    let namespace = request.namespace.as_deref().unwrap_or("default");
    // A cluster-scoped object (a MeshPolicy) has no namespace label: the global mode.
    let mode = match request.namespace.as_deref() {
        Some(ns) => enforcement::mode_for(snapshot, settings, ns),
        None => settings.mode,
    };
    if !mode.judges() {
        return Answer::allow();
    }
    // A raw object is one the fast path did not type: type it here, or say why not.
    let typed;
    let object = match &request.object {
        ObjectIn::Raw(raw) => {
            typed = match ObjectKind::of_group_kind(group, kind) {
                Some(ObjectKind::DestinationRule) => {
                    match serde_json::from_str::<DestinationRule>(raw.get()) {
                        Ok(r) => ObjectIn::Rule(Box::new(r)),
                        Err(e) => {
                            let message =
                                format!("DestinationRule {namespace}/{}: {e}", request.name);
                            return Answer::unjudged(endpoint, mode, message);
                        }
                    }
                }
                Some(ObjectKind::Policy | ObjectKind::MeshPolicy) => {
                    match serde_json::from_str::<AuthPolicy>(raw.get()) {
                        Ok(p) => ObjectIn::Policy(Box::new(p)),
                        Err(_) => ObjectIn::Other,
                    }
                }
                Some(ObjectKind::PeerAuthentication) => {
                    match serde_json::from_str::<PeerAuthentication>(raw.get()) {
                        Ok(p) => ObjectIn::PeerAuthentication(Box::new(p)),
                        Err(_) => ObjectIn::Other,
                    }
                }
                _ => ObjectIn::Other,
            };
            &typed
        }
        other => other,
    };
    if let ObjectIn::Absent = object {
        return Answer::unreadable(format!("{kind} {} has no object", request.name));
    }
    match object {
        ObjectIn::Rule(rule) => {
            let verdict = judge(snapshot, settings, rule, namespace);
            destination_rule(settings, endpoint, mode, &verdict, rule)
        }
        // Section 8: policy objects are allowed, with a word about what Istio ignores or
        // reads otherwise; only the validating webhook speaks (the mutating one is silent).
        ObjectIn::Policy(_) | ObjectIn::PeerAuthentication(_) if endpoint == Endpoint::Mutate => {
            Answer::allow()
        }
        ObjectIn::Policy(p) => {
            let Some(object_kind) = ObjectKind::of_group_kind(group, kind) else {
                return Answer::allow();
            };
            let object = policy_ref(object_kind, request);
            policy_warnings(auth_policy_warnings(&object, &p.spec))
        }
        ObjectIn::PeerAuthentication(pa) => {
            let object = policy_ref(ObjectKind::PeerAuthentication, request);
            policy_warnings(peer_authentication_warnings(&object, &pa.spec))
        }
        _ => Answer::allow(),
    }
}

/// The object of a request, as warnings name it.
fn policy_ref(kind: ObjectKind, request: &RequestIn) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: request.namespace.as_deref().unwrap_or_default().to_string(),
        name: request.name.to_string(),
    }
}

fn policy_warnings(warnings: Vec<Warning>) -> Answer {
    Answer::with_warnings(
        warnings
            .into_iter()
            .map(|w| format!("mtls-guard: {}", w.message))
            .collect(),
    )
}

/// The answer for a judged DestinationRule in a mode that judges (`enforce` or `warn`).
fn destination_rule(
    settings: &Settings,
    endpoint: Endpoint,
    mode: Mode,
    verdict: &Verdict,
    rule: &DestinationRule,
) -> Answer {
    let domain = &settings.cluster_domain;
    let mut warnings: Vec<String> = verdict
        .warnings
        .iter()
        .map(|w| format!("mtls-guard: {}", w.message))
        .collect();
    // One message per group of findings that share a fix, worded as `check` words them.
    let grouped = |wanted: fn(&Outcome) -> bool| -> Vec<String> {
        verdict
            .groups()
            .iter()
            .filter(|g| wanted(&g.first.outcome))
            .map(|g| verdict.group_message(g, domain))
            .collect()
    };
    let is_change = |o: &Outcome| matches!(o, Outcome::Fill(_) | Outcome::Patch(_));
    // What the validating webhook denies: invalid modes, then conflicts.
    let denials = || -> Vec<String> {
        let mut lines: Vec<String> = verdict
            .invalid_modes
            .iter()
            .map(|i| i.message(&rule.spec))
            .collect();
        lines.extend(grouped(|o| *o == Outcome::Conflict));
        lines
    };
    match (endpoint, mode.enforces()) {
        // Invalid modes are left alone: only fills and patches are planned.
        (Endpoint::Mutate, true) => {
            if !verdict.has_change() {
                return Answer::with_warnings(warnings);
            }
            let plan = patch::plan(verdict, &rule.spec);
            warnings.extend(plan.changes.iter().map(patch::Change::warning));
            Answer {
                patch: (!plan.is_empty()).then_some(plan.patch),
                warnings,
                ..Answer::default()
            }
        }
        (Endpoint::Mutate, false) => {
            warnings.extend(
                grouped(is_change)
                    .into_iter()
                    .map(|m| format!("mtls-guard (warn mode, not applied): {m}")),
            );
            Answer::with_warnings(warnings)
        }
        (Endpoint::Validate, true) => {
            let denials = denials();
            warnings.extend(
                grouped(is_change)
                    .into_iter()
                    .map(|m| format!("mtls-guard: {m} (the mutating webhook did not apply this)")),
            );
            Answer {
                denied: (!denials.is_empty()).then(|| status(403, denials.join(DENIAL_SEPARATOR))),
                warnings,
                ..Answer::default()
            }
        }
        (Endpoint::Validate, false) => {
            warnings.extend(
                denials()
                    .into_iter()
                    .map(|m| format!("mtls-guard (warn mode, not denied): {m}")),
            );
            Answer::with_warnings(warnings)
        }
    }
}

/// Between the lines of a denial: one line per invalid mode and per group of
/// conflicts, each as `check` prints it (docs/architecture.md).
pub const DENIAL_SEPARATOR: &str = "\n";

fn status(code: u16, message: String) -> Status {
    let reason = match code {
        400 => "BadRequest",
        403 => "Forbidden",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    Status::failure(&message, reason).with_code(code)
}

/// A body that is not an AdmissionReview: rejected, in the review's own
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
        r.delivery = Delivery::Answer;
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
        delivery: Delivery::Rejected,
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
