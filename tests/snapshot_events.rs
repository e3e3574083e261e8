//! The snapshot as an index updated per event (issue 6, item 2): a snapshot built
//! by any sequence of apply / delete / reset judges exactly like one built from
//! scratch (`Snapshot::from_objects`) from the objects left at the end, and a clone
//! published midway is not changed by the events applied after it.

use mtls_guard::decision::{judge, resolve_host, rules_with_host, HostTarget};
use mtls_guard::model::{DestinationRule, MeshObject, ObjectKind};
use mtls_guard::settings::{IngressGateway, Settings};
use mtls_guard::snapshot::Snapshot;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const NAMESPACES: [&str; 3] = ["a", "b", "istio-system"];
const SERVICES: [&str; 4] = ["s1", "s2", "s3", "gw"];
const TIMES: [Option<&str>; 3] = [
    None,
    Some("2024-01-01T00:00:00Z"),
    Some("2024-02-01T00:00:00Z"),
];
/// Hosts of every shape: short, `name.ns`, FQDN, wildcards, unknown namespace, external.
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

fn namespace() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES[..]),
        select(vec![
            None,
            Some("enforce"),
            Some("warn"),
            Some("off"),
            Some("bogus"),
        ]),
    )
        .prop_map(|(name, mode)| {
            let mut m = meta(None, name, None);
            if let Some(mode) = mode {
                m["labels"] = json!({"mtls-guard.io/mode": mode});
            }
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": m})
        })
}

fn peers() -> impl Strategy<Value = Value> {
    select(vec![
        json!([{"mtls": {}}]),
        json!([{"mtls": {"mode": "PERMISSIVE"}}]),
        json!([]),
        json!([{}]),
        json!([{}, {"mtls": {}}]),
    ])
}

fn service() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES[..]),
        select(&SERVICES[..]),
        select(vec![
            json!(null),
            json!({"app": "x"}),
            json!({"app": "x", "version": "v1"}),
            json!({"app": "y"}),
            json!({"version": "v1"}),
        ]),
        select(vec![
            json!([{"name": "http", "port": 9080}]),
            json!([{"name": "http", "port": 9080}, {"name": "grpc", "port": 9090, "targetPort": 19090}]),
            json!([{"name": "http", "port": 9080, "targetPort": "web"}, {"port": 8080}]),
        ]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(ns, name, selector, ports, exposed, gateway)| {
            let mut m = meta(Some(ns), name, None);
            if exposed {
                m["annotations"] = json!({"mtls-guard.io/ingress-exposed": "true"});
            }
            if gateway {
                m["labels"] = json!({"istio": "ingressgateway"});
            }
            json!({"apiVersion": "v1", "kind": "Service", "metadata": m,
                   "spec": {"selector": selector, "ports": ports}})
        })
}

fn policy() -> impl Strategy<Value = Value> {
    let target = (
        select(&SERVICES[..]),
        select(vec![
            json!([]),
            json!([{"number": 9090}]),
            json!([{"name": "http"}]),
        ]),
    )
        .prop_map(|(name, ports)| json!({"name": name, "ports": ports}));
    (
        select(&NAMESPACES[..]),
        select(vec!["default", "p1", "p2"]),
        proptest::collection::vec(target, 0..3),
        peers(),
        select(&TIMES[..]),
    )
        .prop_map(|(ns, name, targets, peers, t)| {
            json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
                   "metadata": meta(Some(ns), name, t),
                   "spec": {"targets": targets, "peers": peers}})
        })
}

fn mesh_policy() -> impl Strategy<Value = Value> {
    (
        select(vec!["default", "other"]),
        peers(),
        select(&TIMES[..]),
    )
        .prop_map(|(name, peers, t)| {
            json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
               "metadata": meta(None, name, t), "spec": {"peers": peers}})
        })
}

