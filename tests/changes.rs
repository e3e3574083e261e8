//! Contract section 8, changes to the other side of the pair: a Policy, MeshPolicy,
//! PeerAuthentication, Service, Ingress or Gateway API object written or deleted is
//! reviewed by the validating webhook against the stored DestinationRules it breaks or
//! leaves behind. Reviews go in as AdmissionReview JSON: the captured ones
//! (tests/fixtures/admission) where they exist, else built from a captured review of
//! the same operation with only the kind, names and objects replaced.

use mtls_guard::admission::{review, Endpoint, ReviewVerdict};
use mtls_guard::decision::{judge, review_change, Change, Finding, Outcome, PortScope};
use mtls_guard::enforcement::mode_for;
use mtls_guard::model::{MeshObject, ObjectKind};
use mtls_guard::settings::{IngressGateway, Mode, Settings};
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(prefix: &str) -> Value {
    let dir = root().join("tests/fixtures/admission");
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

/// Objects from the examples (paths relative to the repository).
fn example(paths: &[&str]) -> Vec<MeshObject> {
    let files: Vec<_> = paths.iter().map(|p| root().join(p)).collect();
    mtls_guard::loader::load_paths(&files).unwrap().objects
}

fn obj(v: Value) -> MeshObject {
    MeshObject::from_value(v).unwrap().unwrap()
}

/// Sets the kind, resource, name and namespace of a captured review to `object`'s.
fn retarget(review: &mut Value, object: &Value) {
    let api_version = object["apiVersion"].as_str().unwrap();
    let kind = object["kind"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let info = ObjectKind::of(api_version, kind).unwrap().info();
    let r = &mut review["request"];
    for key in ["kind", "requestKind"] {
        r[key] = json!({"group": group, "version": version, "kind": kind});
    }
    for key in ["resource", "requestResource"] {
        r[key] = json!({"group": group, "version": version, "resource": info.plural});
    }
    r["name"] = object["metadata"]["name"].clone();
    match object["metadata"].get("namespace") {
        Some(ns) => r["namespace"] = ns.clone(),
        None => {
            r.as_object_mut().unwrap().remove("namespace");
        }
    }
}

/// A CREATE review of `object`, in the shape of the captured CREATE 31 (object, then a
/// null oldObject).
fn create(object: Value) -> Value {
    let mut review = fixture("31");
    retarget(&mut review, &object);
    review["request"]["object"] = object;
    review
}

/// A DELETE review of `old`, in the shape of the captured DELETE 29: a null `object`
/// and the stored object in `oldObject`.
fn delete(old: Value) -> Value {
    let mut review = fixture("29");
    retarget(&mut review, &old);
    assert!(review["request"]["object"].is_null());
    review["request"]["oldObject"] = old;
    review
}

/// One answer: (allowed, warnings, denial message).
fn answer(
    snapshot: &Snapshot,
    settings: &Settings,
    endpoint: Endpoint,
    body: &Value,
) -> (bool, Vec<String>, Option<String>) {
    let r = review(
        snapshot,
        settings,
        endpoint,
        &serde_json::to_vec(body).unwrap(),
    );
    let out: Value = serde_json::from_slice(&r.body).unwrap();
    let response = &out["response"];
    assert_eq!(response["uid"], body["request"]["uid"]);
    assert!(response.get("patch").is_none(), "never patched: {response}");
    let allowed = response["allowed"].as_bool().unwrap();
    assert_eq!(
        r.verdict,
        if allowed {
            ReviewVerdict::Allowed
        } else {
            ReviewVerdict::Denied
        }
    );
    let warnings = response["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let message = response["status"]["message"].as_str().map(str::to_string);
    if !allowed {
        assert_eq!(response["status"]["code"], 403);
    }
    (allowed, warnings, message)
}

fn validate(snapshot: &Snapshot, settings: &Settings, body: &Value) -> Vec<String> {
    let (allowed, warnings, _) = answer(snapshot, settings, Endpoint::Validate, body);
    assert!(allowed, "{warnings:?}");
    // The mutating webhook allows these kinds untouched and silent.
    let (allowed, silent, _) = answer(snapshot, settings, Endpoint::Mutate, body);
    assert!(allowed && silent.is_empty(), "{silent:?}");
    warnings
}

fn namespace(name: &str, mode: Option<&str>) -> Value {
    let labels = mode.map_or(json!({}), |m| json!({"mtls-guard.io/mode": m}));
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn rule(ns: &str, name: &str, host: &str, mode: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"host": host, "trafficPolicy": {"tls": {"mode": mode}}},
    })
}

fn service(ns: &str, name: &str, port: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port}]},
    })
}

fn peer_auth(ns: &str, name: &str, mode: &str) -> Value {
    json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"mtls": {"mode": mode}},
    })
}

