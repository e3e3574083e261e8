//! Properties of the decision core over generated DestinationRules.
//!
//! - `judge` never panics on any DestinationRule-shaped JSON: `MeshObject::from_value`
//!   may reject it, but must not panic, and what it accepts `judge` (and the verdict's
//!   messages) must handle.
//! - On well-formed rules, every finding follows the two tables of contract section 5.
//! - Patch-then-rejudge (section 6): applying `patch::plan` and judging again leaves no
//!   fill or patch, every scope that was ok, filled or patched is ok, and conflicts are
//!   left as they were.

use mtls_guard::decision::{
    judge, ClientMode, Exemption, HostTarget, Outcome, PortScope, Required, ServerMode, Verdict,
};
use mtls_guard::model::{DestinationRule, MeshObject};
use mtls_guard::patch;
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use proptest::prelude::*;
use proptest::sample::select;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------
// The snapshot: policies at every level
// ---------------------------------------------------------------------------

const WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo}
---
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata: {name: default}
spec: {peers: [{mtls: {}}]}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: bookinfo}
spec: {peers: [{mtls: {}}]}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: disable-mtls-productpage, namespace: bookinfo}
spec: {targets: [{name: productpage}], peers: []}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: reviews-grpc, namespace: bookinfo, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {targets: [{name: reviews, ports: [{number: 9090}]}, {name: ghost, ports: [{number: 8080}]}], peers: [{mtls: {mode: PERMISSIVE}}]}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: reviews-grpc-2, namespace: bookinfo, creationTimestamp: "2024-02-01T00:00:00Z"}
spec: {targets: [{name: reviews, ports: [{name: grpc}]}], peers: [{}]}
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: bookinfo}
spec: {selector: {app: productpage}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}, {name: grpc, port: 9090, targetPort: 19090}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo, annotations: {mtls-guard.io/ingress-exposed: "true"}}
spec: {selector: {app: ratings}, ports: [{name: http, port: 9080, targetPort: http-web}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: bookinfo}
spec:
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: details, port: {number: 9080}}}}
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: bookinfo}
spec: {selector: {app: details}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: secure}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: secure}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api, namespace: secure}
spec: {selector: {matchLabels: {app: api}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {"8080": {mode: DISABLE}, "9000": {mode: UNSET}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api-v2, namespace: secure}
spec: {selector: {matchLabels: {app: api, version: v2}}, mtls: {mode: DISABLE}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: secure}
spec: {selector: {app: api}, ports: [{name: http, port: 80, targetPort: 8080}, {name: grpc, port: 9000}, {name: admin, port: 9001}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: secure}
spec: {selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: legacy}
spec: {peers: []}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: legacy}
spec: {selector: {app: app}, ports: [{port: 80}, {port: 9080}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: UNSET}}
"#;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        Snapshot::from_objects(serde_yaml_ng::Deserializer::from_str(WORLD).map(|doc| {
            let v = Value::deserialize(doc).unwrap();
            MeshObject::from_value(v).unwrap().unwrap()
        }))
    })
}

