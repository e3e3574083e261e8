//! Contract section 8, the multi-rule warning, through both webhooks on the captured
//! reviews: the tutorial's reviews rule (create 09/10, update 25) while an older rule in
//! bookinfo already sets a trafficPolicy for the same host.

use mtls_guard::admission::{review, Endpoint};
use mtls_guard::model::MeshObject;
use mtls_guard::settings::Settings;
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

fn object(v: Value) -> MeshObject {
    MeshObject::from_value(v).unwrap().unwrap()
}

/// Bookinfo's reviews Service and an older rule `legacy-reviews` for its FQDN.
fn snapshot(legacy_created: &str) -> Snapshot {
    Snapshot::from_objects([
        object(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "bookinfo"},
            "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}})),
        object(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "legacy-reviews", "namespace": "bookinfo", "creationTimestamp": legacy_created},
            "spec": {"host": "reviews.bookinfo.svc.cluster.local",
                     "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 10}}}}}),
        ),
    ])
}

fn warnings(snap: &Snapshot, endpoint: Endpoint, body: &Value) -> Vec<String> {
    let r = review(
        snap,
        &Settings::default(),
        endpoint,
        &serde_json::to_vec(body).unwrap(),
    );
    let out: Value = serde_json::from_slice(&r.body).unwrap();
    out["response"]["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

const WARNING: &str = "mtls-guard: DestinationRule bookinfo/legacy-reviews is older and also sets a trafficPolicy for host reviews.bookinfo.svc.cluster.local: Istio applies that rule's traffic policy and ignores this one's (this rule is still judged as written, since the older one may go)";

#[test]
fn s8_multi_rule_warning_on_both_webhooks() {
    let snap = snapshot("2020-01-01T00:00:00Z");
    for (prefix, endpoint) in [
        ("09", Endpoint::Mutate),
        ("10", Endpoint::Validate),
        ("25", Endpoint::Validate),
    ] {
        let w = warnings(&snap, endpoint, &fixture(prefix));
        assert!(w.iter().any(|w| w == WARNING), "{prefix}: {w:#?}");
    }
    // The captured rule (25) was created on 2026-11-28: a rule created later is the newer
    // one, so the captured rule gets no warning.
    let snap = snapshot("2099-01-01T00:00:00Z");
    let w = warnings(&snap, Endpoint::Validate, &fixture("25"));
    assert!(!w.iter().any(|w| w.contains("is older")), "{w:#?}");
}
