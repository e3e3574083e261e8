//! AdmissionReview in, AdmissionReview out (contract section 6), with no I/O:
//! the HTTP layer hands over the body and sends back what this returns.

mod request;

use crate::decision::policy_object::{auth_policy_warnings, peer_authentication_warnings};
use crate::decision::{judge, review_change, Change, Outcome, Verdict};
use crate::enforcement::{self, Mode};
use crate::model::{AuthPolicy, DestinationRule, MeshObject, ObjectKind, PeerAuthentication};
use crate::patch;
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use base64::Engine;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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
/// still being listed, or a watch has been lost past the grace period): a request that would be judged is denied with `reason`,
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
    let group = request.kind.group.as_str();
    let kind = request.kind.kind.as_str();
    let object_kind = ObjectKind::of_group_kind(group, kind);
    if let Some(k) = object_kind.filter(|k| k.info().changes_reviewed) {
        return other_side(snapshot, settings, endpoint, request, k);
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Answer::allow();
    }
    let namespace = request.namespace.as_deref().unwrap_or("default");
    let mode = enforcement::mode_for(snapshot, settings, namespace);
    if !mode.judges() || object_kind != Some(ObjectKind::DestinationRule) {
        return Answer::allow();
    }
    let rule = match &request.object {
        ObjectIn::Rule(rule) => std::borrow::Cow::Borrowed(&**rule),
        // A raw object is one the fast path did not type: type it here, or say why not.
        ObjectIn::Raw(raw) => match serde_json::from_str::<DestinationRule>(raw.get()) {
            Ok(r) => std::borrow::Cow::Owned(r),
            Err(e) => {
                let message = format!("DestinationRule {namespace}/{}: {e}", request.name);
                return Answer::unjudged(endpoint, mode, message);
            }
        },
        ObjectIn::Absent => {
            return Answer::unreadable(format!("{kind} {} has no object", request.name))
        }
        _ => return Answer::allow(),
    };
    let verdict = judge(snapshot, settings, &rule, namespace);
    destination_rule(settings, endpoint, mode, &verdict, &rule)
}

/// A change to the other side of the pair (contract section 8): allowed, with the
/// rules it breaks or leaves behind (denied with `--deny-breaking-changes` when it
/// breaks one in `enforce`), and the warnings about the object itself. Only the
/// validating webhook speaks: the mutating one allows these untouched and silent.
fn other_side(
    snapshot: &Snapshot,
    settings: &Settings,
    endpoint: Endpoint,
    request: &RequestIn,
    kind: ObjectKind,
) -> Answer {
    if endpoint == Endpoint::Mutate {
        return Answer::allow();
    }
    // A cluster-scoped object has no namespace label: the global mode.
    let object_mode = match request.namespace.as_deref() {
        Some(ns) => enforcement::mode_for(snapshot, settings, ns),
        None => settings.mode,
    };
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let change = match request.operation {
        Operation::Create | Operation::Update => {
            match mesh_object(kind, &request.object, namespace, &request.name) {
                Ok(Some(obj)) => Change::Apply(obj),
                Ok(None) => {
                    return Answer::unreadable(format!("{kind} {} has no object", request.name))
                }
                Err(e) => return not_judged(format!("{kind} {}: {e}", request.name)),
            }
        }
        Operation::Delete => Change::Delete {
            kind,
            namespace: namespace.to_string(),
            name: request.name.to_string(),
            // Without the old object the change is still reviewed; only its label
            // lacks the mode.
            old: mesh_object(kind, &request.old_object, namespace, &request.name)
                .ok()
                .flatten(),
        },
        Operation::Connect => return Answer::allow(),
    };
    let mut answer = Answer::allow();
    if object_mode.judges() {
        if let Change::Apply(obj) = &change {
            let object = change.object();
            let warnings = match obj {
                MeshObject::Policy(p) | MeshObject::MeshPolicy(p) => {
                    auth_policy_warnings(&object, &p.spec)
                }
                MeshObject::PeerAuthentication(pa) => {
                    peer_authentication_warnings(&object, &pa.spec)
                }
                _ => Vec::new(),
            };
            answer.warnings.extend(
                warnings
                    .into_iter()
                    .map(|w| format!("mtls-guard: {}", w.message)),
            );
        }
    }
    let review = review_change(snapshot, settings, &change);
    if object_mode.judges() {
        let label = &review.label;
        answer.warnings.extend(
            review
                .backends
                .iter()
                .map(|b| format!("mtls-guard: {label}: {}", b.message())),
        );
    }
    if let Some(message) = review.message() {
        if review.denied(settings) {
            answer.denied = Some(status(403, message));
        } else {
            answer.warnings.push(format!("mtls-guard: {message}"));
        }
    }
    answer
}

/// A change that could not be read into its typed view: allowed (this webhook only
/// warns, and the API server has validated the object), with a warning.
fn not_judged(message: String) -> Answer {
    Answer {
        warnings: vec![format!("mtls-guard: not judged: {message}")],
        unreadable: true,
        ..Answer::default()
    }
}

/// The request's object (or old object) of a reviewed kind, typed; `Ok(None)` when absent.
/// A namespaced object without a namespace or name takes the request's.
fn mesh_object(
    kind: ObjectKind,
    object: &ObjectIn,
    namespace: &str,
    name: &str,
) -> Result<Option<MeshObject>, serde_json::Error> {
    let fill = |meta: &mut ObjectMeta| {
        if kind.info().namespaced && meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some(namespace.to_string());
        }
        if meta.name.as_deref().is_none_or(str::is_empty) {
            meta.name = Some(name.to_string());
        }
    };
    let obj = match object {
        ObjectIn::Absent | ObjectIn::Rule(_) | ObjectIn::Other => return Ok(None),
        ObjectIn::Policy(p) => {
            let mut p = AuthPolicy::clone(p);
            fill(&mut p.metadata);
            if kind == ObjectKind::MeshPolicy {
                MeshObject::MeshPolicy(p)
            } else {
                MeshObject::Policy(p)
            }
        }
        ObjectIn::PeerAuthentication(pa) => {
            let mut pa = PeerAuthentication::clone(pa);
            fill(&mut pa.metadata);
            MeshObject::PeerAuthentication(pa)
        }
        ObjectIn::Raw(raw) => {
            let mut value: Value = serde_json::from_str(raw.get())?;
            if let Some(meta) = value.get_mut("metadata") {
                let mut typed: ObjectMeta = serde_json::from_value(meta.take())?;
                fill(&mut typed);
                *meta = serde_json::to_value(typed)?;
            }
            (kind.info().read)(value)?
        }
    };
    Ok(Some(obj))
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
