//! The Gateway API kinds as the API server sends them (tests/fixtures/admission/39-71,
//! apiserver/28-32), read through the models and the loader, judged for contract
//! section 4 case (c), and reviewed by both webhooks.

use mtls_guard::admission::{review, Endpoint, ReviewVerdict};
use mtls_guard::decision::{judge, Exemption, Outcome, Verdict};
use mtls_guard::loader;
use mtls_guard::model::gateway::{FromNamespaces, RouteKind};
use mtls_guard::model::{DestinationRule, MeshObject, ObjectKind, ObjectRef};
use mtls_guard::server::http_status;
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use serde_json::Value;
use std::path::{Path, PathBuf};

const ENVOY: &str = "gateway.envoyproxy.io/gatewayclass-controller";

fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// (file name, review) of the Gateway API captures (39-71), in arrival order.
fn gateway_reviews() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures("admission"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name[..2]
                .parse::<u32>()
                .is_ok_and(|n| (39..=71).contains(&n))
        })
        .collect();
    files.sort();
    let reviews: Vec<(String, Value)> = files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(reviews.len(), 33);
    reviews
}

/// The object of a review: `object`, or `oldObject` for a DELETE.
fn review_object(review: &Value) -> &Value {
    let r = &review["request"];
    if r["object"].is_null() {
        &r["oldObject"]
    } else {
        &r["object"]
    }
}

fn read(v: &Value) -> MeshObject {
    MeshObject::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{e}: {v}"))
        .unwrap_or_else(|| panic!("not read: {v}"))
}

fn review_of(prefix: &str) -> Value {
    gateway_reviews()
        .into_iter()
        .find(|(n, _)| n.starts_with(&format!("{prefix}-")))
        .unwrap_or_else(|| panic!("no fixture {prefix}-*"))
        .1
}

fn captured(prefix: &str) -> MeshObject {
    read(review_object(&review_of(prefix)))
}