fn peer_auth() -> impl Strategy<Value = Value> {
    let mode = || select(vec!["STRICT", "PERMISSIVE", "DISABLE", "UNSET"]);
    (
        select(&NAMESPACES[..]),
        select(vec!["default", "w1", "w2"]),
        select(vec![
            json!(null),
            json!({"matchLabels": {"app": "x"}}),
            json!({"matchLabels": {"app": "x", "version": "v1"}}),
            json!({"matchLabels": {"version": "v2"}}),
        ]),
        mode(),
        proptest::option::of((select(vec!["9080", "19090", "bad"]), mode())),
        select(&TIMES[..]),
    )
        .prop_map(|(ns, name, selector, m, port, t)| {
            let mut spec = json!({"mtls": {"mode": m}});
            if !selector.is_null() {
                spec["selector"] = selector;
            }
            if let Some((p, pm)) = port {
                spec["portLevelMtls"] = json!({p: {"mode": pm}});
            }
            json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                   "metadata": meta(Some(ns), name, t), "spec": spec})
        })
}

fn ingress() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES[..]),
        select(vec!["i1", "i2"]),
        select(vec![None, Some("istio"), Some("nginx"), Some("c1"), Some("legacy")]),
        subsequence(SERVICES.to_vec(), 0..3),
        select(&TIMES[..]),
    )
        .prop_map(|(ns, name, class, backends, t)| {
            let mut m = meta(Some(ns), name, t);
            let mut spec = json!({"rules": [{"http": {"paths": backends.iter().map(|b| json!(
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": b, "port": {"number": 9080}}}}
            )).collect::<Vec<_>>()}}]});
            match class {
                Some("legacy") => m["annotations"] = json!({"kubernetes.io/ingress.class": "c1"}),
                Some(c) => spec["ingressClassName"] = json!(c),
                None => {}
            }
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": m, "spec": spec})
        })
}

fn ingress_class() -> impl Strategy<Value = Value> {
    (select(vec!["nginx", "c1"]), any::<bool>(), any::<bool>()).prop_map(
        |(name, istio, default)| {
            let mut m = meta(None, name, None);
            if default {
                m["annotations"] = json!({"ingressclass.kubernetes.io/is-default-class": "true"});
            }
            let controller = if istio {
                "istio.io/ingress-controller"
            } else {
                "k8s.io/ingress-nginx"
            };
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                   "metadata": m, "spec": {"controller": controller}})
        },
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

fn destination_rule() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES[..]),
        select(vec!["r1", "r2", "r3"]),
        select(&HOSTS[..]),
        select(vec!["ISTIO_MUTUAL", "DISABLE"]),
        select(&TIMES[..]),
    )
        .prop_map(|(ns, name, host, tls, t)| {
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                   "metadata": meta(Some(ns), name, t), "spec": rule_spec(host, tls)})
        })
}

fn gateway_class() -> impl Strategy<Value = Value> {
    (select(vec!["envoy", "istio"]), any::<bool>()).prop_map(|(name, istio)| {
        let controller = if istio {
            "istio.io/gateway-controller"
        } else {
            "gateway.envoyproxy.io/gatewayclass-controller"
        };
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": name}, "spec": {"controllerName": controller}})
    })
}

fn gateway() -> impl Strategy<Value = Value> {
    (select(&NAMESPACES[..]), select(vec!["envoy", "istio"]), select(vec!["All", "Same"])).prop_map(
        |(ns, class, from)| {
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                   "metadata": {"name": "public", "namespace": ns},
                   "spec": {"gatewayClassName": class, "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                            "allowedRoutes": {"namespaces": {"from": from}}}]}})
        },
    )
}

fn http_route() -> impl Strategy<Value = Value> {
    (
        select(&NAMESPACES[..]),
        select(vec!["h1", "h2"]),
        select(&NAMESPACES[..]),
        select(&SERVICES[..]),
        select(vec![9080, 9090]),
    )
        .prop_map(|(ns, name, gw_ns, backend, port)| {
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                   "metadata": {"name": name, "namespace": ns},
                   "spec": {"parentRefs": [{"name": "public", "namespace": gw_ns}],
                            "rules": [{"backendRefs": [{"name": backend, "port": port}]}]}})
        })
}

