//! The watch-event path of the index: a sequence of apply / delete / reset (a
//! re-list) of small objects of every kind the project reads, with clones
//! published midway. At the end and for every published clone, the index must
//! hold what a snapshot built from scratch (`Snapshot::from_objects`) from the
//! objects of that moment holds (counts, notes, namespace modes, stored rules), so
//! later events left each clone as it was. At the end and for one published clone
//! the input chooses, it must also judge a sample (one stored rule and one probe
//! rule, under one setting, chosen by the input) exactly like that snapshot. The
//! objects follow tests/snapshot_events.rs, with bytes choosing.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mtls_guard::decision::judge;
use mtls_guard::model::{DestinationRule, MeshObject, ObjectKind};
use mtls_guard::settings::{IngressGateway, Settings};
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const NAMESPACES: [&str; 3] = ["a", "b", "istio-system"];
const SERVICES: [&str; 4] = ["s1", "s2", "s3", "gw"];
const TIMES: [Option<&str>; 3] = [
    None,
    Some("2024-01-01T00:00:00Z"),
    Some("2024-02-01T00:00:00Z"),
];
const HOSTS: [&str; 10] = [
    "s1",
    "s2.b",
    "s3.a.svc.cluster.local",
    "gw.istio-system",
    "s1.c",
    "ghost",
    "*.a.svc.cluster.local",
    "*.b.svc.cluster.local",
    "*.local",
    "ext.example.com",
];
const KINDS: [ObjectKind; 11] = [
    ObjectKind::Policy,
    ObjectKind::MeshPolicy,
    ObjectKind::PeerAuthentication,
    ObjectKind::DestinationRule,
    ObjectKind::Service,
    ObjectKind::Ingress,
    ObjectKind::IngressClass,
    ObjectKind::Namespace,
    ObjectKind::GatewayClass,
    ObjectKind::Gateway,
    ObjectKind::HTTPRoute,
];

fn pick<T: Clone>(u: &mut Unstructured, from: &[T]) -> Result<T> {
    Ok(u.choose(from)?.clone())
}

/// One of `from`, built only once chosen (building every alternative to pick one
/// was a good part of each input's time). Takes the same bytes as `pick`.
fn build(u: &mut Unstructured, from: &[fn() -> Value]) -> Result<Value> {
    Ok(from[u.choose_index(from.len())?]())
}

fn meta(ns: Option<&str>, name: &str, created: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    if let Some(ns) = ns {
        m.insert("namespace".into(), json!(ns));
    }
    if let Some(t) = created {
        m.insert("creationTimestamp".into(), json!(t));
    }
    Value::Object(m)
}

fn peers(u: &mut Unstructured) -> Result<Value> {
    build(
        u,
        &[
            || json!([{"mtls": {}}]),
            || json!([{"mtls": {"mode": "PERMISSIVE"}}]),
            || json!([]),
            || json!([{}]),
            || json!([{}, {"mtls": {}}]),
        ],
    )
}

fn rule_spec(host: &str, tls: &str) -> Value {
    json!({
        "host": host,
        "trafficPolicy": {
            "tls": {"mode": tls},
            "portLevelSettings": [{"port": {"number": 9090}, "tls": {"mode": "DISABLE"}}],
        },
        "subsets": [{"name": "v1", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}, {"name": "v2"}],
    })
}

