//! The decision bench's world, shared by the benches: 10,000 namespaces x 10 services,
//! policies at every level.
//!
//! Per namespace `ns-NNNNN`:
//! - Services `svc-0` .. `svc-9`, ports 9080 (`http`) and 9090 (`grpc`, targetPort 19090);
//! - Policy `default` (STRICT; PERMISSIVE in every 7th namespace);
//! - Policy `svc-0-off`: service level, PLAINTEXT (a targeted exemption);
//! - Policy `svc-1-grpc`: service-port level, svc-1 by number and svc-2 by port name;
//! - every 4th namespace (i % 4 == 0): a namespace PeerAuthentication, STRICT;
//! - the next (i % 4 == 1): a workload PeerAuthentication for svc-5 with portLevelMtls 19090;
//! - every 10th: a non-mesh Ingress in front of svc-9 (no Istio gateway anywhere);
//! - one DestinationRule per service (100,000 in all), with subsets and portLevelSettings.
//!
//! Plus the MeshPolicy `default` (STRICT) and the Namespace `istio-system`.

// Each bench uses part of it.
#![allow(dead_code)]

use mtls_guard::model::MeshObject;
use serde_json::{json, Value};

pub const NAMESPACES: usize = 10_000;
pub const SERVICES: usize = 10;

pub fn ns_name(i: usize) -> String {
    format!("ns-{i:05}")
}

pub fn obj(v: Value) -> MeshObject {
    MeshObject::from_value(v).unwrap().unwrap()
}

pub fn rule_value(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

/// A rule with three subsets and a port entry, as real rules have.
pub fn service_rule_spec(host: &str) -> Value {
    json!({
        "host": host,
        "trafficPolicy": {
            "loadBalancer": {"simple": "RANDOM"},
            "tls": {"mode": "ISTIO_MUTUAL"},
            "portLevelSettings": [{"port": {"number": 9090}, "tls": {"mode": "ISTIO_MUTUAL"}}],
        },
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
            {"name": "v3", "labels": {"version": "v3"}, "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}}}},
        ],
    })
}

/// The objects that are not in any `ns-NNNNN`: the MeshPolicy and `istio-system`.
pub fn mesh_level_objects() -> Vec<MeshObject> {
    vec![
        obj(json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
            "metadata": {"name": "default"}, "spec": {"peers": [{"mtls": {}}]},
        })),
        obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})),
    ]
}

/// The objects of namespace `i`.
pub fn namespace_objects(i: usize) -> Vec<MeshObject> {
    let mut out = Vec::with_capacity(SERVICES * 2 + 6);
    let ns = ns_name(i);
    out.push(obj(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"mtls-guard.io/mode": "enforce"}},
    })));
    for j in 0..SERVICES {
        let name = format!("svc-{j}");
        out.push(obj(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {
                "selector": {"app": name},
                "ports": [
                    {"name": "http", "port": 9080, "targetPort": 9080},
                    {"name": "grpc", "port": 9090, "targetPort": 19090},
                ],
            },
        })));
        out.push(obj(rule_value(&ns, &name, service_rule_spec(&name))));
    }
    let default_peers = if i.is_multiple_of(7) {
        json!([{"mtls": {"mode": "PERMISSIVE"}}])
    } else {
        json!([{"mtls": {}}])
    };
    out.push(obj(json!({
        "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
        "metadata": {"name": "default", "namespace": ns, "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"peers": default_peers},
    })));
    out.push(obj(json!({
        "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
        "metadata": {"name": "svc-0-off", "namespace": ns},
        "spec": {"targets": [{"name": "svc-0"}], "peers": []},
    })));
    out.push(obj(json!({
        "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
        "metadata": {"name": "svc-1-grpc", "namespace": ns},
        "spec": {
            "targets": [
                {"name": "svc-1", "ports": [{"number": 9090}]},
                {"name": "svc-2", "ports": [{"name": "grpc"}]},
            ],
            "peers": [{"mtls": {"mode": "PERMISSIVE"}}],
        },
    })));
    match i % 4 {
        0 => out.push(obj(json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": ns},
            "spec": {"mtls": {"mode": "STRICT"}},
        }))),
        1 => out.push(obj(json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "svc-5", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "svc-5"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {"19090": {"mode": "DISABLE"}},
            },
        }))),
        _ => {}
    }
    if i.is_multiple_of(10) {
        out.push(obj(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "svc-9", "port": {"number": 9080}}},
                }]}}],
            },
        })));
    }
    out
}

/// The whole world, in one vector (246,002 objects).
pub fn mesh_objects() -> Vec<MeshObject> {
    let mut out = mesh_level_objects();
    out.reserve(NAMESPACES * (SERVICES * 2 + 6));
    for i in 0..NAMESPACES {
        out.extend(namespace_objects(i));
    }
    out
}