/// The tutorial's rules, services and Ingress, without the namespace's Policy
/// `default`, and reviews' rule turned to DISABLE (fine while nothing requires mTLS).
fn bookinfo_without_policy() -> Vec<MeshObject> {
    example(&[
        "examples/bookinfo/namespace.yaml",
        "examples/bookinfo/services.yaml",
        "examples/bookinfo/ingress.yaml",
        "examples/bookinfo/destination-rule-all-mtls.yaml",
        "examples/scenarios/reviews-disable.yaml",
    ])
}

const LEFT_BEHIND_TAIL: &str =
    "(the mutating webhook changes a rule only when the rule is written: apply it again)";

#[test]
fn s8_new_strict_peer_authentication_breaks_a_disable_rule_and_leaves_productpage_behind() {
    let snapshot = Snapshot::from_objects(bookinfo_without_policy());
    // The captured CREATE of PeerAuthentication bookinfo/default, STRICT.
    let body = fixture("31");
    assert_eq!(body["request"]["object"]["spec"]["mtls"]["mode"], "STRICT");
    let warnings = validate(&snapshot, &Settings::default(), &body);
    assert_eq!(
        warnings,
        [format!(
            "mtls-guard: PeerAuthentication bookinfo/default (STRICT) breaks 1 DestinationRule: bookinfo/reviews port 9080 and subsets v1, v2, v3 (tls DISABLE, needs ISTIO_MUTUAL). It also leaves 1 DestinationRule behind: bookinfo/productpage port 9080 and subset v1 (tls ISTIO_MUTUAL, needs DISABLE) {LEFT_BEHIND_TAIL}"
        )]
    );
}

#[test]
fn s8_deny_breaking_changes_denies_in_enforce_with_the_same_text() {
    let snapshot = Snapshot::from_objects(bookinfo_without_policy());
    let body = fixture("31");
    let warned = validate(&snapshot, &Settings::default(), &body);
    let deny = Settings {
        deny_breaking_changes: true,
        ..Settings::default()
    };
    let (allowed, warnings, message) = answer(&snapshot, &deny, Endpoint::Validate, &body);
    assert!(!allowed);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        format!("mtls-guard: {}", message.unwrap()),
        warned[0],
        "denied with the warning's text"
    );
    // The mutating webhook still stays out of it.
    let (allowed, silent, _) = answer(&snapshot, &deny, Endpoint::Mutate, &body);
    assert!(allowed && silent.is_empty());

    // A change that only leaves rules behind is not denied.
    let mut objects = bookinfo_without_policy();
    objects.retain(|o| o.name() != "reviews" || o.kind() != ObjectKind::DestinationRule);
    let snapshot = Snapshot::from_objects(objects);
    let (allowed, warnings, _) = answer(&snapshot, &deny, Endpoint::Validate, &body);
    assert!(allowed);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("mtls-guard: PeerAuthentication bookinfo/default (STRICT) leaves 1 DestinationRule behind: bookinfo/productpage"), "{warnings:?}");
}

#[test]
fn s8_dry_run_is_judged_the_same_way() {
    let snapshot = Snapshot::from_objects(bookinfo_without_policy());
    let mut dry = fixture("31");
    dry["request"]["dryRun"] = true.into();
    let deny = Settings {
        deny_breaking_changes: true,
        ..Settings::default()
    };
    for settings in [Settings::default(), deny] {
        let wet = answer(&snapshot, &settings, Endpoint::Validate, &fixture("31"));
        assert_eq!(answer(&snapshot, &settings, Endpoint::Validate, &dry), wet);
        assert!(!wet.1.is_empty() || wet.2.is_some());
    }
}

#[test]
fn s8_deleting_the_exemption_breaks_the_patched_productpage_rule() {
    // The tutorial after the exemption, with the Istio ingress gateway present: the
    // productpage rule was patched to DISABLE, which the exemption makes right.
    let mut objects = example(&["examples/bookinfo"]);
    objects.push(obj(rule(
        "bookinfo",
        "productpage",
        "productpage",
        "DISABLE",
    )));
    // The exemption as the API server stored it (the captured CREATE 16).
    let exemption = fixture("16")["request"]["object"].clone();
    objects.push(obj(exemption.clone()));
    let snapshot = Snapshot::from_objects(objects);
    let gateway = Settings {
        ingress_gateway: IngressGateway::Present,
        ..Settings::default()
    };
    let body = delete(exemption);
    assert_eq!(body["request"]["operation"], "DELETE");
    let warnings = validate(&snapshot, &gateway, &body);
    assert_eq!(
        warnings,
        ["mtls-guard: deleting Policy bookinfo/disable-mtls-productpage (PLAINTEXT) breaks 1 DestinationRule: bookinfo/productpage port 9080 (tls DISABLE, needs ISTIO_MUTUAL)"]
    );

    // Without an Istio ingress gateway the Ingress still exempts productpage: the
    // rule stays right, and nothing is said.
    assert!(validate(&snapshot, &Settings::default(), &body).is_empty());

    // A DELETE without oldObject (an older API server) is still reviewed.
    let mut bare = body.clone();
    bare["request"]["oldObject"] = Value::Null;
    assert_eq!(
        validate(&snapshot, &gateway, &bare),
        [warnings[0].replace(" (PLAINTEXT)", "")]
    );
}