fn settings(auto_mtls: bool, ingress_operator: bool) -> Settings {
    Settings {
        auto_mtls,
        ingress_services: if ingress_operator {
            vec![("secure".into(), "db".into())]
        } else {
            Vec::new()
        },
        ..Settings::default()
    }
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

const HOSTS: &[&str] = &[
    "productpage",
    "reviews",
    "ratings",
    "details",
    "ghost",
    "api",
    "db",
    "reviews.bookinfo",
    "reviews.bookinfo.svc",
    "reviews.bookinfo.svc.cluster.local",
    "api.secure.svc.cluster.local",
    "db.secure",
    "app.legacy.svc",
    "ghost.nowhere.svc.cluster.local",
    "ghost.nowhere",
    "*.bookinfo.svc.cluster.local",
    "*.secure.svc.cluster.local",
    "*.legacy.svc.cluster.local",
    "*.empty.svc.cluster.local",
    "*.local",
    "*.cluster.local",
    "*.svc.cluster.local",
    "*",
    "*.example.com",
    "www.example.com",
    "",
    ".",
    "..",
    "*.",
    "*..svc.cluster.local",
    "a.b.svc.cluster.local.",
    "REVIEWS.BOOKINFO.SVC.CLUSTER.LOCAL",
    "reviews.bookinfo.svc.cluster.local.extra",
];

const MODES: &[&str] = &[
    "ISTIO_MUTUAL",
    "DISABLE",
    "SIMPLE",
    "MUTUAL",
    "istio_mutual",
    "",
    " DISABLE ",
    "UNSET",
    "BOGUS",
];

const KEYS: &[&str] = &[
    "tls",
    "mode",
    "port",
    "number",
    "name",
    "portLevelSettings",
    "trafficPolicy",
    "subsets",
    "host",
    "loadBalancer",
    "connectionPool",
    "labels",
];

const NAMESPACES: &[&str] = &[
    "bookinfo",
    "secure",
    "legacy",
    "istio-system",
    "nowhere",
    "",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        select(vec![
            json!(0),
            json!(-1),
            json!(9080),
            json!(9090),
            json!(80),
            json!(u32::MAX),
            json!(u64::from(u32::MAX) + 1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(9080.0),
            json!(1e300),
            json!("9080"),
        ]),
        select(HOSTS).prop_map(Value::from),
        select(MODES).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![select(KEYS).prop_map(String::from), "[a-zA-Z]{0,6}"]
}

/// Arbitrary JSON, biased towards the DestinationRule's own keys.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `tls`: mostly meaningful, sometimes anything.
fn tls_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => select(MODES).prop_map(|m| json!({ "mode": m })),
        1 => Just(json!({})),
        1 => Just(Value::Null),
        1 => any_json().prop_map(|m| json!({ "mode": m })),
        1 => any_json(),
    ]
}

fn port_number_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => select(vec![80u32, 8080, 9000, 9001, 9080, 9090, 5432, 7070]).prop_map(Value::from),
        1 => any_json(),
    ]
}

fn port_entry_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (port_number_json(), prop::option::of(tls_json())).prop_map(|(n, tls)| {
            let mut e = Map::new();
            e.insert("port".into(), json!({ "number": n }));
            if let Some(t) = tls {
                e.insert("tls".into(), t);
            }
            Value::Object(e)
        }),
        1 => any_json(),
    ]
}

fn traffic_policy_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (
            prop::option::of(tls_json()),
            prop::option::of(prop::collection::vec(port_entry_json(), 0..4)),
        )
            .prop_map(|(tls, ports)| {
                let mut tp = Map::new();
                tp.insert("loadBalancer".into(), json!({"simple": "RANDOM"}));
                if let Some(t) = tls {
                    tp.insert("tls".into(), t);
                }
                if let Some(p) = ports {
                    tp.insert("portLevelSettings".into(), Value::Array(p));
                }
                Value::Object(tp)
            }),
        1 => any_json(),
    ]
}

fn subsets_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::vec(
            (
                prop_oneof![select(vec!["v1", "v2", "v3", ""]).prop_map(Value::from), any_json()],
                prop::option::of(traffic_policy_json()),
            )
                .prop_map(|(name, tp)| {
                    let mut s = Map::new();
                    s.insert("name".into(), name);
                    s.insert("labels".into(), json!({"version": "v1"}));
                    if let Some(tp) = tp {
                        s.insert("trafficPolicy".into(), tp);
                    }
                    Value::Object(s)
                }),
            0..4,
        )
        .prop_map(Value::Array),
        1 => any_json(),
    ]
}

/// A DestinationRule-shaped object with arbitrary JSON mixed into every field.
fn rule_json() -> impl Strategy<Value = Value> {
    (
        prop_oneof![4 => select(HOSTS).prop_map(Value::from), 1 => any_json()],
        prop::option::of(traffic_policy_json()),
        prop::option::of(subsets_json()),
        prop::option::of(select(NAMESPACES)),
        select(vec![
            "networking.istio.io/v1alpha3",
            "networking.istio.io/v1beta1",
            "networking.istio.io/v1",
        ]),
        prop::option::of(any_json()),
    )
        .prop_map(|(host, tp, subsets, ns, api_version, extra)| {
            let mut spec = Map::new();
            spec.insert("host".into(), host);
            if let Some(tp) = tp {
                spec.insert("trafficPolicy".into(), tp);
            }
            if let Some(s) = subsets {
                spec.insert("subsets".into(), s);
            }
            if let Some(x) = extra {
                spec.insert("exportTo".into(), x);
            }
            let mut meta = json!({"name": "r"});
            if let Some(ns) = ns {
                meta["namespace"] = ns.into();
            }
            json!({
                "apiVersion": api_version,
                "kind": "DestinationRule",
                "metadata": meta,
                "spec": Value::Object(spec),
            })
        })
}