fn object(u: &mut Unstructured) -> Result<Value> {
    let ns = pick(u, &NAMESPACES)?;
    let t = pick(u, &TIMES)?;
    Ok(match u.int_in_range(0..=10u8)? {
        0 => {
            let mode = pick(
                u,
                &[
                    None,
                    Some("enforce"),
                    Some("warn"),
                    Some("off"),
                    Some("bogus"),
                ],
            )?;
            let mut m = meta(None, ns, None);
            if let Some(mode) = mode {
                m["labels"] = json!({"mtls-guard.io/mode": mode});
            }
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": m})
        }
        1 => {
            let name = pick(u, &SERVICES)?;
            let selector = build(
                u,
                &[
                    || json!(null),
                    || json!({"app": "x"}),
                    || json!({"app": "x", "version": "v1"}),
                    || json!({"app": "y"}),
                    || json!({"version": "v1"}),
                ],
            )?;
            let ports = build(
                u,
                &[
                    || json!([{"name": "http", "port": 9080}]),
                    || json!([{"name": "http", "port": 9080}, {"name": "grpc", "port": 9090, "targetPort": 19090}]),
                    || json!([{"name": "http", "port": 9080, "targetPort": "web"}, {"port": 8080}]),
                ],
            )?;
            let mut m = meta(Some(ns), name, None);
            if u.arbitrary()? {
                m["annotations"] = json!({"mtls-guard.io/ingress-exposed": "true"});
            }
            if u.arbitrary()? {
                m["labels"] = json!({"istio": "ingressgateway"});
            }
            json!({"apiVersion": "v1", "kind": "Service", "metadata": m,
                   "spec": {"selector": selector, "ports": ports}})
        }
        2 => {
            let name = pick(u, &["default", "p1", "p2"])?;
            let mut targets = Vec::new();
            for _ in 0..u.int_in_range(0..=2u8)? {
                let ports = build(
                    u,
                    &[
                        || json!([]),
                        || json!([{"number": 9090}]),
                        || json!([{"name": "http"}]),
                    ],
                )?;
                targets.push(json!({"name": pick(u, &SERVICES)?, "ports": ports}));
            }
            json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
                   "metadata": meta(Some(ns), name, t),
                   "spec": {"targets": targets, "peers": peers(u)?}})
        }
        3 => {
            let name = pick(u, &["default", "other"])?;
            json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
                   "metadata": meta(None, name, t), "spec": {"peers": peers(u)?}})
        }
        4 => {
            let modes = ["STRICT", "PERMISSIVE", "DISABLE", "UNSET"];
            let name = pick(u, &["default", "w1", "w2"])?;
            let selector = build(
                u,
                &[
                    || json!(null),
                    || json!({"matchLabels": {"app": "x"}}),
                    || json!({"matchLabels": {"app": "x", "version": "v1"}}),
                    || json!({"matchLabels": {"version": "v2"}}),
                ],
            )?;
            let mut spec = json!({"mtls": {"mode": pick(u, &modes)?}});
            if !selector.is_null() {
                spec["selector"] = selector;
            }
            if u.arbitrary()? {
                let port = pick(u, &["9080", "19090", "bad"])?;
                spec["portLevelMtls"] = json!({port: {"mode": pick(u, &modes)?}});
            }
            json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                   "metadata": meta(Some(ns), name, t), "spec": spec})
        }
        5 => {
            let name = pick(u, &["i1", "i2"])?;
            let class = pick(
                u,
                &[
                    None,
                    Some("istio"),
                    Some("nginx"),
                    Some("c1"),
                    Some("legacy"),
                ],
            )?;
            let mut backends = Vec::new();
            for s in SERVICES {
                if u.ratio(1, 3)? {
                    backends.push(json!({"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": s, "port": {"number": 9080}}}}));
                }
            }
            let mut m = meta(Some(ns), name, t);
            let mut spec = json!({"rules": [{"http": {"paths": backends}}]});
            match class {
                Some("legacy") => m["annotations"] = json!({"kubernetes.io/ingress.class": "c1"}),
                Some(c) => spec["ingressClassName"] = json!(c),
                None => {}
            }
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": m, "spec": spec})
        }
        6 => {
            let mut m = meta(None, pick(u, &["nginx", "c1"])?, None);
            if u.arbitrary()? {
                m["annotations"] = json!({"ingressclass.kubernetes.io/is-default-class": "true"});
            }
            let controller = pick(u, &["istio.io/ingress-controller", "k8s.io/ingress-nginx"])?;
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                   "metadata": m, "spec": {"controller": controller}})
        }
        7 => {
            let name = pick(u, &["r1", "r2", "r3"])?;
            let host = pick(u, &HOSTS)?;
            let tls = pick(u, &["ISTIO_MUTUAL", "DISABLE"])?;
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                   "metadata": meta(Some(ns), name, t), "spec": rule_spec(host, tls)})
        }
        8 => {
            let name = pick(u, &["envoy", "istio"])?;
            let controller = pick(
                u,
                &[
                    "istio.io/gateway-controller",
                    "gateway.envoyproxy.io/gatewayclass-controller",
                ],
            )?;
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                   "metadata": {"name": name}, "spec": {"controllerName": controller}})
        }
        9 => {
            let class = pick(u, &["envoy", "istio"])?;
            let from = pick(u, &["All", "Same"])?;
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                   "metadata": {"name": "public", "namespace": ns},
                   "spec": {"gatewayClassName": class, "listeners": [{"name": "http", "port": 80,
                            "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": from}}}]}})
        }
        _ => {
            let name = pick(u, &["h1", "h2"])?;
            let gw_ns = pick(u, &NAMESPACES)?;
            let backend = pick(u, &SERVICES)?;
            let port = pick(u, &[9080, 9090])?;
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                   "metadata": {"name": name, "namespace": ns},
                   "spec": {"parentRefs": [{"name": "public", "namespace": gw_ns}],
                            "rules": [{"backendRefs": [{"name": backend, "port": port}]}]}})
        }
    })
}