#[test]
fn s8_a_new_ingress_leaves_productpage_behind() {
    let snapshot = Snapshot::from_objects(example(&[
        "examples/bookinfo/namespace.yaml",
        "examples/bookinfo/services.yaml",
        "examples/bookinfo/policy.yaml",
        "examples/bookinfo/destination-rule-all-mtls.yaml",
    ]));
    let ingress = serde_yaml_ng::from_str::<Value>(
        &std::fs::read_to_string(root().join("examples/bookinfo/ingress.yaml")).unwrap(),
    )
    .unwrap();
    let warnings = validate(&snapshot, &Settings::default(), &create(ingress));
    assert_eq!(
        warnings,
        [format!("mtls-guard: Ingress bookinfo/bookinfo leaves 1 DestinationRule behind: bookinfo/productpage port 9080 and subset v1 (tls ISTIO_MUTUAL, needs DISABLE) {LEFT_BEHIND_TAIL}")]
    );
}

#[test]
fn s8_each_rule_follows_its_own_namespace_mode_and_object_warnings_the_objects() {
    // Services in `legacy` (mode off); rules towards them in `shop` (enforce), `lab`
    // (warn) and `legacy` itself (off), each DISABLE, fine until legacy turns STRICT.
    let mut objects = vec![
        obj(namespace("legacy", Some("off"))),
        obj(namespace("shop", None)),
        obj(namespace("lab", Some("warn"))),
        obj(service("legacy", "db", 5432)),
    ];
    for ns in ["shop", "lab", "legacy"] {
        objects.push(obj(rule(
            ns,
            "db",
            "db.legacy.svc.cluster.local",
            "DISABLE",
        )));
    }
    let snapshot = Snapshot::from_objects(objects);
    // A namespace-wide STRICT PeerAuthentication in legacy, with portLevelMtls but no
    // selector (MG208, about the object itself: silent in an `off` namespace).
    let mut pa = peer_auth("legacy", "default", "STRICT");
    pa["spec"]["portLevelMtls"] = json!({"5432": {"mode": "DISABLE"}});
    let body = create(pa.clone());
    let breaks = "mtls-guard: PeerAuthentication legacy/default (STRICT) breaks 2 DestinationRules: lab/db host db.legacy.svc.cluster.local port 5432 (tls DISABLE, needs ISTIO_MUTUAL), shop/db host db.legacy.svc.cluster.local port 5432 (tls DISABLE, needs ISTIO_MUTUAL)";
    assert_eq!(validate(&snapshot, &Settings::default(), &body), [breaks]);

    // With --deny-breaking-changes: shop (enforce) denies.
    let deny = Settings {
        deny_breaking_changes: true,
        ..Settings::default()
    };
    let (allowed, _, message) = answer(&snapshot, &deny, Endpoint::Validate, &body);
    assert!(!allowed);
    assert_eq!(message.as_deref(), breaks.strip_prefix("mtls-guard: "));

    // Without the enforce rule, the warn one is listed and never denied.
    let without_shop = Snapshot::from_objects([
        obj(namespace("legacy", Some("off"))),
        obj(namespace("lab", Some("warn"))),
        obj(service("legacy", "db", 5432)),
        obj(rule("lab", "db", "db.legacy.svc.cluster.local", "DISABLE")),
        obj(rule(
            "legacy",
            "db",
            "db.legacy.svc.cluster.local",
            "DISABLE",
        )),
    ]);
    let (allowed, warnings, _) = answer(&without_shop, &deny, Endpoint::Validate, &body);
    assert!(allowed);
    assert_eq!(
        warnings,
        ["mtls-guard: PeerAuthentication legacy/default (STRICT) breaks 1 DestinationRule: lab/db host db.legacy.svc.cluster.local port 5432 (tls DISABLE, needs ISTIO_MUTUAL)"]
    );

    // The same object in an enforce namespace gets its own warning as well.
    let mut here = pa;
    here["metadata"]["namespace"] = "shop".into();
    let warnings = validate(&snapshot, &Settings::default(), &create(here));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("has portLevelMtls (ports 5432) but no selector"),
        "{warnings:?}"
    );
}

#[test]
fn s8_at_most_ten_rules_are_named_then_a_count() {
    let mut objects = vec![obj(namespace("big", None))];
    for i in 0..15 {
        let name = format!("svc-{i:02}");
        objects.push(obj(service("big", &name, 8080)));
        objects.push(obj(rule("big", &name, &name, "DISABLE")));
    }
    let snapshot = Snapshot::from_objects(objects);
    let warnings = validate(
        &snapshot,
        &Settings::default(),
        &create(peer_auth("big", "default", "STRICT")),
    );
    assert_eq!(warnings.len(), 1);
    let w = &warnings[0];
    assert!(
        w.starts_with("mtls-guard: PeerAuthentication big/default (STRICT) breaks 15 DestinationRules: big/svc-00 port 8080 (tls DISABLE, needs ISTIO_MUTUAL), big/svc-01 port 8080"),
        "{w}"
    );
    assert!(
        w.ends_with("big/svc-09 port 8080 (tls DISABLE, needs ISTIO_MUTUAL), and 5 more"),
        "{w}"
    );
    assert_eq!(w.matches("(tls DISABLE").count(), 10);
}