fn oref(kind: ObjectKind, ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

#[test]
fn every_captured_gateway_object_reads_into_its_kind() {
    for (name, review) in gateway_reviews() {
        let kind = review["request"]["kind"]["kind"].as_str().unwrap();
        let obj = read(review_object(&review));
        assert_eq!(obj.kind().to_string(), kind, "{name}");
    }
}

#[test]
fn captured_routes_carry_the_api_servers_defaults() {
    // The user wrote `parentRefs: [{name: public, namespace: gw-capture}]` and
    // `backendRefs: [{name: productpage, port: 9080}]` (the last-applied annotation); the API
    // server filled in group, kind and weight before any webhook saw the route.
    let review = review_of("45");
    let object = review_object(&review);
    assert_eq!(object["metadata"]["name"], "productpage");
    let written: Value = serde_json::from_str(
        object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(written["spec"]["parentRefs"][0].get("kind").is_none());
    assert!(written["spec"]["rules"][0]["backendRefs"][0]
        .get("weight")
        .is_none());
    assert_eq!(
        object["spec"]["parentRefs"][0]["group"],
        "gateway.networking.k8s.io"
    );
    assert_eq!(object["spec"]["rules"][0]["backendRefs"][0]["weight"], 1);

    // Both forms read the same.
    for v in [object.clone(), written] {
        let MeshObject::Route(RouteKind::Http, route) = read(&v) else {
            panic!("an HTTPRoute")
        };
        let parent = &route.spec.parent_refs[0];
        assert!(parent.is_gateway());
        assert_eq!(parent.namespace("bookinfo-gw"), "gw-capture");
        let backend = &route.spec.rules[0].backend_refs[0];
        assert!(backend.target.is_service());
        assert_eq!(backend.weight(), 1);
        assert_eq!(backend.target.port, Some(9080));
        assert_eq!(backend.target.namespace("bookinfo-gw"), "bookinfo-gw");
    }
}

#[test]
fn captured_kinds_in_every_version() {
    let MeshObject::GatewayClass(envoy) = captured("39") else {
        panic!()
    };
    assert_eq!(envoy.spec.controller_name, ENVOY);
    let MeshObject::GatewayClass(istio) = captured("41") else {
        panic!()
    };
    assert_eq!(istio.spec.controller_name, "istio.io/gateway-controller");
    let MeshObject::Gateway(public) = captured("43") else {
        panic!()
    };
    assert_eq!(public.spec.gateway_class_name, "envoy");
    let l = &public.spec.listeners[0];
    assert_eq!(
        (l.name.as_str(), l.port, l.protocol.as_str()),
        ("http", 80, "HTTP")
    );
    assert_eq!(l.allowed_routes.namespaces.from, FromNamespaces::All);
    assert!(l.admits_kind(RouteKind::Http) && l.admits_kind(RouteKind::Grpc));
    assert!(!l.admits_kind(RouteKind::Tls) && !l.admits_kind(RouteKind::Tcp));
    let MeshObject::Gateway(mesh) = captured("59") else {
        panic!()
    };
    assert_eq!(
        mesh.spec.listeners[0].allowed_routes.namespaces.from,
        FromNamespaces::Same
    );
    // ReferenceGrant, served as v1beta1.
    let MeshObject::ReferenceGrant(grant) = captured("51") else {
        panic!()
    };
    assert!(grant.allows(RouteKind::Http, "gw-capture", "details"));
    assert!(!grant.allows(RouteKind::Grpc, "gw-capture", "details"));
    assert!(!grant.allows(RouteKind::Http, "bookinfo-gw", "details"));
    // TLSRoute and TCPRoute in v1; an HTTPRoute in v1beta1.
    for (prefix, kind, service, port) in [
        ("55", RouteKind::Tls, "productpage", 9443),
        ("57", RouteKind::Tcp, "mongodb", 27017),
        ("53", RouteKind::Grpc, "ratings", 9080),
        ("69", RouteKind::Http, "details", 9080),
    ] {
        let MeshObject::Route(k, route) = captured(prefix) else {
            panic!("{prefix}")
        };
        assert_eq!(k, kind, "{prefix}");
        let b = &route.spec.rules[0].backend_refs[0].target;
        assert_eq!((b.name.as_str(), b.port), (service, Some(port)), "{prefix}");
    }
    // A mesh route (GAMMA): its parent is a Service.
    let MeshObject::Route(_, reviews) = captured("61") else {
        panic!()
    };
    assert!(!reviews.spec.parent_refs[0].is_gateway());
    assert_eq!(reviews.spec.parent_refs[0].kind(), "Service");
}

#[test]
fn models_read_the_v1alpha2_versions_too() {
    // TLSRoute and TCPRoute were v1alpha2 (and TLSRoute v1alpha3) before v1; clusters
    // still serve those versions.
    for (version, kind) in [
        ("v1alpha2", "TLSRoute"),
        ("v1alpha3", "TLSRoute"),
        ("v1alpha2", "TCPRoute"),
    ] {
        let (_, review) = gateway_reviews()
            .into_iter()
            .find(|(_, r)| r["request"]["kind"]["kind"] == kind)
            .unwrap();
        let mut object = review_object(&review).clone();
        object["apiVersion"] = format!("gateway.networking.k8s.io/{version}").into();
        let obj = read(&object);
        assert_eq!(obj.kind().to_string(), kind, "{version}");
    }
}

/// Bookinfo in `bookinfo-gw` (where the captured routes live), every service STRICT.
const BOOKINFO_GW: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo-gw}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo-gw}
spec: {mtls: {mode: STRICT}}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: productpage, namespace: bookinfo-gw}, spec: {selector: {app: productpage}, ports: [{name: http, port: 9080}, {name: https, port: 9443}]}}
- {apiVersion: v1, kind: Service, metadata: {name: reviews, namespace: bookinfo-gw}, spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}}
- {apiVersion: v1, kind: Service, metadata: {name: reviews-v1, namespace: bookinfo-gw}, spec: {selector: {app: reviews, version: v1}, ports: [{name: http, port: 9080}]}}
- {apiVersion: v1, kind: Service, metadata: {name: ratings, namespace: bookinfo-gw}, spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}}
- {apiVersion: v1, kind: Service, metadata: {name: details, namespace: bookinfo-gw}, spec: {selector: {app: details}, ports: [{name: http, port: 9080}]}}
- {apiVersion: v1, kind: Service, metadata: {name: mongodb, namespace: bookinfo-gw}, spec: {selector: {app: mongodb}, ports: [{name: tcp, port: 27017}]}}
"#;