type Key = (ObjectKind, String, String);

fn read(v: Value) -> MeshObject {
    MeshObject::from_value(v)
        .expect("generated objects read")
        .expect("generated objects are of kinds the project reads")
}

/// The object's identity, from its `kind` and metadata (without reading it whole).
fn key(v: &Value) -> Key {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let kind =
        ObjectKind::named(v["kind"].as_str().unwrap_or("")).expect("generated kinds are read");
    let m = &v["metadata"];
    (kind, s(&m["namespace"]), s(&m["name"]))
}

/// The objects of a moment, read once (a compare builds a snapshot from them).
type Objects = BTreeMap<Key, MeshObject>;

/// The probe rules: one for each host shape from each namespace (built once).
fn probes() -> &'static [DestinationRule] {
    static PROBES: OnceLock<Vec<DestinationRule>> = OnceLock::new();
    PROBES.get_or_init(|| {
        let mut rules = Vec::new();
        for ns in NAMESPACES.iter().chain(&["c"]) {
            for host in HOSTS {
                let v = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                               "metadata": {"name": "probe", "namespace": ns},
                               "spec": rule_spec(host, "ISTIO_MUTUAL")});
                if let MeshObject::DestinationRule(r, _) = read(v) {
                    rules.push(*r);
                }
            }
        }
        rules
    })
}

/// The settings a judged comparison picks from: the five of the other targets
/// (defaults, auto mTLS, gateway present, gateway absent, mode warn) and auto
/// mTLS with the gateway absent.
fn settings() -> &'static [Settings; 6] {
    static SETTINGS: OnceLock<[Settings; 6]> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        [
            mtls_guard_fuzz::settings(0),
            mtls_guard_fuzz::settings(1),
            mtls_guard_fuzz::settings(2),
            mtls_guard_fuzz::settings(3),
            mtls_guard_fuzz::settings(4),
            Settings {
                auto_mtls: true,
                ingress_gateway: IngressGateway::Absent,
                ..Settings::default()
            },
        ]
    })
}

/// Which verdicts a judged comparison checks: one stored rule (an index into the
/// stored rules sorted by namespace and name), one probe and one setting, all
/// chosen by a hash of the input. Judging every stored rule and all 40 probes
/// under two settings, by both snapshots, at two moments cost over 300
/// judgements an input (13 exec/s under ASan); two samples cost 8, and over
/// millions of inputs every rule, probe and setting is judged many times.
#[derive(Clone, Copy)]
struct Sample {
    stored: usize,
    probe: usize,
    setting: usize,
}