#[test]
fn s8_gateway_api_changes_are_reviewed_from_the_captures() {
    // The gateway example's namespaces, Services and STRICT PeerAuthentication, with the
    // captures' Gateway gw-capture/public (44) of the non-mesh class envoy (40).
    let mut objects = example(&[
        "examples/bookinfo-gateway/namespaces.yaml",
        "examples/bookinfo-gateway/services.yaml",
        "examples/bookinfo-gateway/peer-authentication.yaml",
    ]);
    objects.push(obj(fixture("40")["request"]["object"].clone()));
    objects.push(obj(fixture("44")["request"]["object"].clone()));

    // The captured CREATE of HTTPRoute productpage (46) exempts productpage port 9080:
    // its ISTIO_MUTUAL rule is left behind.
    let mut before = objects.clone();
    before.push(obj(rule(
        "bookinfo-gw",
        "productpage",
        "productpage",
        "ISTIO_MUTUAL",
    )));
    let created = validate(
        &Snapshot::from_objects(before),
        &Settings::default(),
        &fixture("46"),
    );
    assert_eq!(
        created,
        [format!("mtls-guard: HTTPRoute bookinfo-gw/productpage leaves 1 DestinationRule behind: bookinfo-gw/productpage port 9080 (tls ISTIO_MUTUAL, needs DISABLE) {LEFT_BEHIND_TAIL}")]
    );

    // The route as updated (48, productpage and reviews) is stored, with both rules
    // patched to DISABLE: the captured DELETE of the route (66) breaks both.
    let mut stored = objects;
    stored.push(obj(fixture("48")["request"]["object"].clone()));
    for name in ["productpage", "reviews"] {
        stored.push(obj(rule("bookinfo-gw", name, name, "DISABLE")));
    }
    let deleted = validate(
        &Snapshot::from_objects(stored),
        &Settings::default(),
        &fixture("66"),
    );
    assert_eq!(
        deleted,
        ["mtls-guard: deleting HTTPRoute bookinfo-gw/productpage breaks 2 DestinationRules: bookinfo-gw/productpage port 9080 (tls DISABLE, needs ISTIO_MUTUAL), bookinfo-gw/reviews port 9080 (tls DISABLE, needs ISTIO_MUTUAL)"]
    );
}

// ---------------------------------------------------------------------------
// The review against a reference: every stored rule judged before and after with
// `decision::judge`, compared scope by scope, for many changes to a mixed mesh.
// ---------------------------------------------------------------------------

/// (rule, port number, subset, before, after) of every scope the reference lists.
type Listed = BTreeSet<(String, Option<u32>, Option<String>, String, String)>;

fn reference(before: &Snapshot, settings: &Settings, change: &Change) -> (Listed, Listed) {
    let after = change.after(before);
    let (mut broken, mut left) = (Listed::new(), Listed::new());
    for rule in before.rules() {
        let ns = rule.metadata.namespace.as_deref().unwrap();
        if !mode_for(before, settings, ns).judges() {
            continue;
        }
        let v0 = judge(before, settings, rule, ns);
        let v1 = judge(&after, settings, rule, ns);
        let subset = |f: &Finding| f.subset.as_ref().map(|(i, _)| *i);
        for f in &v1.findings {
            let was = v0
                .findings
                .iter()
                .find(|o| subset(o) == subset(f) && o.port.number() == f.port.number())
                .or_else(|| {
                    v0.findings
                        .iter()
                        .find(|o| subset(o) == subset(f) && o.port == PortScope::Other)
                })
                .map_or(Outcome::Ok, |o| o.outcome.clone());
            let key = (
                format!("{}/{}", v1.rule.namespace, v1.rule.name),
                f.port.number(),
                f.subset.as_ref().map(|(_, n)| n.clone()),
                format!("{was:?}"),
                format!("{:?}", f.outcome),
            );
            if f.outcome == Outcome::Conflict
                && matches!(was, Outcome::Ok | Outcome::Fill(_) | Outcome::Patch(_))
            {
                broken.insert(key);
            } else if matches!(f.outcome, Outcome::Fill(_) | Outcome::Patch(_)) && was != f.outcome
            {
                left.insert(key);
            }
        }
    }
    (broken, left)
}