/// Writes the objects the validating webhook saw stored (creates and updates of reviews
/// `first..=last`, deletions removing theirs) as JSON files, loads them with Bookinfo
/// through the loader, and builds the snapshot.
fn load_captured(dir: &Path, last: u32) -> Snapshot {
    std::fs::write(dir.join("00-bookinfo.yaml"), BOOKINFO_GW).unwrap();
    for (name, review) in gateway_reviews() {
        let n: u32 = name[..2].parse().unwrap();
        if n > last || !name.contains("-validating") {
            continue;
        }
        let r = &review["request"];
        let object = review_object(&review);
        let file = dir.join(format!(
            "{}-{}-{}.json",
            object["kind"].as_str().unwrap(),
            r["namespace"].as_str().unwrap_or("cluster"),
            r["name"].as_str().unwrap()
        ));
        if r["operation"] == "DELETE" {
            std::fs::remove_file(&file).unwrap();
        } else {
            std::fs::write(&file, serde_json::to_vec_pretty(object).unwrap()).unwrap();
        }
    }
    let loaded = loader::load_paths(&[dir.to_path_buf()]).expect("loads");
    Snapshot::from_objects(loaded.objects)
}

fn rule_for(host: &str, port: u32) -> DestinationRule {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "r", "namespace": "bookinfo-gw"},
        "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}, "portLevelSettings": [
            {"port": {"number": port}, "tls": {"mode": "ISTIO_MUTUAL"}}]}}
    }))
    .unwrap()
}

fn verdict(s: &Snapshot, host: &str, port: u32) -> Verdict {
    judge(
        s,
        &Settings::default(),
        &rule_for(host, port),
        "bookinfo-gw",
    )
}

/// The exemption of `host:port` (section 4 (c)), as (route, gateway).
fn via(s: &Snapshot, host: &str, port: u32) -> Option<(ObjectRef, ObjectRef)> {
    let v = verdict(s, host, port);
    let f = v
        .findings
        .iter()
        .find(|f| f.port.number() == Some(port) && f.subset.is_none())
        .unwrap();
    match &f.exemption {
        Some(Exemption::Gateway { route, gateway, .. }) => {
            assert_eq!(
                f.outcome,
                Outcome::Patch(mtls_guard::decision::ClientMode::Disable)
            );
            Some((route.clone(), gateway.clone()))
        }
        None => {
            assert_eq!(f.outcome, Outcome::Ok);
            None
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn captured_gateway_api_world_through_the_loader() {
    let public = oref(ObjectKind::Gateway, "gw-capture", "public");
    let http = |ns: &str, name: &str| oref(ObjectKind::HTTPRoute, ns, name);

    // After 62: every create and the update of HTTPRoute productpage (48: reviews added).
    let dir = tempfile::tempdir().unwrap();
    let s = load_captured(dir.path(), 62);
    // HTTPRoute in bookinfo-gw, attached to gw-capture/public (envoy class, from: All).
    assert_eq!(
        via(&s, "productpage", 9080),
        Some((http("bookinfo-gw", "productpage"), public.clone()))
    );
    assert_eq!(
        via(&s, "reviews", 9080),
        Some((http("bookinfo-gw", "productpage"), public.clone()))
    );
    // HTTPRoute gw-capture/shop reaches details in bookinfo-gw through ReferenceGrant 51.
    assert_eq!(
        via(&s, "details", 9080),
        Some((http("gw-capture", "shop"), public.clone()))
    );
    // A GRPCRoute on an HTTP listener.
    assert_eq!(
        via(&s, "ratings", 9080),
        Some((
            oref(ObjectKind::GRPCRoute, "bookinfo-gw", "ratings-grpc"),
            public.clone()
        ))
    );
    // The TLSRoute and the TCPRoute name a Gateway with only an HTTP listener: not attached.
    assert_eq!(via(&s, "productpage", 9443), None);
    assert_eq!(via(&s, "mongodb", 27017), None);
    // HTTPRoute reviews has a Service parent (mesh routing): reviews-v1 is not exempt.
    assert_eq!(via(&s, "reviews-v1", 9080), None);

    // After 71: the ReferenceGrant (63) and HTTPRoute productpage (65) are gone; HTTPRoutes
    // ratings (67) and details (69, v1beta1) are new.
    let dir = tempfile::tempdir().unwrap();
    let s = load_captured(dir.path(), 71);
    assert_eq!(via(&s, "productpage", 9080), None);
    assert_eq!(via(&s, "reviews", 9080), None);
    assert_eq!(
        via(&s, "details", 9080),
        Some((http("bookinfo-gw", "details"), public.clone()))
    );
    // Two routes reach ratings: the first in kind, namespace, name order is named.
    assert_eq!(
        via(&s, "ratings", 9080),
        Some((http("bookinfo-gw", "ratings"), public.clone()))
    );
    // With only the grant gone, HTTPRoute gw-capture/shop no longer reaches details.
    let dir = tempfile::tempdir().unwrap();
    let s = load_captured(dir.path(), 64);
    assert_eq!(via(&s, "details", 9080), None);
}

#[test]
fn apiserver_lists_and_watch_read() {
    // `HTTPRouteList` and `GatewayList` responses go through the loader as any List.
    let loaded = loader::load_paths(&[
        fixtures("apiserver").join("30-list-httproutes-v1.json"),
        fixtures("apiserver").join("31-list-gateways-v1.json"),
    ])
    .expect("loads");
    let kinds: Vec<ObjectKind> = loaded.objects.iter().map(MeshObject::kind).collect();
    assert!(kinds.contains(&ObjectKind::HTTPRoute), "{kinds:?}");
    assert!(kinds.contains(&ObjectKind::Gateway), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, ObjectKind::HTTPRoute | ObjectKind::Gateway)),
        "{kinds:?}"
    );
    // The watch stream: each event's object reads.
    let watch = std::fs::read_to_string(fixtures("apiserver").join("32-watch-httproutes-v1.jsonl"))
        .unwrap();
    let mut n = 0;
    for line in watch.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line).unwrap();
        if event["object"]["kind"] == "HTTPRoute" {
            assert_eq!(read(&event["object"]).kind(), ObjectKind::HTTPRoute);
            n += 1;
        }
    }
    assert!(n > 0, "the watch has HTTPRoute events");
}