/// The stored rules by namespace and name (the order a sample's index is into).
fn sorted(s: &Snapshot) -> Vec<&DestinationRule> {
    let mut v: Vec<&DestinationRule> = s.rules().map(|r| &**r).collect();
    v.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    v
}

/// What the per-event index must agree on with one built from scratch: counts,
/// notes, namespace modes and stored rules; with a `sample`, also the verdict on
/// one stored rule and one probe under one setting (the costly part).
fn compare(events: &Snapshot, objects: &Objects, sample: Option<Sample>) {
    let scratch = Snapshot::from_objects(objects.values().cloned());
    assert_eq!(events.counts(), scratch.counts());
    let mut a = events.notes();
    let mut b = scratch.notes();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for ns in NAMESPACES.iter().chain(&["c"]) {
        assert_eq!(events.knows_namespace(ns), scratch.knows_namespace(ns));
        assert_eq!(events.namespace_mode(ns), scratch.namespace_mode(ns));
    }
    let stored = sorted(&scratch);
    let names = |v: &[&DestinationRule]| -> Vec<(Option<String>, Option<String>, String)> {
        v.iter()
            .map(|r| {
                (
                    r.metadata.namespace.clone(),
                    r.metadata.name.clone(),
                    r.spec.host.clone(),
                )
            })
            .collect()
    };
    assert_eq!(names(&sorted(events)), names(&stored));
    let Some(sample) = sample else {
        return;
    };
    let s = &settings()[sample.setting % settings().len()];
    let probe = &probes()[sample.probe % probes().len()];
    let rules = stored
        .get(sample.stored % stored.len().max(1))
        .copied()
        .into_iter()
        .chain([probe]);
    for rule in rules {
        let ns = rule.metadata.namespace.as_deref().unwrap_or("default");
        assert_eq!(
            judge(events, s, rule, ns),
            judge(&scratch, s, rule, ns),
            "{rule:?}"
        );
    }
}

fn run(data: &[u8]) -> Result<()> {
    let u = &mut Unstructured::new(data);
    let mut snap = Snapshot::default();
    let mut objects = Objects::new();
    let mut published: Vec<(Snapshot, Objects)> = Vec::new();
    let mut steps = 0;
    while !u.is_empty() && steps < 64 {
        steps += 1;
        match u.int_in_range(0..=16u8)? {
            0..=9 => {
                let v = object(u)?;
                let key = key(&v);
                let obj = read(v);
                objects.insert(key, obj.clone());
                snap.apply(obj);
            }
            10..=13 => {
                // Deletes that object's key (often one that is stored).
                let (kind, ns, name) = key(&object(u)?);
                objects.remove(&(kind, ns.clone(), name.clone()));
                snap.delete(kind, &ns, &name);
            }
            14 | 15 => {
                let kind = pick(u, &KINDS)?;
                let mut list = Vec::new();
                for _ in 0..u.int_in_range(0..=7u8)? {
                    let v = object(u)?;
                    let key = key(&v);
                    if key.0 == kind {
                        list.push((key, read(v)));
                    }
                }
                objects.retain(|k, _| k.0 != kind);
                for (key, obj) in &list {
                    objects.insert(key.clone(), obj.clone());
                }
                snap.reset(kind, list.into_iter().map(|(_, obj)| obj).collect());
            }
            _ => published.push((snap.clone(), objects.clone())),
        }
    }
    // Judging is what costs: one sample of verdicts (see `Sample`) at the end and
    // for one published clone, all chosen by a hash of the input so that over a run
    // every position, rule, probe and setting is judged; the rest of the
    // comparison for every clone (later events must leave them as they were).
    let mut h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut next = || {
        // splitmix64: independent choices from the one hash.
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as usize
    };
    let chosen = next() % published.len().max(1);
    let mut sample = || Sample {
        stored: next(),
        probe: next(),
        setting: next(),
    };
    compare(&snap, &objects, Some(sample()));
    let clone_sample = sample();
    for (i, (snap, objects)) in published.iter().enumerate() {
        compare(snap, objects, (i == chosen).then_some(clone_sample));
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