fn listed(rules: &[mtls_guard::decision::AffectedRule]) -> Listed {
    rules
        .iter()
        .flat_map(|r| {
            r.scopes.iter().map(move |s| {
                (
                    format!("{}/{}", r.rule.namespace, r.rule.name),
                    s.port.number(),
                    s.subset.clone(),
                    format!("{:?}", s.before),
                    format!("{:?}", s.after),
                )
            })
        })
        .collect()
}

/// Namespaces with every kind of setting, and rules of every kind of host.
fn mixed_mesh() -> Vec<MeshObject> {
    let mut objects = example(&[
        "examples/bookinfo",
        "examples/bookinfo-gateway",
        "examples/bookinfo-exemption",
    ]);
    objects.push(obj(namespace("istio-system", None)));
    objects.push(obj(namespace("quiet", Some("off"))));
    objects.push(obj(json!({
        "apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
        "metadata": {"name": "default"}, "spec": {"peers": [{"mtls": {"mode": "PERMISSIVE"}}]},
    })));
    for (ns, modes) in [
        ("shop", ["DISABLE", "ISTIO_MUTUAL"]),
        ("quiet", ["DISABLE", "SIMPLE"]),
        ("bookinfo", ["DISABLE", "DISABLE"]),
    ] {
        objects.push(obj(service(ns, "web", 8080)));
        objects.push(obj(rule(ns, "web", "web", modes[0])));
        objects.push(obj(rule(
            ns,
            "all",
            &format!("*.{ns}.svc.cluster.local"),
            modes[1],
        )));
        objects.push(obj(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web-unset", "namespace": ns},
            "spec": {"host": "web", "subsets": [{"name": "v1", "labels": {"v": "1"},
                "trafficPolicy": {"portLevelSettings": [{"port": {"number": 8080}, "tls": {"mode": "DISABLE"}}]}}]},
        })));
    }
    objects.push(obj(rule("shop", "mesh", "*.cluster.local", "ISTIO_MUTUAL")));
    objects.push(obj(rule(
        "shop",
        "ghost",
        "ghost.nowhere.svc.cluster.local",
        "DISABLE",
    )));
    objects.push(obj(rule(
        "shop",
        "reviews",
        "reviews.bookinfo.svc.cluster.local",
        "DISABLE",
    )));
    objects
}

fn changes(objects: &[MeshObject]) -> Vec<Change> {
    let mut out: Vec<Change> = objects
        .iter()
        .filter(|o| o.kind().info().changes_reviewed)
        .map(|o| Change::Delete {
            kind: o.kind(),
            namespace: o.namespace().to_string(),
            name: o.name().to_string(),
            old: Some(o.clone()),
        })
        .collect();
    for ns in [
        "istio-system",
        "bookinfo",
        "shop",
        "quiet",
        "bookinfo-gw",
        "fresh",
    ] {
        for mode in ["STRICT", "DISABLE", "PERMISSIVE", "UNSET"] {
            out.push(Change::Apply(obj(peer_auth(ns, "default", mode))));
        }
        let mut workload = peer_auth(ns, "web-only", "STRICT");
        workload["spec"]["selector"] = json!({"matchLabels": {"app": "web"}});
        out.push(Change::Apply(obj(workload)));
        for peers in [json!([{"mtls": {}}]), json!([])] {
            out.push(Change::Apply(obj(json!({
                "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
                "metadata": {"name": "default", "namespace": ns}, "spec": {"peers": peers},
            }))));
            out.push(Change::Apply(obj(json!({
                "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"targets": [{"name": "web"}], "peers": peers},
            }))));
        }
        out.push(Change::Apply(obj(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "front", "namespace": ns},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 8080}}}},
        }))));
        out.push(Change::Apply(obj(service(ns, "web", 9443))));
    }
    out.push(Change::Apply(obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system",
            "labels": {"istio": "ingressgateway"}},
        "spec": {"selector": {"istio": "ingressgateway"}, "ports": [{"port": 80}]},
    }))));
    out.push(Change::Apply(obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "istio", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "istio.io/ingress-controller"},
    }))));
    for peers in [json!([{"mtls": {}}]), json!([])] {
        out.push(Change::Apply(obj(json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
            "metadata": {"name": "default"}, "spec": {"peers": peers},
        }))));
    }
    out.push(Change::Apply(obj(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "envoy"},
        "spec": {"controllerName": "istio.io/gateway-controller"},
    }))));
    out
}

#[test]
fn s8_the_review_lists_exactly_what_judging_every_rule_twice_finds() {
    let objects = mixed_mesh();
    let snapshot = Snapshot::from_objects(objects.clone());
    let all = changes(&objects);
    assert!(all.len() > 80, "{}", all.len());
    let mut seen = (0, 0);
    for settings in [
        Settings::default(),
        Settings {
            auto_mtls: true,
            ..Settings::default()
        },
        Settings {
            ingress_gateway: IngressGateway::Present,
            ..Settings::default()
        },
    ] {
        for change in &all {
            let got = review_change(&snapshot, &settings, change);
            let (broken, left) = reference(&snapshot, &settings, change);
            assert_eq!(listed(&got.broken), broken, "broken by {}", change.label());
            assert_eq!(
                listed(&got.left_behind),
                left,
                "left behind by {}",
                change.label()
            );
            seen.0 += broken.len();
            seen.1 += left.len();
        }
    }
    // The mesh is varied enough that both lists are exercised.
    assert!(seen.0 > 20 && seen.1 > 20, "{seen:?}");
}