/// A rule `from_value` accepts, from parts that are all well-formed.
fn valid_rule_json() -> impl Strategy<Value = Value> {
    let mode = prop_oneof![
        4 => select(vec!["ISTIO_MUTUAL", "DISABLE", "SIMPLE", "MUTUAL"]).prop_map(|m| Some(json!({ "mode": m }))),
        1 => Just(Some(json!({}))),
        2 => Just(None),
    ];
    let port = select(vec![80u32, 8080, 9000, 9001, 9080, 9090, 5432]);
    let entry = (port, mode.clone(), any::<bool>()).prop_map(|(n, tls, pool)| {
        let mut e = json!({ "port": { "number": n } });
        if pool {
            e["connectionPool"] = json!({"tcp": {"maxConnections": 7}});
        }
        if let Some(t) = tls {
            e["tls"] = t;
        }
        e
    });
    let tp = prop::option::of((
        mode.clone(),
        prop::option::of(prop::collection::vec(entry, 0..3)),
        any::<bool>(),
    ))
    .prop_map(|tp| {
        tp.map(|(tls, ports, lb)| {
            let mut v = json!({});
            if lb {
                v["loadBalancer"] = json!({"simple": "LEAST_REQUEST"});
            }
            if let Some(t) = tls {
                v["tls"] = t;
            }
            if let Some(p) = ports {
                v["portLevelSettings"] = Value::Array(p);
            }
            v
        })
    });
    let subsets = prop::collection::vec(tp.clone(), 0..4);
    (
        select(HOSTS.iter().filter(|h| !h.is_empty()).copied().collect::<Vec<_>>()),
        tp,
        subsets,
        select(vec!["bookinfo", "secure", "legacy"]),
    )
        .prop_map(|(host, tp, subsets, ns)| {
            let mut spec = json!({ "host": host });
            if let Some(tp) = tp {
                spec["trafficPolicy"] = tp;
            }
            if !subsets.is_empty() {
                spec["subsets"] = subsets
                    .into_iter()
                    .enumerate()
                    .map(|(i, tp)| {
                        let mut s = json!({"name": format!("v{i}"), "labels": {"version": format!("v{i}")}});
                        if let Some(tp) = tp {
                            s["trafficPolicy"] = tp;
                        }
                        s
                    })
                    .collect();
            }
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {"name": "r", "namespace": ns},
                "spec": spec,
            })
        })
}