fn any_object() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => namespace(),
        3 => service(),
        3 => policy(),
        1 => mesh_policy(),
        3 => peer_auth(),
        2 => ingress(),
        1 => ingress_class(),
        2 => destination_rule(),
        1 => gateway_class(),
        1 => gateway(),
        2 => http_route(),
    ]
}

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

#[derive(Debug, Clone)]
enum Op {
    Apply(Value),
    /// Deletes the object of that kind, namespace and name (often one that is stored).
    Delete(Value),
    /// A re-list of the kind of the first object, with the objects of that kind.
    Reset(ObjectKind, Vec<Value>),
    /// Publishes a clone here (checked at the end against the objects of this moment).
    Publish,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => any_object().prop_map(Op::Apply),
        4 => any_object().prop_map(Op::Delete),
        2 => (select(&KINDS[..]), proptest::collection::vec(any_object(), 0..8))
            .prop_map(|(k, objs)| Op::Reset(k, objs)),
        1 => Just(Op::Publish),
    ]
}

type Key = (ObjectKind, String, String);

fn read(v: &Value) -> MeshObject {
    MeshObject::from_value(v.clone()).unwrap().unwrap()
}

fn key(v: &Value) -> Key {
    let obj = read(v);
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (obj.kind(), s("/metadata/namespace"), s("/metadata/name"))
}

/// What a per-event index must agree on with one built from scratch.
fn compare(events: &Snapshot, objects: &BTreeMap<Key, Value>) -> Result<(), TestCaseError> {
    let scratch = Snapshot::from_objects(objects.values().map(read));
    prop_assert_eq!(events.counts(), scratch.counts());
    let mut a = events.notes();
    let mut b = scratch.notes();
    a.sort();
    b.sort();
    prop_assert_eq!(a, b);
    for ns in NAMESPACES.iter().chain(&["c"]) {
        prop_assert_eq!(events.knows_namespace(ns), scratch.knows_namespace(ns));
        prop_assert_eq!(events.namespace_mode(ns), scratch.namespace_mode(ns));
    }
    let names = |s: &Snapshot| {
        let mut v: Vec<(String, String, String)> = s
            .rules()
            .map(|r| {
                let m = &r.metadata;
                (
                    m.namespace.clone().unwrap_or_default(),
                    m.name.clone().unwrap_or_default(),
                    r.spec.host.clone(),
                )
            })
            .collect();
        v.sort();
        v
    };
    prop_assert_eq!(names(events), names(&scratch));

    for s in [events, &scratch] {
        rule_lookups(s)?;
    }
    let keys = |rules: Vec<&std::sync::Arc<DestinationRule>>| {
        let mut v: Vec<(Option<String>, Option<String>)> = rules
            .into_iter()
            .map(|r| (r.metadata.namespace.clone(), r.metadata.name.clone()))
            .collect();
        v.sort();
        v
    };
    for ns in NAMESPACES.iter().chain(&["c"]) {
        prop_assert_eq!(
            keys(events.rules_for_namespace(ns).collect()),
            keys(scratch.rules_for_namespace(ns).collect())
        );
        for svc in SERVICES {
            prop_assert_eq!(
                keys(events.rules_for_service(ns, svc).collect()),
                keys(scratch.rules_for_service(ns, svc).collect())
            );
        }
    }

    // Every stored rule, and each host from each namespace.
    let mut rules: Vec<DestinationRule> = scratch.rules().map(|r| (**r).clone()).collect();
    for ns in NAMESPACES.iter().chain(&["c"]) {
        for host in HOSTS {
            let v = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                           "metadata": {"name": "probe", "namespace": ns},
                           "spec": rule_spec(host, "ISTIO_MUTUAL")});
            match read(&v) {
                MeshObject::DestinationRule(r, _) => rules.push(*r),
                _ => unreachable!(),
            }
        }
    }
    let mut settings = vec![Settings::default()];
    settings.push(Settings {
        auto_mtls: true,
        ingress_gateway: IngressGateway::Absent,
        ..Settings::default()
    });
    for s in &settings {
        for rule in &rules {
            let ns = rule.metadata.namespace.as_deref().unwrap_or("default");
            prop_assert_eq!(judge(events, s, rule, ns), judge(&scratch, s, rule, ns));
        }
    }
    Ok(())
}