// ---------------------------------------------------------------------------
// Webhook and APIService backends put under STRICT.
// ---------------------------------------------------------------------------

/// mtls-guard's own registration as deploy/ installs it (its Service calls port 443 on
/// the named target port `https`), and an APIService served by monitoring/metrics-server
/// (no port given: 443, target port 4443).
fn registered() -> Vec<MeshObject> {
    let mut objects = example(&[
        "deploy/base/namespace.yaml",
        "deploy/base/service.yaml",
        "deploy/base/webhooks.yaml",
    ]);
    objects.push(obj(namespace("monitoring", None)));
    objects.push(obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "metrics-server", "namespace": "monitoring"},
        "spec": {"selector": {"app": "metrics-server"},
            "ports": [{"name": "https", "port": 443, "targetPort": 4443}]},
    })));
    objects.push(obj(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
            "service": {"namespace": "monitoring", "name": "metrics-server"}},
    })));
    objects
}

const API_SERVER_TEXT: &str = "the API server is not in the mesh and calls in plaintext, so those calls fail (with failurePolicy Fail, so does every request they serve); exempt that port, e.g. a PeerAuthentication selecting the Service's pods with portLevelMtls PERMISSIVE on its target port";

#[test]
fn s8_a_webhooks_backend_put_under_strict_is_named() {
    let snapshot = Snapshot::from_objects(registered());
    let counts = snapshot.counts();
    assert_eq!(counts[&ObjectKind::MutatingWebhookConfiguration], 1);
    assert_eq!(counts[&ObjectKind::ValidatingWebhookConfiguration], 1);
    assert_eq!(counts[&ObjectKind::APIService], 1);
    let settings = Settings::default();
    assert!(mtls_guard::decision::strict_backends(&snapshot, &settings).is_empty());

    // mtls-guard's own namespace turns STRICT: both of its configurations are named.
    let warnings = validate(
        &snapshot,
        &settings,
        &create(peer_auth("mtls-guard", "default", "STRICT")),
    );
    let by = "PeerAuthentication mtls-guard/default (namespace level)";
    assert_eq!(
        warnings,
        [
            format!("mtls-guard: PeerAuthentication mtls-guard/default (STRICT): Service mtls-guard/mtls-guard port 443 requires mutual TLS (STRICT) by {by}, and MutatingWebhookConfiguration mtls-guard (webhook destinationrules.mutate.mtls-guard.io) calls it there: {API_SERVER_TEXT}"),
            format!("mtls-guard: PeerAuthentication mtls-guard/default (STRICT): Service mtls-guard/mtls-guard port 443 requires mutual TLS (STRICT) by {by}, and ValidatingWebhookConfiguration mtls-guard (webhooks destinationrules.validate.mtls-guard.io, mesh-changes.validate.mtls-guard.io) calls it there: {API_SERVER_TEXT}"),
        ]
    );

    // A mesh-wide STRICT PeerAuthentication puts every backend under STRICT, the
    // APIService's too; once it is stored, the audit's list has all three.
    let mesh = peer_auth("istio-system", "default", "STRICT");
    let warnings = validate(&snapshot, &settings, &create(mesh.clone()));
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[2].contains("APIService v1beta1.metrics.k8s.io calls it there"),
        "{warnings:?}"
    );
    let mut strict = snapshot.clone();
    strict.apply(obj(mesh));
    let listed: Vec<String> = mtls_guard::decision::strict_backends(&strict, &settings)
        .iter()
        .map(|b| {
            format!(
                "{} -> {}/{}:{}",
                b.backend.caller, b.backend.namespace, b.backend.service, b.backend.port
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            "MutatingWebhookConfiguration mtls-guard -> mtls-guard/mtls-guard:443",
            "ValidatingWebhookConfiguration mtls-guard -> mtls-guard/mtls-guard:443",
            "APIService v1beta1.metrics.k8s.io -> monitoring/metrics-server:443",
        ]
    );
    // Already STRICT: a second STRICT policy puts nothing newly under STRICT.
    assert!(validate(
        &strict,
        &settings,
        &create(peer_auth("mtls-guard", "default", "STRICT"))
    )
    .is_empty());
}