/// The connection pool, load balancer and outlier detection a (port, subset)
/// gets, merged as Istio merges them: a port entry replaces the scope's settings
/// wholesale; a subset's own settings override what the top level gives the port.
fn effective_settings(spec: &Value, port: Option<u32>, subset: Option<usize>) -> [Value; 3] {
    const KEYS: [&str; 3] = ["connectionPool", "loadBalancer", "outlierDetection"];
    let for_port = |tp: &Value| -> Option<Value> {
        let port = port?;
        tp.get("portLevelSettings")?
            .as_array()?
            .iter()
            .find(|e| e.pointer("/port/number").and_then(Value::as_u64) == Some(u64::from(port)))
            .cloned()
    };
    let top = spec.get("trafficPolicy").cloned().unwrap_or(Value::Null);
    let base = for_port(&top).unwrap_or(top);
    let mut merged: [Value; 3] = KEYS.map(|k| base.get(k).cloned().unwrap_or(Value::Null));
    if let Some(tp) = subset.and_then(|i| spec.pointer(&format!("/subsets/{i}/trafficPolicy"))) {
        for (k, key) in KEYS.iter().enumerate() {
            if let Some(v) = tp.get(*key).filter(|v| !v.is_null()) {
                merged[k] = v.clone();
            }
        }
        if let Some(entry) = for_port(tp) {
            merged = KEYS.map(|k| entry.get(k).cloned().unwrap_or(Value::Null));
        }
    }
    merged
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn read_rule(v: Value) -> Option<(DestinationRule, Value)> {
    match MeshObject::from_value(v) {
        Ok(Some(MeshObject::DestinationRule(dr, raw))) => Some((*dr, raw)),
        Ok(Some(other)) => panic!("a DestinationRule read as {:?}", other.kind()),
        Ok(None) => panic!("a DestinationRule was not read"),
        Err(_) => None,
    }
}

/// Everything a caller does with a verdict, so that none of it may panic either.
fn exercise(v: &Verdict, rule: &DestinationRule) {
    for f in &v.findings {
        let _ = v.message(f, "cluster.local");
        let _ = v.location(f, &rule.spec);
    }
    let _ = v.display_host("cluster.local");
    let _ = v.conflicts().count();
    let _ = v.changes().count();
    for g in v.groups() {
        let _ = v.group_message(&g, "cluster.local");
    }
    for i in &v.invalid_modes {
        let _ = i.message(&rule.spec);
    }
}

/// Contract section 5, both tables, as an oracle.
fn check_tables(v: &Verdict, auto_mtls: bool) -> Result<(), TestCaseError> {
    for f in &v.findings {
        // The first table, first matching row: an exempt port needs DISABLE only where
        // the server is STRICT or PLAINTEXT; PERMISSIVE or NONE takes anything.
        let required = match (f.exemption.is_some(), f.server.mode) {
            (true, ServerMode::Strict | ServerMode::Plaintext) => {
                Required::Mode(ClientMode::Disable)
            }
            (true, ServerMode::Permissive | ServerMode::None) => Required::Any,
            (false, ServerMode::Strict) => Required::Mode(ClientMode::IstioMutual),
            (false, ServerMode::Plaintext) => Required::Mode(ClientMode::Disable),
            (false, ServerMode::Permissive | ServerMode::None) => Required::Any,
        };
        prop_assert_eq!(&f.required, &required);
        let want = match (&required, &f.client) {
            // A value Istio's schema refuses is its own error, before both tables.
            (_, ClientMode::Invalid(_)) => Outcome::InvalidMode,
            (Required::Any, _) => Outcome::Ok,
            (Required::Mode(m), c) if m == c => Outcome::Ok,
            (_, ClientMode::Unset) if auto_mtls => Outcome::Ok,
            (Required::Mode(m), ClientMode::Unset) => Outcome::Fill(m.clone()),
            (_, ClientMode::IstioMutual) if f.exemption.is_some() => {
                Outcome::Patch(ClientMode::Disable)
            }
            _ => Outcome::Conflict,
        };
        prop_assert_eq!(&f.outcome, &want);
        // (b) is only ever a targeted PLAINTEXT.
        if let Some(Exemption::Targeted { level, .. }) = &f.exemption {
            prop_assert!(level.is_targeted());
            prop_assert_eq!(f.server.mode, ServerMode::Plaintext);
        }
    }
    Ok(())
}

proptest! {
    // About a quarter of these rules survive `from_value`: 4000 cases judge ~1000 rules.
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn judge_never_panics_on_rule_shaped_json(
        rule in rule_json(),
        ns in select(NAMESPACES),
        auto in any::<bool>(),
        operator in any::<bool>(),
    ) {
        if let Some((dr, _raw)) = read_rule(rule) {
            let s = settings(auto, operator);
            let v = judge(snapshot(), &s, &dr, ns);
            exercise(&v, &dr);
            check_tables(&v, auto)?;
            // The lead's planner must not panic on anything judge accepts either.
            let _ = patch::plan(&v, &dr.spec);
        }
    }

    #[test]
    fn judge_never_panics_on_arbitrary_json_spec(spec in any_json(), meta in any_json()) {
        let rule = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": meta,
            "spec": spec,
        });
        if let Some((dr, _)) = read_rule(rule) {
            let v = judge(snapshot(), &settings(false, false), &dr, "bookinfo");
            exercise(&v, &dr);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn well_formed_rules_follow_section_5(
        rule in valid_rule_json(),
        auto in any::<bool>(),
        operator in any::<bool>(),
    ) {
        let (dr, _) = read_rule(rule.clone()).expect("well-formed rule reads");
        let s = settings(auto, operator);
        let v = judge(snapshot(), &s, &dr, "bookinfo");
        check_tables(&v, auto)?;
        let subsets = dr.spec.subsets.len();
        match &v.target {
            HostTarget::OutOfScope => prop_assert!(v.findings.is_empty()),
            HostTarget::Service { namespace, name, known: true } => {
                let svc = snapshot().service(namespace, name).unwrap();
                prop_assert_eq!(v.findings.len(), svc.ports.len() * (1 + subsets));
                prop_assert!(v.findings.iter().all(|f| f.port != PortScope::Other));
            }
            _ => {
                // Wildcard or unknown service: the named ports plus "every other port".
                let others = v.findings.iter().filter(|f| f.port == PortScope::Other).count();
                prop_assert_eq!(others, 1 + subsets);
                prop_assert_eq!(v.findings.len() % (1 + subsets), 0);
                if !matches!(v.target, HostTarget::Service { .. }) {
                    prop_assert!(v.findings.iter().all(|f| f.exemption.is_none()));
                }
            }
        }
    }

}

proptest! {
    // About one rule in eight needs a change: 3000 cases plan ~400 patches.
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn patch_then_rejudge_has_no_fill_or_patch(
        rule in valid_rule_json(),
        operator in any::<bool>(),
    ) {
        let s = settings(false, operator);
        let (dr, raw) = read_rule(rule).expect("well-formed rule reads");
        let before = judge(snapshot(), &s, &dr, "bookinfo");
        let plan = patch::plan(&before, &dr.spec);
        prop_assert_eq!(plan.is_empty(), !before.has_change());
        let mut patched = raw.clone();
        json_patch::patch(&mut patched, &plan.patch)
            .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}\n{}", serde_json::to_string(&plan.patch).unwrap())))?;
        let (dr2, _) = read_rule(patched.clone()).expect("the patched rule still reads");
        let after = judge(snapshot(), &s, &dr2, "bookinfo");
        prop_assert_eq!(before.findings.len(), after.findings.len());
        for (b, a) in before.findings.iter().zip(&after.findings) {
            prop_assert_eq!((&b.port, &b.subset), (&a.port, &a.subset));
            match &b.outcome {
                Outcome::InvalidMode => {
                    // The mutating webhook leaves an invalid mode alone.
                    prop_assert_eq!(&a.outcome, &Outcome::InvalidMode);
                    prop_assert_eq!(&a.client, &b.client);
                }
                Outcome::Conflict => {
                    // Touches nothing else: a conflict keeps its client mode.
                    prop_assert_eq!(&a.outcome, &Outcome::Conflict,
                        "{}\n{}", serde_json::to_string(&patched).unwrap(), serde_json::to_string(&plan.patch).unwrap());
                    prop_assert_eq!(&a.client, &b.client);
                }
                Outcome::Ok => {
                    // Touches nothing else: a port that was fine keeps its client mode.
                    prop_assert_eq!(&a.client, &b.client,
                        "port {} subset {:?}\nbefore: {}\nplan: {}",
                        b.port, b.subset,
                        serde_json::to_string(&raw).unwrap(),
                        serde_json::to_string(&plan.patch).unwrap());
                    prop_assert_eq!(&a.outcome, &Outcome::Ok);
                }
                _ => prop_assert_eq!(&a.outcome, &Outcome::Ok,
                    "port {} subset {:?} was {:?}\nbefore: {}\nplan: {}\nafter: {}",
                    b.port, b.subset, b.outcome,
                    serde_json::to_string(&raw).unwrap(),
                    serde_json::to_string(&plan.patch).unwrap(),
                    serde_json::to_string(&patched).unwrap()),
            }
        }
        prop_assert!(!after.has_change());
        // The settings besides TLS that every (port, subset) gets are unchanged.
        for f in &before.findings {
            let port = f.port.number();
            let subset = f.subset.as_ref().map(|(i, _)| *i);
            prop_assert_eq!(
                effective_settings(&raw["spec"], port, subset),
                effective_settings(&patched["spec"], port, subset),
                "port {:?} subset {:?}\nbefore: {}\nplan: {}",
                port, subset,
                serde_json::to_string(&raw).unwrap(),
                serde_json::to_string(&plan.patch).unwrap()
            );
        }
        // A second plan is empty: patching is idempotent.
        prop_assert!(patch::plan(&after, &dr2.spec).is_empty());
    }
}
