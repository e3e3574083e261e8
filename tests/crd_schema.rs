//! Every patch the mutating webhook sends must leave a DestinationRule that still
//! validates against the Istio CRD's `openAPIV3Schema` (issue 3), for every
//! captured DestinationRule and for variants that exercise every kind of change.

use base64::Engine;
use mtls_guard::admission::{review, Endpoint, ReviewVerdict};
use mtls_guard::model::MeshObject;
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The `openAPIV3Schema` of each served DestinationRule version (derived from the
/// Istio CRD, see tests/fixtures/crds/README.md).
fn schemas() -> Vec<(String, jsonschema::Validator)> {
    let path = fixtures().join("crds/destinationrules.networking.istio.io.json");
    let versions: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let out: Vec<_> = versions
        .into_iter()
        .map(|(version, schema)| {
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&schema)
                .unwrap();
            (version, validator)
        })
        .collect();
    assert_eq!(out.len(), 3, "v1alpha3, v1beta1 and v1");
    out
}

fn snapshot(policy_peers: Value, extra: Vec<Value>) -> Snapshot {
    let mut objs = vec![
        json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
               "metadata": {"name": "default", "namespace": "bookinfo"}, "spec": {"peers": policy_peers}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "web", "namespace": "bookinfo"},
               "spec": {"defaultBackend": {"service": {"name": "productpage", "port": {"number": 9080}}}}}),
    ];
    for (name, ports) in [
        ("productpage", json!([{"name": "http", "port": 9080}])),
        (
            "reviews",
            json!([{"name": "http", "port": 9080}, {"name": "grpc", "port": 9090}]),
        ),
        ("ratings", json!([{"name": "http", "port": 9080}])),
        ("details", json!([{"name": "http", "port": 9080}])),
    ] {
        objs.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bookinfo"},
            "spec": {"selector": {"app": name}, "ports": ports}}));
    }
    // reviews:9090 is exempted at service-port level: ports of one rule need different modes.
    objs.push(
        json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
        "metadata": {"name": "reviews-grpc-plain", "namespace": "bookinfo"},
        "spec": {"targets": [{"name": "reviews", "ports": [{"number": 9090}]}], "peers": []}}),
    );
    objs.extend(extra);
    Snapshot::from_objects(
        objs.into_iter()
            .map(|v| MeshObject::from_value(v).unwrap().unwrap()),
    )
}

/// Rule variants built from the captured objects: every place a change can go.
fn variants(object: &Value) -> Vec<Value> {
    let mut out = vec![object.clone()];
    let mut set = |f: &dyn Fn(&mut Value)| {
        let mut o = object.clone();
        f(&mut o);
        out.push(o);
    };
    set(&|o| {
        o["spec"].as_object_mut().unwrap().remove("trafficPolicy");
    });
    set(
        &|o| o["spec"]["trafficPolicy"] = json!({"loadBalancer": {"simple": "RANDOM"}, "connectionPool": {"tcp": {"maxConnections": 10}}}),
    );
    set(&|o| o["spec"]["trafficPolicy"] = json!({"tls": {}}));
    set(
        &|o| o["spec"]["trafficPolicy"] = json!({"tls": {"mode": "ISTIO_MUTUAL", "sni": "x.example"}, "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "LEAST_REQUEST"}}]}),
    );
    set(&|o| {
        o["spec"]["trafficPolicy"] = json!({"outlierDetection": {"consecutive5xxErrors": 3}});
        if let Some(subsets) = o["spec"].get_mut("subsets").and_then(Value::as_array_mut) {
            for s in subsets {
                s["trafficPolicy"] = json!({"loadBalancer": {"simple": "ROUND_ROBIN"}});
            }
        }
    });
    set(&|o| {
        if let Some(subsets) = o["spec"].get_mut("subsets").and_then(Value::as_array_mut) {
            for s in subsets {
                s["trafficPolicy"] = json!({"portLevelSettings": [{"port": {"number": 9080}}]});
            }
        }
    });
    out
}

fn patched(snap: &Snapshot, body: &Value) -> Option<Value> {
    let r = review(
        snap,
        &Settings::default(),
        Endpoint::Mutate,
        &serde_json::to_vec(body).unwrap(),
    );
    let resp: Value = serde_json::from_slice(&r.body).unwrap();
    if r.verdict != ReviewVerdict::Patched {
        return None;
    }
    let b64 = resp["response"]["patch"].as_str().unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    let mut obj = body["request"]["object"].clone();
    json_patch::patch(&mut obj, &patch)
        .unwrap_or_else(|e| panic!("patch does not apply: {e}\n{patch:?}\n{obj:#}"));
    Some(obj)
}

#[test]
fn every_patch_leaves_a_schema_valid_rule_with_nothing_left_to_change() {
    let schemas = schemas();
    let snaps = [
        snapshot(json!([{"mtls": {}}]), vec![]),
        snapshot(json!([]), vec![]),
        snapshot(json!([{"mtls": {"mode": "PERMISSIVE"}}]), vec![]),
    ];
    let mut patched_count = 0;
    let mut judged = 0;
    for entry in std::fs::read_dir(fixtures().join("admission")).unwrap() {
        let path = entry.unwrap().path();
        let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if body["request"]["kind"]["kind"] != "DestinationRule"
            || body["request"]["object"].is_null()
        {
            continue;
        }
        for variant in variants(&body["request"]["object"]) {
            let mut b = body.clone();
            b["request"]["object"] = variant;
            for snap in &snaps {
                judged += 1;
                let Some(obj) = patched(snap, &b) else {
                    continue;
                };
                patched_count += 1;
                for (version, schema) in &schemas {
                    let errors: Vec<String> = schema
                        .iter_errors(&obj)
                        .map(|e| format!("{e} at {}", e.instance_path()))
                        .collect();
                    assert!(
                        errors.is_empty(),
                        "{}: patched object invalid for {version}: {errors:#?}\n{obj:#}",
                        path.display()
                    );
                }
                // Re-judge: the patched rule needs no further fill or patch.
                let mut again = b.clone();
                again["request"]["object"] = obj.clone();
                assert!(
                    patched(snap, &again).is_none(),
                    "{}: still patched after patching:\n{obj:#}",
                    path.display()
                );
            }
        }
    }
    assert!(judged > 300, "{judged}");
    assert!(patched_count > 50, "only {patched_count} patched variants");
}

#[test]
fn the_schema_check_can_fail() {
    // Guards the test above: a wrong patch would be caught.
    let schemas = schemas();
    let bad = [
        json!({"spec": {"host": "r", "trafficPolicy": {"tls": {"mode": "BOGUS"}}}}),
        json!({"spec": {"host": "r", "trafficPolicy": {"portLevelSettings": {"port": 1}}}}),
        json!({"spec": {"host": "r", "subsets": null}}),
    ];
    for obj in bad {
        for (version, schema) in &schemas {
            assert!(!schema.is_valid(&obj), "{version} accepted {obj}");
        }
    }
}