#[test]
fn both_webhooks_allow_gateway_kinds_untouched() {
    // Contract section 6: "objects of other kinds are allowed untouched" (these kinds are not
    // DestinationRules), whether or not the snapshot holds Gateway API objects.
    let dir = tempfile::tempdir().unwrap();
    let with_gateways = load_captured(dir.path(), 71);
    for snapshot in [Snapshot::default(), with_gateways] {
        for (name, review_json) in gateway_reviews() {
            let body = serde_json::to_vec(&review_json).unwrap();
            for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
                let out = review(&snapshot, &Settings::default(), endpoint, &body);
                assert_eq!(http_status(out.delivery), 200, "{name}");
                assert_eq!(out.verdict, ReviewVerdict::Allowed, "{name}");
                let answer: Value = serde_json::from_slice(&out.body).unwrap();
                let response = &answer["response"];
                assert_eq!(response["uid"], review_json["request"]["uid"], "{name}");
                assert_eq!(response["allowed"], true, "{name}");
                assert!(response.get("patch").is_none(), "{name}: {response}");
                assert!(response.get("warnings").is_none(), "{name}: {response}");
                assert!(response.get("status").is_none(), "{name}: {response}");
            }
        }
    }
}

#[test]
fn webhooks_explain_a_gateway_exemption() {
    // Section 6: "one admission warning per change, saying what was set, where, and why (...
    // for case (c), the route as `Kind namespace/name` and its Gateway as `namespace/name`)".
    // The captured productpage rule (07, 08) in namespace bookinfo, behind an HTTPRoute on
    // the captured envoy Gateway.
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: bookinfo}
spec: {selector: {app: productpage}, ports: [{name: http, port: 9080}]}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: bookinfo}
spec: {peers: [{mtls: {}}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: productpage, namespace: bookinfo}
spec:
  parentRefs: [{name: public, namespace: gw-capture}]
  rules: [{backendRefs: [{name: productpage, port: 9080}]}]
"#;
    let mut objects: Vec<MeshObject> = loader::parse_str(yaml, "inline.yaml").unwrap().objects;
    objects.push(captured("39")); // GatewayClass envoy
    objects.push(captured("43")); // Gateway gw-capture/public
    let s = Snapshot::from_objects(objects);
    let reason = format!("productpage port 9080 is a backend of HTTPRoute bookinfo/productpage on Gateway gw-capture/public, whose controller {ENVOY} is not the mesh's, so it is exempt from mutual TLS");

    let body = std::fs::read(
        fixtures("admission").join("07-create-destinationrule-productpage-v1-mutating.json"),
    )
    .unwrap();
    let out = review(&s, &Settings::default(), Endpoint::Mutate, &body);
    assert_eq!(out.verdict, ReviewVerdict::Patched);
    let answer: Value = serde_json::from_slice(&out.body).unwrap();
    let warnings: Vec<&str> = answer["response"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("mtls-guard: ") && w.ends_with(&format!("because {reason}"))),
        "{warnings:#?}"
    );
    // The server side is still STRICT: the warning names the missing exemption for that port.
    assert!(
        warnings.iter().any(|w| w.contains(&reason)
            && w.contains("Policy bookinfo/default still requires mutual TLS (STRICT)")
            && w.contains("ports: [{number: 9080}]")),
        "{warnings:#?}"
    );

    // The validating webhook allows it, warning about the patch it did not see applied.
    let body = std::fs::read(
        fixtures("admission").join("08-create-destinationrule-productpage-v1-validating.json"),
    )
    .unwrap();
    let out = review(&s, &Settings::default(), Endpoint::Validate, &body);
    assert_eq!(out.verdict, ReviewVerdict::Allowed);
    let answer: Value = serde_json::from_slice(&out.body).unwrap();
    let text = answer["response"]["warnings"].to_string();
    assert!(
        text.contains("HTTPRoute bookinfo/productpage on Gateway gw-capture/public"),
        "{text}"
    );

    // With Istio's controller named a mesh controller... it already is by prefix; naming the
    // envoy controller with --mesh-gateway-controller makes it a mesh gateway too.
    let mesh = Settings {
        mesh_gateway_controllers: vec![ENVOY.into()],
        ..Settings::default()
    };
    let body = std::fs::read(
        fixtures("admission").join("07-create-destinationrule-productpage-v1-mutating.json"),
    )
    .unwrap();
    let out = review(&s, &mesh, Endpoint::Mutate, &body);
    assert_eq!(out.verdict, ReviewVerdict::Allowed);
    let answer: Value = serde_json::from_slice(&out.body).unwrap();
    assert!(answer["response"].get("patch").is_none(), "{answer}");
}

