//! Contract section 8, the warnings about a policy object itself: a Policy without
//! targets not named `default`, a MeshPolicy not named `default`, a PeerAuthentication
//! with `portLevelMtls` but no selector, and `peers: [{}]` (the YAML-null trap), said by
//! the validating webhook on the captured reviews (tests/fixtures/admission), following
//! the mode of the object's own namespace; the mutating webhook stays silent.

use mtls_guard::admission::{review, Endpoint, ReviewVerdict};
use mtls_guard::model::MeshObject;
use mtls_guard::settings::{Mode, Settings};
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Value};
use std::path::Path;

fn fixture(prefix: &str) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
        })
        .unwrap_or_else(|| panic!("no fixture {prefix}-*"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The captured review `prefix` with its object's name and spec replaced.
fn variant(prefix: &str, name: &str, spec: Value) -> Value {
    let mut review = fixture(prefix);
    review["request"]["name"] = name.into();
    review["request"]["object"]["metadata"]["name"] = name.into();
    review["request"]["object"]["spec"] = spec;
    review
}

/// Namespace `bookinfo` labelled with `mode` (none: the global mode applies).
fn snapshot(mode: Option<&str>) -> Snapshot {
    let labels = mode.map_or(json!({}), |m| json!({"mtls-guard.io/mode": m}));
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "bookinfo", "labels": labels}});
    Snapshot::from_objects([MeshObject::from_value(ns).unwrap().unwrap()])
}

/// The warnings of one review, which must allow the object without a patch.
fn warnings(snap: &Snapshot, settings: &Settings, endpoint: Endpoint, body: &Value) -> Vec<String> {
    let r = review(snap, settings, endpoint, &serde_json::to_vec(body).unwrap());
    assert_eq!(
        r.verdict,
        ReviewVerdict::Allowed,
        "policy objects are always allowed"
    );
    let out: Value = serde_json::from_slice(&r.body).unwrap();
    let response = &out["response"];
    assert_eq!(response["allowed"], true);
    assert_eq!(response["uid"], body["request"]["uid"]);
    assert!(response.get("patch").is_none(), "{response}");
    response["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn validate(body: &Value) -> Vec<String> {
    warnings(
        &snapshot(None),
        &Settings::default(),
        Endpoint::Validate,
        body,
    )
}

#[test]
fn s8_policy_without_targets_not_named_default() {
    let body = variant("02", "strict-all", json!({"peers": [{"mtls": {}}]}));
    assert_eq!(
        validate(&body),
        ["mtls-guard: Policy bookinfo/strict-all has no targets and is not named `default`: Istio ignores it (only the Policy named `default` applies to a whole namespace); name it `default`, or list the services it is for in `targets`"]
    );
    // Named `default`, or aimed at services: nothing to say.
    assert!(validate(&fixture("02")).is_empty());
    let targeted = variant(
        "02",
        "web",
        json!({"targets": [{"name": "productpage"}], "peers": []}),
    );
    assert!(validate(&targeted).is_empty());
}

#[test]
fn s8_meshpolicy_not_named_default() {
    let body = variant("35", "strict", json!({"peers": [{"mtls": {}}]}));
    assert_eq!(
        validate(&body),
        ["mtls-guard: MeshPolicy strict is not named `default`: Istio ignores it (only the MeshPolicy named `default` applies to the mesh); name it `default`"]
    );
    assert!(validate(&fixture("35")).is_empty());
}

#[test]
fn s8_peer_authentication_port_level_without_selector() {
    let body = variant(
        "31",
        "default",
        json!({"mtls": {"mode": "STRICT"}, "portLevelMtls": {"9080": {"mode": "DISABLE"}}}),
    );
    let w = validate(&body);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("mtls-guard: PeerAuthentication bookinfo/default has portLevelMtls (ports 9080) but no selector: Istio rejects"),
        "{}",
        w[0]
    );
    // The captured ones: namespace-wide without ports, and a workload one with ports.
    assert!(validate(&fixture("31")).is_empty());
    assert!(validate(&fixture("33")).is_empty());
}

#[test]
fn s8_peers_element_without_mtls() {
    // The captured `kubectl apply` of the tutorial's `- mtls:` (peers: [{}]).
    let w = validate(&fixture("04"));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("Policy bookinfo/null-trap has no targets and is not named `default`"));
    assert_eq!(w[1], "mtls-guard: Policy bookinfo/null-trap has a peers element without an `mtls` key and none with one, which Istio reads as no mTLS (PLAINTEXT); if mutual TLS was meant there, write `mtls: {}` (a YAML `mtls:` null is dropped by client-side kubectl apply)");
    let as_default = variant("04", "default", json!({"peers": [{}]}));
    assert_eq!(validate(&as_default).len(), 1);
}

#[test]
fn s8_mutating_webhook_is_silent_and_modes_apply() {
    let bodies = [
        variant("02", "strict-all", json!({"peers": [{"mtls": {}}]})),
        fixture("04"),
        variant(
            "31",
            "default",
            json!({"portLevelMtls": {"9080": {"mode": "DISABLE"}}}),
        ),
    ];
    let settings = Settings::default();
    for body in &bodies {
        // "should the mutating one receive them, it allows them untouched and silent".
        let mutating = body.clone();
        assert!(
            warnings(&snapshot(None), &settings, Endpoint::Mutate, &mutating).is_empty(),
            "{body}"
        );
        // The object's own namespace decides: off says nothing, warn and enforce warn.
        assert!(warnings(&snapshot(Some("off")), &settings, Endpoint::Validate, body).is_empty());
        for mode in ["warn", "enforce"] {
            assert!(
                !warnings(&snapshot(Some(mode)), &settings, Endpoint::Validate, body).is_empty()
            );
        }
        // A dry run is judged the same way.
        let mut dry = body.clone();
        dry["request"]["dryRun"] = true.into();
        assert!(!validate(&dry).is_empty());
        // DELETE is allowed silently.
        let mut delete = body.clone();
        delete["request"]["operation"] = "DELETE".into();
        delete["request"]["oldObject"] = delete["request"]["object"].take();
        assert!(validate(&delete).is_empty());
    }
    // A MeshPolicy has no namespace: the global mode decides.
    let mesh = variant("35", "strict", json!({"peers": [{"mtls": {}}]}));
    let off = Settings {
        mode: Mode::Off,
        ..Settings::default()
    };
    assert!(warnings(&snapshot(Some("enforce")), &off, Endpoint::Validate, &mesh).is_empty());
    assert_eq!(
        warnings(&snapshot(Some("off")), &settings, Endpoint::Validate, &mesh).len(),
        1
    );
}
