//! Patch planning (contract section 6, mutating): exact operations for each
//! place a change can go.

use mtls_guard::decision::judge;
use mtls_guard::model::{DestinationRule, MeshObject};
use mtls_guard::patch::plan;
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Value};

/// bookinfo: namespace Policy STRICT; reviews has ports 9080 and 9090, and
/// 9090 is exempted by a service-port Policy (PLAINTEXT, exemption (b)).
fn snapshot() -> Snapshot {
    let objs = vec![
        json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
               "metadata": {"name": "default", "namespace": "bookinfo"}, "spec": {"peers": [{"mtls": {}}]}}),
        json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
               "metadata": {"name": "grpc-plain", "namespace": "bookinfo"},
               "spec": {"targets": [{"name": "reviews", "ports": [{"name": "grpc"}]}], "peers": []}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "bookinfo"},
               "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}, {"name": "grpc", "port": 9090}]}}),
    ];
    Snapshot::from_objects(
        objs.into_iter()
            .map(|v| MeshObject::from_value(v).unwrap().unwrap()),
    )
}

fn rule(spec: Value) -> (DestinationRule, Value) {
    let raw = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                     "metadata": {"name": "reviews", "namespace": "bookinfo"}, "spec": spec});
    (DestinationRule::deserialize_from(&raw).unwrap(), raw)
}

fn ops(spec: Value) -> (Value, Vec<String>, Value) {
    let snap = snapshot();
    let (dr, raw) = rule(spec);
    let verdict = judge(&snap, &Settings::default(), &dr, "bookinfo");
    let p = plan(&verdict, &dr.spec);
    let mut patched = raw.clone();
    json_patch::patch(&mut patched, &p.patch).unwrap();
    // Nothing left to fill or patch afterwards.
    let again = DestinationRule::deserialize_from(&patched).unwrap();
    let v2 = judge(&snap, &Settings::default(), &again, "bookinfo");
    assert!(!v2.has_change(), "{v2:#?}");
    (
        serde_json::to_value(&p.patch).unwrap(),
        p.changes.iter().map(|c| c.warning()).collect(),
        patched["spec"].clone(),
    )
}

#[test]
fn s6_only_some_ports_change_gets_port_entries_with_copied_settings() {
    let (patch, changes, spec) = ops(json!({"host": "reviews", "trafficPolicy": {
        "tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "RANDOM"}, "tunnel": {"protocol": "CONNECT", "targetHost": "x", "targetPort": 1}}}));
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/trafficPolicy/portLevelSettings", "value": []},
            {"op": "add", "path": "/spec/trafficPolicy/portLevelSettings/-", "value":
                {"port": {"number": 9090}, "loadBalancer": {"simple": "RANDOM"}, "tls": {"mode": "DISABLE"}}}
        ])
    );
    assert_eq!(
        spec["trafficPolicy"]["tls"],
        json!({"mode": "ISTIO_MUTUAL"})
    );
    assert_eq!(changes.len(), 1);
    assert!(
        changes[0].contains("port 9090") && changes[0].contains("Policy bookinfo/grpc-plain"),
        "{changes:?}"
    );
}

#[test]
fn s6_fills_with_different_modes_get_one_port_entry_each() {
    // No tls anywhere: 9080 needs ISTIO_MUTUAL (fill), 9090 needs DISABLE (fill):
    // different modes, so each port gets an entry.
    let (patch, changes, _) = ops(json!({"host": "reviews"}));
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/trafficPolicy", "value": {}},
            {"op": "add", "path": "/spec/trafficPolicy/portLevelSettings", "value": []},
            {"op": "add", "path": "/spec/trafficPolicy/portLevelSettings/-", "value": {"port": {"number": 9080}, "tls": {"mode": "ISTIO_MUTUAL"}}},
            {"op": "add", "path": "/spec/trafficPolicy/portLevelSettings/-", "value": {"port": {"number": 9090}, "tls": {"mode": "DISABLE"}}}
        ])
    );
    assert_eq!(changes.len(), 2);
}

#[test]
fn s6_existing_port_entry_is_changed_in_place() {
    let (patch, _, _) = ops(
        json!({"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
        "portLevelSettings": [{"port": {"number": 9090}, "tls": {"mode": "ISTIO_MUTUAL", "sni": "a"}}]}}),
    );
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/trafficPolicy/portLevelSettings/0/tls/mode", "value": "DISABLE"}
        ])
    );
}

#[test]
fn s6_subset_port_entry_is_filled_where_it_is() {
    // Subset v1's own entry for 9080 (without tls: UNSET) decides for v1 at 9080, so
    // the fill goes into that entry; at 9090, v1 inherits the top level's DISABLE
    // entry, which is already right.
    let (patch, _, spec) = ops(
        json!({"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
        "portLevelSettings": [{"port": {"number": 9090}, "tls": {"mode": "DISABLE"}}]},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"portLevelSettings": [{"port": {"number": 9080}}]}}]}),
    );
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/subsets/0/trafficPolicy/portLevelSettings/0/tls", "value": {"mode": "ISTIO_MUTUAL"}}
        ])
    );
    assert_eq!(spec["subsets"][0]["labels"], json!({"version": "v1"}));
}

#[test]
fn s6_no_change_no_patch() {
    let (patch, changes, _) = ops(
        json!({"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
        "portLevelSettings": [{"port": {"number": 9090}, "tls": {"mode": "DISABLE"}}]}}),
    );
    assert_eq!(patch, json!([]));
    assert!(changes.is_empty());
}
