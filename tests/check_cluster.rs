//! `check --cluster`: kube's own client over the stand-in API server
//! (tests/cluster_support, the captured responses), listed once and judged as
//! offline `check` judges files: the same report, codes and exit codes.
//!
//! The captured cluster is Bookinfo with Policy and PeerAuthentication `default`
//! (STRICT) and the reviews and ratings rules. Derived lists (said where used) add
//! the tutorial's productpage rule and, after the exemption, the PeerAuthentication
//! `productpage` that turns mTLS off on its port: both are the objects of captured
//! AdmissionReviews (tests/fixtures/admission 07 and 32).

mod cluster_support;
mod server_support;

use cluster_support::*;
use mtls_guard::check::{self, check_cluster, ClusterTarget, Report, EXIT_CONFLICT, EXIT_OK};
use mtls_guard::loader;
use mtls_guard::settings::{IngressGateway, Settings};
use serde_json::Value;
use std::path::PathBuf;

/// The object of captured AdmissionReview `number`, as a list serves it (`api_version`).
fn admitted_object(number: &str, api_version: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{number}-"))
        })
        .unwrap();
    let review: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut object = review["request"]["object"].clone();
    object["apiVersion"] = Value::from(api_version);
    object
}

/// Captured list `number` with `extra` items appended.
fn list_with(number: &str, extra: Vec<Value>) -> Value {
    let mut list = fixture_json(number);
    list["items"].as_array_mut().unwrap().extend(extra);
    list
}

fn productpage_rule() -> Value {
    admitted_object("07", "networking.istio.io/v1")
}

fn productpage_exemption() -> Value {
    admitted_object("32", "security.istio.io/v1")
}

/// The tutorial's setting: no Istio ingress gateway (the captured cluster has its
/// Service; the flag says it is absent, as `--ingress-gateway absent`).
fn tutorial() -> Settings {
    Settings {
        ingress_gateway: IngressGateway::Absent,
        ..Settings::default()
    }
}

fn target(namespace: Option<&str>) -> ClusterTarget {
    ClusterTarget {
        istio_namespace: "istio-system".into(),
        namespace: namespace.map(str::to_string),
        ..ClusterTarget::default()
    }
}

/// The lines without their origin (`cluster: ` or `FILE:LINE: `).
fn without_origin(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match l.find(": ") {
            Some(i) if l[..i].contains(['/', '.']) || l[..i] == *check::STORED_ORIGIN => {
                l[i + 2..].to_string()
            }
            _ => l.to_string(),
        })
        .collect()
}

/// Offline `check` over the bodies the stand-in serves, written to files as
/// `kubectl get -o json` would (the loader unwraps the lists).
fn offline(bodies: &[Value], settings: &Settings) -> Report {
    let dir = tempfile::tempdir().unwrap();
    for (i, body) in bodies.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i:02}.json")), body.to_string()).unwrap();
    }
    let loaded = loader::load_inputs(&[dir.path().to_path_buf()], "default", None).unwrap();
    check::check(&loaded, settings)
}

/// Every list body the stand-in serves, with the derived ones in place.
fn served(api: &ApiServer, replaced: &[(&str, Value)]) -> Vec<Value> {
    LISTS
        .iter()
        .map(|(path, number)| {
            let body = replaced
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| fixture_json(number));
            api.set(path, Mode::Get, Reply::Json(body.clone()));
            body
        })
        .collect()
}

const PATCH_BEFORE: &str = "cluster: warning MG103 DestinationRule bookinfo/productpage: would patch: productpage.bookinfo.svc.cluster.local port 9080: tls mode ISTIO_MUTUAL, but productpage is reached through non-mesh Ingress bookinfo/bookinfo and there is no Istio ingress gateway, so it is exempt from mutual TLS; set DISABLE; also subset v1 (fix: set spec.trafficPolicy.tls.mode to DISABLE (was ISTIO_MUTUAL))";

