//! A review built around a fuzzed DestinationRule-shaped object: hosts of every
//! shape, TLS settings at every level (absent, null, empty, each mode, wrong type),
//! port-level settings and subsets, in the example worlds and settings. Reaches
//! the judge and the patch planner far more often than raw bytes do.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const NAMESPACES: [&str; 6] = [
    "bookinfo",
    "bookinfo-gw",
    "edge",
    "istio-system",
    "default",
    "other",
];
const HOSTS: [&str; 14] = [
    "productpage",
    "reviews",
    "ratings",
    "details",
    "productpage.bookinfo",
    "reviews.bookinfo.svc.cluster.local",
    "ratings.bookinfo-gw.svc.cluster.local",
    "*.bookinfo.svc.cluster.local",
    "*.bookinfo-gw.svc.cluster.local",
    "*.local",
    "*",
    "ext.example.com",
    "Details.Bookinfo",
    "",
];
const MODES: [&str; 7] = [
    "DISABLE",
    "SIMPLE",
    "MUTUAL",
    "ISTIO_MUTUAL",
    "istio_mutual",
    "",
    "BOGUS",
];
const PORTS: [u32; 5] = [9080, 80, 443, 9090, 0];

#[derive(Arbitrary, Debug)]
enum Host {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Tls {
    Mode(u8),
    OtherMode(String),
    /// `tls: {}`: DISABLE, Istio's default.
    Empty,
    Null,
    /// `tls: {mode: 1}`.
    WrongType,
    /// A mode with the fields that go with SIMPLE/MUTUAL.
    WithCerts(u8),
}

#[derive(Arbitrary, Debug)]
enum Policy {
    Absent,
    Null,
    Tls(Option<Tls>),
    /// Other settings beside (or instead of) tls.
    Rich(Option<Tls>, bool),
}

#[derive(Arbitrary, Debug)]
struct PortSetting {
    port: Option<u8>,
    by_name: bool,
    tls: Option<Tls>,
    other: bool,
}

#[derive(Arbitrary, Debug)]
struct Subset {
    name: u8,
    labels: bool,
    policy: Policy,
    ports: Vec<PortSetting>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    world: u8,
    settings: u8,
    namespace: u8,
    update: bool,
    v1beta1: bool,
    host: Host,
    policy: Policy,
    ports: Vec<PortSetting>,
    subsets: Option<Vec<Subset>>,
    export_to: Option<Vec<String>>,
    workload_selector: bool,
}

fn tls(t: &Tls) -> Value {
    match t {
        Tls::Mode(m) => json!({"mode": MODES[*m as usize % MODES.len()]}),
        Tls::OtherMode(m) => json!({"mode": m}),
        Tls::Empty => json!({}),
        Tls::Null => Value::Null,
        Tls::WrongType => json!({"mode": 1}),
        Tls::WithCerts(m) => json!({"mode": MODES[*m as usize % MODES.len()],
            "clientCertificate": "/etc/certs/cert.pem", "privateKey": "/etc/certs/key.pem",
            "caCertificates": "/etc/certs/ca.pem", "sni": "x.example.com"}),
    }
}

fn port_settings(ports: &[PortSetting]) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|p| {
                let mut m = Map::new();
                match p.port {
                    Some(n) if p.by_name => {
                        m.insert("port".into(), json!({"name": format!("p{n}")}));
                    }
                    Some(n) => {
                        m.insert(
                            "port".into(),
                            json!({"number": PORTS[n as usize % PORTS.len()]}),
                        );
                    }
                    None => {}
                }
                if let Some(t) = &p.tls {
                    m.insert("tls".into(), tls(t));
                }
                if p.other {
                    m.insert(
                        "connectionPool".into(),
                        json!({"tcp": {"maxConnections": 10}}),
                    );
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// `None`: no `trafficPolicy` key at all.
fn policy(p: &Policy, ports: &[PortSetting]) -> Option<Value> {
    let mut m = Map::new();
    match p {
        Policy::Absent if ports.is_empty() => return None,
        Policy::Absent => {}
        Policy::Null => return Some(Value::Null),
        Policy::Tls(t) => {
            if let Some(t) = t {
                m.insert("tls".into(), tls(t));
            }
        }
        Policy::Rich(t, lb) => {
            if let Some(t) = t {
                m.insert("tls".into(), tls(t));
            }
            if *lb {
                m.insert("loadBalancer".into(), json!({"simple": "ROUND_ROBIN"}));
            }
            m.insert(
                "outlierDetection".into(),
                json!({"consecutive5xxErrors": 7}),
            );
        }
    }
    if !ports.is_empty() {
        m.insert("portLevelSettings".into(), port_settings(ports));
    }
    Some(Value::Object(m))
}

fuzz_target!(|input: Input| {
    let worlds = mtls_guard_fuzz::worlds();
    let snapshot = &worlds[input.world as usize % worlds.len()];
    let settings = mtls_guard_fuzz::settings(input.settings);
    let namespace = NAMESPACES[input.namespace as usize % NAMESPACES.len()];
    let host = match &input.host {
        Host::Known(i) => HOSTS[*i as usize % HOSTS.len()].to_string(),
        Host::Other(s) => s.clone(),
    };
    let mut spec = Map::new();
    spec.insert("host".into(), json!(host));
    if let Some(p) = policy(&input.policy, &input.ports) {
        spec.insert("trafficPolicy".into(), p);
    }
    if let Some(subsets) = &input.subsets {
        let list: Vec<Value> = subsets
            .iter()
            .map(|s| {
                let mut m = Map::new();
                m.insert("name".into(), json!(format!("v{}", s.name % 4)));
                if s.labels {
                    m.insert(
                        "labels".into(),
                        json!({"version": format!("v{}", s.name % 4)}),
                    );
                }
                if let Some(p) = policy(&s.policy, &s.ports) {
                    m.insert("trafficPolicy".into(), p);
                }
                Value::Object(m)
            })
            .collect();
        spec.insert("subsets".into(), Value::Array(list));
    }
    if let Some(e) = &input.export_to {
        spec.insert("exportTo".into(), json!(e));
    }
    if input.workload_selector {
        spec.insert(
            "workloadSelector".into(),
            json!({"matchLabels": {"app": "productpage"}}),
        );
    }
    let object = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "fuzzed", "namespace": namespace, "uid": "u-1"},
        "spec": spec,
    });
    let mut request = json!({
        "uid": "0b8e5a4e-fuzz",
        "kind": {"group": "networking.istio.io", "version": "v1", "kind": "DestinationRule"},
        "resource": {"group": "networking.istio.io", "version": "v1", "resource": "destinationrules"},
        "name": "fuzzed",
        "namespace": namespace,
        "operation": if input.update { "UPDATE" } else { "CREATE" },
        "userInfo": {"username": "fuzz"},
        "object": object,
        "dryRun": false,
    });
    if input.update {
        request["oldObject"] = request["object"].clone();
    }
    let review = json!({
        "apiVersion": if input.v1beta1 { "admission.k8s.io/v1beta1" } else { "admission.k8s.io/v1" },
        "kind": "AdmissionReview",
        "request": request,
    });
    let body = serde_json::to_vec(&review).unwrap();
    mtls_guard_fuzz::check_review(snapshot, &settings, &body);
});