#[test]
fn s8_the_backend_is_judged_on_the_port_it_is_called_on() {
    let snapshot = Snapshot::from_objects(registered());
    let settings = Settings::default();
    // STRICT for the workload, PERMISSIVE on the target port of Service port 443 (4443):
    // the API server's calls still get through.
    let workload = |port: &str| {
        let mut pa = peer_auth("monitoring", "metrics-server", "STRICT");
        pa["spec"]["selector"] = json!({"matchLabels": {"app": "metrics-server"}});
        pa["spec"]["portLevelMtls"] = json!({port: {"mode": "PERMISSIVE"}});
        create(pa)
    };
    assert!(validate(&snapshot, &settings, &workload("4443")).is_empty());
    let warnings = validate(&snapshot, &settings, &workload("8080"));
    assert_eq!(
        warnings,
        [format!("mtls-guard: PeerAuthentication monitoring/metrics-server (STRICT): Service monitoring/metrics-server port 443 requires mutual TLS (STRICT) by PeerAuthentication monitoring/metrics-server (workload level), and APIService v1beta1.metrics.k8s.io calls it there: {API_SERVER_TEXT}")]
    );

    // The warning is about the changed object: none in an `off` namespace.
    let mut objects = registered();
    objects.push(obj(namespace("monitoring", Some("off"))));
    let quiet = Snapshot::from_objects(objects);
    assert!(validate(&quiet, &settings, &workload("8080")).is_empty());
}

// ---------------------------------------------------------------------------
// The stored-rules reconciler (contract section 9) judges again only the rules the
// changes since its last pass can reach: the same reach as the review above.
// ---------------------------------------------------------------------------

/// `object` as the cluster source has it: a DestinationRule carries a resourceVersion.
fn stored(mut object: MeshObject, version: usize) -> MeshObject {
    if let MeshObject::DestinationRule(rule, _) = &mut object {
        rule.metadata.resource_version = Some(version.to_string());
    }
    object
}