#[tokio::test]
async fn the_captured_cluster_is_clean_and_listed_once_without_watching() {
    let api = ApiServer::captured();
    let report = check_cluster(&api.client(), &target(None), &Settings::default())
        .await
        .unwrap();
    assert_eq!(
        report.render_text(true),
        "cluster: ok DestinationRule bookinfo/ratings: ratings.bookinfo.svc.cluster.local: 3 scopes consistent\n\
         cluster: ok DestinationRule bookinfo/reviews: reviews.bookinfo.svc.cluster.local: 3 scopes consistent\n\
         2 rules, 0 conflicts, 0 fills, 0 patches\n"
    );
    assert_eq!(report.exit_code(), EXIT_OK);
    // One list per kind, nothing watched.
    let requests = api.requests();
    assert!(
        requests.iter().all(|r| !r.contains("watch=")),
        "{requests:#?}"
    );
    for (path, _) in LISTS {
        assert_eq!(api.requests_to(path).len(), 1, "{path}: {requests:#?}");
    }
}

#[tokio::test]
async fn bookinfo_before_and_after_the_exemption() {
    // Before: the tutorial's productpage rule (ISTIO_MUTUAL) behind the Ingress,
    // with PeerAuthentication bookinfo/default STRICT on the server side.
    let api = ApiServer::captured();
    let rules = list_with("10", vec![productpage_rule()]);
    let bodies = served(&api, &[(DESTINATION_RULES, rules.clone())]);
    let before = check_cluster(&api.client(), &target(None), &tutorial())
        .await
        .unwrap();
    let text = before.render_text(false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], PATCH_BEFORE);
    assert_eq!(
        lines[1],
        "cluster: warning MG206 DestinationRule bookinfo/productpage: productpage is reached through non-mesh Ingress bookinfo/bookinfo and there is no Istio ingress gateway, so it is exempt from mutual TLS, but PeerAuthentication bookinfo/default still requires mutual TLS (STRICT) on the server side, so plaintext calls from the ingress will fail until a service-specific exemption exists: add a PeerAuthentication in bookinfo whose selector matches productpage's pods with mtls mode DISABLE"
    );
    assert_eq!(lines[2], "3 rules, 0 conflicts, 0 fills, 1 patches");
    assert_eq!(before.exit_code(), EXIT_OK);
    // The same report as offline check over the same objects.
    let files = offline(&bodies, &tutorial());
    assert_eq!(
        without_origin(&text),
        without_origin(&files.render_text(false))
    );
    let json = before.render_json();
    assert_eq!(json[0]["rule"]["name"], "productpage");
    assert_eq!(json[0]["required"], "DISABLE");
    assert_eq!(json[0]["file"], Value::Null);
    assert_eq!(
        json[0]["patch"],
        serde_json::json!([{"op": "add", "path": "/spec/trafficPolicy/tls/mode", "value": "DISABLE"}])
    );

    // After: PeerAuthentication bookinfo/productpage turns mTLS off on 9080 (b).
    let api = ApiServer::captured();
    let peer_auths = list_with("11", vec![productpage_exemption()]);
    let bodies = served(
        &api,
        &[
            (DESTINATION_RULES, rules),
            (PEER_AUTHENTICATIONS, peer_auths),
        ],
    );
    let after = check_cluster(&api.client(), &target(None), &tutorial())
        .await
        .unwrap();
    let text = after.render_text(false);
    assert_eq!(
        text,
        "cluster: warning MG103 DestinationRule bookinfo/productpage: would patch: productpage.bookinfo.svc.cluster.local port 9080: tls mode ISTIO_MUTUAL, but PeerAuthentication bookinfo/productpage exempts productpage from mutual TLS (workload-port level); set DISABLE; also subset v1 (fix: set spec.trafficPolicy.tls.mode to DISABLE (was ISTIO_MUTUAL))\n\
         3 rules, 0 conflicts, 0 fills, 1 patches\n"
    );
    assert_eq!(after.exit_code(), EXIT_OK);
    let files = offline(&bodies, &tutorial());
    assert_eq!(
        without_origin(&text),
        without_origin(&files.render_text(false))
    );
}

#[tokio::test]
async fn a_conflict_fails_and_a_namespace_limits_the_rules_judged() {
    // reviews with tls DISABLE (the object of captured review 25) against
    // PeerAuthentication bookinfo/default (STRICT).
    let api = ApiServer::captured();
    let mut rules = fixture_json("10");
    let reviews = admitted_object("25", "networking.istio.io/v1");
    for item in rules["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "reviews" {
            *item = reviews.clone();
        }
    }
    let bodies = served(&api, &[(DESTINATION_RULES, rules)]);
    let report = check_cluster(
        &api.client(),
        &target(Some("bookinfo")),
        &Settings::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.exit_code(), EXIT_CONFLICT);
    let text = report.render_text(false);
    assert!(
        text.starts_with(
            "cluster: error MG101 DestinationRule bookinfo/reviews: reviews.bookinfo.svc.cluster.local port 9080: tls mode DISABLE, but PeerAuthentication bookinfo/default requires mutual TLS (STRICT)"
        ),
        "{text}"
    );
    assert_eq!(
        without_origin(&text),
        without_origin(&offline(&bodies, &Settings::default()).render_text(false))
    );

    // Another namespace: its rules only (none), judged against the whole cluster.
    let none = check_cluster(
        &api.client(),
        &target(Some("default")),
        &Settings::default(),
    )
    .await
    .unwrap();
    assert!(none.rules.is_empty());
    assert_eq!(none.exit_code(), EXIT_OK);
}