#[test]
fn example_gateway_objects_fit_the_crd_schemas() {
    // examples/bookinfo-gateway holds what a user would apply: each Gateway API object in it
    // validates against its CRD's v1 schema (tests/fixtures/crds, derived from the CRDs).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bookinfo-gateway");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(doc).unwrap();
            let api = object["apiVersion"].as_str().unwrap_or_default();
            let Some(version) = api.strip_prefix("gateway.networking.k8s.io/") else {
                continue;
            };
            let plural = format!("{}s", object["kind"].as_str().unwrap().to_ascii_lowercase())
                .replace("classs", "classes");
            let schemas: Value = serde_json::from_slice(
                &std::fs::read(
                    fixtures("crds").join(format!("{plural}.gateway.networking.k8s.io.json")),
                )
                .unwrap(),
            )
            .unwrap();
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&schemas[version])
                .unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&object)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 3, "GatewayClass, Gateway, HTTPRoute");
    // The check can fail: a listener without a port does not fit.
    let schemas: Value = serde_json::from_slice(
        &std::fs::read(fixtures("crds").join("gateways.gateway.networking.k8s.io.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schemas["v1"])
        .unwrap();
    let broken = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "g"}, "spec": {"gatewayClassName": "envoy", "listeners": [{"name": "http", "protocol": "HTTP"}]}});
    assert!(!validator.is_valid(&broken));
}