#[test]
fn s9_each_incremental_rule_pass_plans_exactly_what_judging_every_rule_plans() {
    use mtls_guard::reconcile::{
        plan, plan_pass, plan_rules, ExemptionAction, ExemptionApi, Managed, Reconcilers,
        RulePasses,
    };
    // Besides the mixed mesh, a rule without tls towards each namespace's `web`
    // (filled wherever its server side requires mutual TLS).
    let mut objects = mixed_mesh();
    objects.push(obj(service("bare", "web", 8080)));
    for ns in [
        "istio-system",
        "bookinfo",
        "shop",
        "quiet",
        "bookinfo-gw",
        "fresh",
        "bare",
    ] {
        objects.push(obj(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web-plain", "namespace": ns},
            "spec": {"host": format!("web.{ns}.svc.cluster.local")},
        })));
    }
    let objects: Vec<MeshObject> = objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| stored(o, i))
        .collect();
    // The writes first, then the deletes (the reference test's order is the reverse).
    let (deletes, mut all): (Vec<Change>, Vec<Change>) = changes(&objects)
        .into_iter()
        .partition(|c| matches!(c, Change::Delete { .. }));
    // The rules themselves, their namespaces' modes, and namespaces that come and go.
    for (i, (ns, mode)) in [
        ("shop", "ISTIO_MUTUAL"),
        ("bookinfo", "DISABLE"),
        ("fresh", "SIMPLE"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = all.len() / (4 - i);
        all.insert(
            at,
            Change::Apply(stored(obj(rule(ns, "web", "web", mode)), 9000 + i)),
        );
        all.insert(
            at + 1,
            Change::Apply(stored(
                obj(rule(ns, "wide", &format!("*.{ns}.svc.cluster.local"), mode)),
                9100 + i,
            )),
        );
        all.insert(at + 2, Change::Apply(obj(namespace(ns, Some("warn")))));
    }
    // A rule aimed at another namespace, written and then under its own namespace's
    // mode; a Gateway in another namespace than its routes' backends goes (among the
    // deletes) while they need mutual TLS.
    all.push(Change::Apply(obj(peer_auth("shop", "default", "STRICT"))));
    all.push(Change::Apply(obj(peer_auth(
        "bookinfo-gw",
        "default",
        "STRICT",
    ))));
    all.push(Change::Apply(stored(
        obj(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "cross", "namespace": "fresh"},
            "spec": {"host": "web.shop.svc.cluster.local"},
        })),
        9300,
    )));
    all.push(Change::Apply(obj(namespace("fresh", Some("warn")))));
    all.push(Change::Apply(obj(namespace("fresh", Some("enforce")))));
    all.extend(deletes);
    all.push(Change::Apply(obj(namespace("shop", Some("enforce")))));
    all.push(Change::Apply(obj(namespace("bookinfo", None))));
    all.push(Change::Delete {
        kind: ObjectKind::DestinationRule,
        namespace: "shop".into(),
        name: "mesh".into(),
        old: None,
    });
    all.push(Change::Apply(stored(
        obj(rule("fresh", "late", "web.shop", "DISABLE")),
        9200,
    )));
    all.push(Change::Apply(obj(namespace("fresh", None))));
    all.push(Change::Delete {
        kind: ObjectKind::Namespace,
        namespace: String::new(),
        name: "shop".into(),
        old: None,
    });
    assert!(all.len() > 100, "{}", all.len());

    // In enforce, so that rules are patched and held wherever a namespace has no label.
    // First, one change per pass: a Gateway that goes and comes back while its route's
    // backend (in another namespace) needs mutual TLS, and the MeshPolicy under a
    // namespace with no policy of its own.
    let gateway = objects
        .iter()
        .find(|o| o.kind() == ObjectKind::Gateway)
        .unwrap()
        .clone();
    let mesh_policy = |peers: Value| {
        Change::Apply(obj(json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
            "metadata": {"name": "default"}, "spec": {"peers": peers},
        })))
    };
    let singles = vec![
        Change::Apply(obj(peer_auth("bookinfo-gw", "default", "STRICT"))),
        Change::Delete {
            kind: ObjectKind::Gateway,
            namespace: gateway.namespace().to_string(),
            name: gateway.name().to_string(),
            old: None,
        },
        Change::Apply(gateway),
        mesh_policy(json!([{"mtls": {}}])),
        mesh_policy(json!([{"mtls": {"mode": "PERMISSIVE"}}])),
    ];
    let first = singles.len();
    all.splice(0..0, singles);
    let default = Settings {
        mode: Mode::Enforce,
        ..Settings::default()
    };
    let auto = Settings {
        auto_mtls: true,
        ..default.clone()
    };
    let present = Settings {
        ingress_gateway: IngressGateway::Present,
        ..default.clone()
    };
    let api = ExemptionApi::peer_authentication("security.istio.io/v1");
    for reconcilers in [
        Reconcilers {
            exemptions: None,
            rules: true,
        },
        Reconcilers {
            exemptions: Some(api.clone()),
            rules: true,
        },
    ] {
        let mut snapshot = Snapshot::from_objects(objects.clone());
        let mut passes = RulePasses::default();
        // The exemptions written so far, as the watch brings them back.
        let mut managed: Vec<Managed> = Vec::new();
        let mut writes = 0;
        let mut lagging: Vec<Change> = Vec::new();
        let (mut passes_run, mut incremental, mut judged, mut moved) = (0, 0, 0, 0);
        let mut previous = None;
        let mut next = all.iter();
        // 1, 2, 3 changes between passes, in turn; the settings change now and then.
        for step in 0.. {
            let size = if step < first { 1 } else { step % 3 + 1 };
            let batch: Vec<&Change> = next.by_ref().take(size).collect();
            if batch.is_empty() {
                break;
            }
            for change in batch {
                snapshot = change.after(&snapshot);
            }
            let settings = match step / 20 % 3 {
                0 => &default,
                1 => &auto,
                _ => &present,
            };
            let (got, report) = plan_pass(&snapshot, settings, &reconcilers, &managed, &mut passes);
            let want = plan(&snapshot, settings, &reconcilers, &managed);
            assert_eq!(got.rules, want.rules, "step {step}");
            assert_eq!(got.exemptions, want.exemptions, "step {step}");
            if reconcilers.exemptions.is_none() {
                assert_eq!(got.rules, plan_rules(&snapshot, settings), "step {step}");
            }
            // The exemption reconciler's writes: the next pass lists them, while the
            // watch brings them into the snapshot only a pass later.
            for change in lagging.drain(..) {
                snapshot = Change::after(&change, &snapshot);
            }
            for action in &want.exemptions.actions {
                writes += 1;
                let object = action.object().clone();
                managed.retain(|m| m.object_ref() != object);
                let written = match action {
                    ExemptionAction::Create(wanted) => wanted.manifest.clone(),
                    ExemptionAction::Update { manifest, .. } => manifest.clone(),
                    ExemptionAction::Delete { .. } => {
                        lagging.push(Change::Delete {
                            kind: object.kind,
                            namespace: object.namespace,
                            name: object.name,
                            old: None,
                        });
                        continue;
                    }
                };
                let mut written = written;
                written["metadata"]["resourceVersion"] = json!(format!("{writes}"));
                lagging.push(Change::Apply(obj(written.clone())));
                managed.push(Managed::from_object(object.kind, written).unwrap());
            }
            passes_run += 1;
            if previous.as_ref() != Some(&want.rules) {
                moved += 1;
            }
            previous = Some(want.rules);
            if !report.full {
                incremental += 1;
                judged += report.judged;
            }
        }
        // Most passes judged only some rules, and the plan moved often.
        let rules = snapshot.rules().count();
        eprintln!("{passes_run} passes, {incremental} incremental ({judged} rules judged, {rules} stored at the end), the plan moved in {moved}");
        assert!(
            incremental * 4 > passes_run * 3,
            "{incremental} of {passes_run}"
        );
        assert!(
            judged < incremental * rules,
            "{judged} judged in {incremental} passes"
        );
        assert!(moved >= 10, "{moved} of {passes_run}");
        assert_eq!(
            writes > 0,
            reconcilers.exemptions.is_some(),
            "{writes} writes"
        );
    }
}