#[tokio::test]
async fn a_forbidden_list_names_the_rbac_rule() {
    let api = ApiServer::captured();
    api.set(DESTINATION_RULES, Mode::Get, Reply::Captured("27"));
    let error = check_cluster(&api.client(), &target(None), &Settings::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("listing DestinationRule: forbidden (403)")
            && error.contains("verbs [list, watch] on resource \"destinationrules\" in API group \"networking.istio.io\""),
        "{error}"
    );
}

#[tokio::test]
async fn the_mesh_config_decides_auto_mtls_unless_a_flag_does() {
    // ratings without tls: captured mesh config says enableAutoMtls: false.
    let api = ApiServer::captured();
    let mut rules = fixture_json("10");
    for item in rules["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "ratings" {
            item["spec"]["trafficPolicy"]
                .as_object_mut()
                .unwrap()
                .remove("tls");
        }
    }
    served(&api, &[(DESTINATION_RULES, rules)]);
    let report = check_cluster(&api.client(), &target(None), &Settings::default())
        .await
        .unwrap();
    assert_eq!(report.counts().fills, 1, "{}", report.render_text(false));

    let forced = ClusterTarget {
        overrides: mtls_guard::source::MeshOverrides {
            auto_mtls: Some(true),
            root_namespace: None,
        },
        ..target(None)
    };
    let report = check_cluster(&api.client(), &forced, &Settings::default())
        .await
        .unwrap();
    assert_eq!(report.counts().fills, 0, "{}", report.render_text(false));
}

/// Section 8: the audit lists every webhook or APIService backend already STRICT.
/// The webhook configuration list is built here in the API server's list shape (no
/// list of them was captured): a webhook calling bookinfo/details, STRICT under
/// PeerAuthentication bookinfo/default.
#[tokio::test]
async fn webhook_backends_already_strict_are_listed() {
    let api = ApiServer::captured();
    api.set(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        Mode::Get,
        Reply::Json(serde_json::json!({
            "kind": "ValidatingWebhookConfigurationList",
            "apiVersion": "admissionregistration.k8s.io/v1",
            "metadata": {"resourceVersion": "734"},
            "items": [{
                "metadata": {"name": "policy-engine", "resourceVersion": "700"},
                "webhooks": [{"name": "validate.policy-engine.io",
                    "clientConfig": {"service": {"namespace": "bookinfo", "name": "details", "port": 9080}},
                    "admissionReviewVersions": ["v1"], "sideEffects": "None"}],
            }],
        })),
    );
    let report = check_cluster(&api.client(), &target(None), &Settings::default())
        .await
        .unwrap();
    assert_eq!(
        report.render_text(false),
        "cluster: warning MG210 ValidatingWebhookConfiguration policy-engine: Service bookinfo/details port 9080 requires mutual TLS (STRICT) by PeerAuthentication bookinfo/default (namespace level), and ValidatingWebhookConfiguration policy-engine (webhook validate.policy-engine.io) calls it there: the API server is not in the mesh and calls in plaintext, so those calls fail (with failurePolicy Fail, so does every request they serve); exempt that port, e.g. a PeerAuthentication selecting the Service's pods with portLevelMtls PERMISSIVE on its target port (fix: make port 9080 of Service bookinfo/details accept plaintext (PERMISSIVE) on the server side)\n\
         2 rules, 0 conflicts, 0 fills, 0 patches; 1 webhook backends STRICT\n"
    );
    // A warning: the webhook would deny nothing.
    assert_eq!(report.exit_code(), EXIT_OK);
    let other = check_cluster(
        &api.client(),
        &target(Some("default")),
        &Settings::default(),
    )
    .await
    .unwrap();
    assert!(other.backends.is_empty());
}