/// Each stored rule is found by the look-ups for what its host resolves to.
fn rule_lookups(snap: &Snapshot) -> Result<(), TestCaseError> {
    let domain = "cluster.local";
    let name = |r: &DestinationRule| (r.metadata.namespace.clone(), r.metadata.name.clone());
    for rule in snap.rules() {
        let ns = rule.metadata.namespace.as_deref().unwrap_or_default();
        let me = name(rule);
        let has =
            |rules: Vec<&std::sync::Arc<DestinationRule>>| rules.iter().any(|r| name(r) == me);
        // A service the host can name, and a namespace it is in.
        let service = match resolve_host(snap, &rule.spec.host, ns, domain) {
            HostTarget::Service {
                namespace, name, ..
            } => Some((namespace, name)),
            HostTarget::NamespaceWide { namespace } => Some((namespace, "any".to_string())),
            HostTarget::MeshWide => Some(("elsewhere".to_string(), "any".to_string())),
            HostTarget::OutOfScope => None,
        };
        if let Some((tns, tname)) = service {
            prop_assert!(
                has(snap.rules_for_service(&tns, &tname).collect()),
                "{me:?} for {tns}/{tname}"
            );
            prop_assert!(
                has(snap.rules_for_namespace(&tns).collect()),
                "{me:?} in {tns}"
            );
        }
        let same = rules_with_host(snap, ns, &rule.spec.host, domain);
        prop_assert!(has(same.clone()), "{me:?} covers its own host");
        for other in same {
            let a = resolve_host(snap, &other.spec.host, ns, domain);
            let b = resolve_host(snap, &rule.spec.host, ns, domain);
            prop_assert_eq!(other.metadata.namespace.as_deref(), Some(ns));
            match (a, b) {
                (
                    HostTarget::Service {
                        namespace: n1,
                        name: s1,
                        ..
                    },
                    HostTarget::Service {
                        namespace: n2,
                        name: s2,
                        ..
                    },
                ) => {
                    prop_assert_eq!((n1, s1), (n2, s2))
                }
                _ => prop_assert_eq!(
                    other.spec.host.to_lowercase(),
                    rule.spec.host.to_lowercase()
                ),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn events_judge_like_a_snapshot_built_from_scratch(ops in proptest::collection::vec(op(), 1..40)) {
        let mut snap = Snapshot::default();
        let mut objects: BTreeMap<Key, Value> = BTreeMap::new();
        let mut published: Vec<(Snapshot, BTreeMap<Key, Value>)> = Vec::new();
        for op in ops {
            match op {
                Op::Apply(v) => {
                    objects.insert(key(&v), v.clone());
                    snap.apply(read(&v));
                }
                Op::Delete(v) => {
                    let (kind, ns, name) = key(&v);
                    // Cluster-scoped kinds are deleted with an empty namespace.
                    objects.remove(&(kind, ns.clone(), name.clone()));
                    snap.delete(kind, &ns, &name);
                }
                Op::Reset(kind, list) => {
                    let list: Vec<Value> = list.into_iter().filter(|v| key(v).0 == kind).collect();
                    objects.retain(|k, _| k.0 != kind);
                    for v in &list {
                        objects.insert(key(v), v.clone());
                    }
                    snap.reset(kind, list.iter().map(read).collect());
                }
                Op::Publish => published.push((snap.clone(), objects.clone())),
            }
        }
        compare(&snap, &objects)?;
        for (snap, objects) in &published {
            compare(snap, objects)?;
        }
    }
}
