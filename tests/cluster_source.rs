//! Cluster mode end to end: kube's own client, over a tower service answering with
//! the captured API-server responses (tests/cluster_support), feeding the real
//! server, asked over HTTPS with the captured AdmissionReviews.

mod cluster_support;
mod server_support;

use cluster_support::*;
use mtls_guard::model::ObjectKind;
use mtls_guard::server::Unsynced;
use mtls_guard::source::ClusterConfig;
use serde_json::Value;
use server_support::*;
use std::time::Duration;
use tokio::sync::oneshot;

const KINDS: &[&str] = &[
    "Policy",
    "MeshPolicy",
    "PeerAuthentication",
    "DestinationRule",
    "Service",
    "Ingress",
    "IngressClass",
    "Namespace",
    "ConfigMap",
];

async fn start(api: &ApiServer, tweak: impl FnOnce(&mut ClusterConfig)) -> TestServer {
    start_with(api, tweak, Unsynced::Deny).await
}

async fn ready(server: &TestServer) -> bool {
    wait_for_status(&server.admin_url("/readyz"), 200, 300).await
}

/// Polls `/readyz` until its body contains `text` (bounded).
async fn readyz_says(server: &TestServer, text: &str) -> (u16, String) {
    let mut last = (0, String::new());
    for _ in 0..300 {
        last = readyz(server).await;
        if last.1.contains(text) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never said {text:?}; last: {last:?}");
}

async fn metric(server: &TestServer, sample: &str, value: f64) -> bool {
    wait_for_metric_at(&server.admin_url("/metrics"), sample, value).await
}

async fn wait_count(server: &TestServer, kind: ObjectKind, n: usize) -> bool {
    for _ in 0..300 {
        if count(server, kind) == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn events(kind: &str, kind_type: &str) -> String {
    format!("mtls_guard_watch_events_total{{kind=\"{kind}\",type=\"{kind_type}\"}}")
}

/// The aggregated discovery of a cluster without the v1alpha1 authentication
/// CRDs: the captured one (04) less that group.
fn discovery_without_v1alpha1() -> Value {
    let mut doc = fixture_json("04");
    let items = doc["items"].as_array_mut().unwrap();
    let before = items.len();
    items.retain(|g| g["metadata"]["name"] != "authentication.istio.io");
    assert_eq!(items.len(), before - 1);
    doc
}

#[tokio::test]
async fn lists_every_kind_then_turns_ready_and_judges() {
    let api = ApiServer::captured();
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await, "{:?}", readyz(&server).await);

    for (kind, n) in [
        (ObjectKind::DestinationRule, 2),
        (ObjectKind::PeerAuthentication, 1),
        (ObjectKind::Policy, 1),
        (ObjectKind::MeshPolicy, 0),
        (ObjectKind::Service, 6),
        (ObjectKind::Ingress, 1),
        (ObjectKind::IngressClass, 0),
        (ObjectKind::Namespace, 8),
    ] {
        assert_eq!(count(&server, kind), n, "{kind}");
    }
    let text = server.handle.metrics_text();
    for kind in KINDS {
        let up = format!("mtls_guard_watch_up{{kind=\"{kind}\"}}");
        assert_eq!(metric_value(&text, &up), Some(1.0), "{up}\n{text}");
        assert_eq!(
            metric_value(&text, &events(kind, "relist")),
            Some(1.0),
            "{kind}"
        );
        assert_eq!(
            metric_value(&text, &events(kind, "apply")),
            Some(0.0),
            "{kind}"
        );
    }
    assert_eq!(
        metric_value(&text, "mtls_guard_snapshot_objects{kind=\"Service\"}"),
        Some(6.0)
    );

    // The mesh config of the captured ConfigMap: auto mTLS off.
    let view = server.handle.snapshots().current().unwrap();
    assert!(!view.settings.auto_mtls);
    assert_eq!(view.settings.root_namespace, "istio-system");

    // reviews with tls DISABLE, against Policy bookinfo/default (STRICT).
    let answer = validate(&server, "25").await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert!(
        message_of(&answer).unwrap().contains("bookinfo/default"),
        "{answer}"
    );

    // Each kind: one list at the versions discovery picked, then a watch from
    // the list's resourceVersion.
    for (path, _) in LISTS {
        let requests = api.requests_to(path);
        assert!(requests.len() >= 2, "{path}: {requests:?}");
        assert!(
            requests[0].contains("limit=500") && !requests[0].contains("watch"),
            "{requests:?}"
        );
        assert!(
            requests[1].contains("watch=true") && requests[1].contains("resourceVersion=734"),
            "{requests:?}"
        );
    }
    let configmaps = api.requests_to("/api/v1/namespaces/istio-system/configmaps");
    assert!(
        configmaps[0].contains("fieldSelector=metadata.name%3Distio"),
        "{configmaps:?}"
    );
    server.handle.stop().await;
}

#[tokio::test]
async fn watch_events_apply_and_delete_objects() {
    let api = ApiServer::captured();
    // The captured streams: DestinationRules ADDED details, MODIFIED reviews,
    // DELETED ratings, BOOKMARK; Services ADDED and DELETED tmp, BOOKMARK.
    api.push(
        DESTINATION_RULES,
        Mode::Watch,
        Reply::Lines(watch_lines("19")),
    );
    api.push(SERVICES, Mode::Watch, Reply::Lines(watch_lines("20")));
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await);
    assert!(metric(&server, &events("DestinationRule", "apply"), 2.0).await);
    assert!(metric(&server, &events("DestinationRule", "delete"), 1.0).await);
    assert!(metric(&server, &events("Service", "apply"), 1.0).await);
    assert!(metric(&server, &events("Service", "delete"), 1.0).await);
    // reviews and details are left; tmp came and went.
    assert!(wait_count(&server, ObjectKind::DestinationRule, 2).await);
    assert_eq!(count(&server, ObjectKind::Service), 6);
    let text = server.handle.metrics_text();
    let stamp = metric_value(
        &text,
        "mtls_guard_watch_last_event_timestamp_seconds{kind=\"DestinationRule\"}",
    )
    .unwrap();
    assert!(stamp > 1.7e9, "{stamp}");
    // The streams ended (as at their timeout): watched again from where they
    // stopped, without a new list.
    for (path, rv) in [(DESTINATION_RULES, "737"), (SERVICES, "741")] {
        let mut resumed = false;
        for _ in 0..100 {
            let requests = api.requests_to(path);
            if requests
                .iter()
                .any(|r| r.contains("watch=true") && r.contains(&format!("resourceVersion={rv}")))
            {
                assert_eq!(
                    requests.iter().filter(|r| !r.contains("watch")).count(),
                    1,
                    "{requests:?}"
                );
                resumed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(resumed, "{path}: {:?}", api.requests_to(path));
    }
    server.handle.stop().await;
}

#[tokio::test]
async fn a_bookmark_moves_the_watch_on_without_an_event() {
    let api = ApiServer::captured();
    // Only the captured bookmark (RV 737) after the list at 734, then the stream ends.
    let bookmark = watch_lines("19").pop().unwrap();
    assert!(bookmark.contains("BOOKMARK"));
    api.push(DESTINATION_RULES, Mode::Watch, Reply::Lines(vec![bookmark]));
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await);
    let mut resumed = false;
    for _ in 0..100 {
        if api
            .requests_to(DESTINATION_RULES)
            .iter()
            .any(|r| r.contains("watch=true") && r.contains("resourceVersion=737"))
        {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(resumed, "{:?}", api.requests_to(DESTINATION_RULES));
    let text = server.handle.metrics_text();
    for kind_type in ["apply", "delete"] {
        assert_eq!(
            metric_value(&text, &events("DestinationRule", kind_type)),
            Some(0.0)
        );
    }
    assert_eq!(
        metric_value(&text, &events("DestinationRule", "relist")),
        Some(1.0)
    );
    assert_eq!(count(&server, ObjectKind::DestinationRule), 2);
    server.handle.stop().await;
}

#[tokio::test]
async fn deleting_and_adding_policies_changes_the_verdict() {
    let api = ApiServer::captured();
    let policies = api.live_watch(POLICIES);
    let peer_auths = api.live_watch(PEER_AUTHENTICATIONS);
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await);
    assert_eq!(validate(&server, "25").await["response"]["allowed"], false);

    let policy = list_item(
        "12",
        "default",
        "authentication.istio.io/v1alpha1",
        "Policy",
    );
    let peer_auth = list_item(
        "11",
        "default",
        "security.istio.io/v1",
        "PeerAuthentication",
    );
    policies.send(event_line("DELETED", &policy)).unwrap();
    peer_auths.send(event_line("DELETED", &peer_auth)).unwrap();
    assert!(metric(&server, &events("Policy", "delete"), 1.0).await);
    assert!(metric(&server, &events("PeerAuthentication", "delete"), 1.0).await);
    // Nothing requires mutual TLS any more.
    let answer = validate(&server, "25").await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");

    policies.send(event_line("ADDED", &policy)).unwrap();
    assert!(metric(&server, &events("Policy", "apply"), 1.0).await);
    let answer = validate(&server, "25").await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert!(
        message_of(&answer)
            .unwrap()
            .contains("Policy bookinfo/default"),
        "{answer}"
    );
    server.handle.stop().await;
}

#[tokio::test]
async fn the_mesh_config_map_sets_auto_mtls_unless_a_flag_does() {
    let api = ApiServer::captured();
    let config_maps = api.live_watch("/api/v1/namespaces/istio-system/configmaps");
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await);
    assert!(
        !server
            .handle
            .snapshots()
            .current()
            .unwrap()
            .settings
            .auto_mtls
    );

    // The captured ConfigMap with auto mTLS turned on.
    let mut config_map = list_item("18", "istio", "v1", "ConfigMap");
    config_map["data"]["mesh"] = Value::from("enableAutoMtls: true\nrootNamespace: istio-system\n");
    config_map["metadata"]["resourceVersion"] = Value::from("900");
    config_maps
        .send(event_line("MODIFIED", &config_map))
        .unwrap();
    assert!(metric(&server, &events("ConfigMap", "apply"), 1.0).await);
    assert!(
        server
            .handle
            .snapshots()
            .current()
            .unwrap()
            .settings
            .auto_mtls
    );

    // Deleted: Istio's default (on).
    config_maps
        .send(event_line("DELETED", &config_map))
        .unwrap();
    assert!(metric(&server, &events("ConfigMap", "delete"), 1.0).await);
    assert!(
        server
            .handle
            .snapshots()
            .current()
            .unwrap()
            .settings
            .auto_mtls
    );
    server.handle.stop().await;

    // --auto-mtls=false wins over the mesh config.
    let api = ApiServer::captured();
    let server = start(&api, |c| c.overrides.auto_mtls = Some(true)).await;
    assert!(ready(&server).await);
    assert!(
        server
            .handle
            .snapshots()
            .current()
            .unwrap()
            .settings
            .auto_mtls
    );
    server.handle.stop().await;
}

#[tokio::test]
async fn an_expired_resource_version_relists() {
    let api = ApiServer::captured();
    // The captured 410 (an ERROR event in a 200 stream), then the stream ends.
    api.push(
        DESTINATION_RULES,
        Mode::Watch,
        Reply::Lines(watch_lines("23")),
    );
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await);
    assert!(metric(&server, &events("DestinationRule", "relist"), 2.0).await);
    let lists = api
        .requests_to(DESTINATION_RULES)
        .into_iter()
        .filter(|r| !r.contains("watch"))
        .count();
    assert_eq!(lists, 2);
    assert_eq!(count(&server, ObjectKind::DestinationRule), 2);
    assert_eq!(readyz(&server).await.0, 200);
    server.handle.stop().await;
}

#[tokio::test]
async fn a_forbidden_kind_names_the_rbac_rule_and_reviews_wait_for_it() {
    let api = ApiServer::captured();
    // The captured 403 of a ServiceAccount without access to destinationrules.
    api.set(DESTINATION_RULES, Mode::Get, Reply::Captured("27"));
    let server = start(&api, |_| {}).await;
    let (status, body) = readyz_says(&server, "forbidden").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("DestinationRule")
            && body.contains("\"destinationrules\"")
            && body.contains("\"networking.istio.io\"")
            && body.contains("[list, watch]"),
        "{body}"
    );
    // --unsynced deny (the default): a rule cannot get in unjudged.
    let answer = validate(&server, "25").await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(answer["response"]["status"]["code"], 503, "{answer}");
    let message = message_of(&answer).unwrap();
    assert!(
        message.contains("still syncing") && message.contains("DestinationRule"),
        "{message}"
    );
    // A request that is not judged anyway passes.
    let (_, answer) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("02"),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let text = server.handle.metrics_text();
    assert_eq!(
        metric_value(&text, "mtls_guard_watch_up{kind=\"DestinationRule\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&text, "mtls_guard_watch_up{kind=\"Service\"}"),
        Some(1.0)
    );

    // Granted: the next retry lists, and reviews are judged.
    api.set(DESTINATION_RULES, Mode::Get, Reply::Captured("10"));
    assert!(ready(&server).await, "{:?}", readyz(&server).await);
    let answer = validate(&server, "25").await;
    assert!(
        message_of(&answer)
            .unwrap()
            .contains("requires mutual TLS (STRICT)"),
        "{answer}"
    );
    server.handle.stop().await;
}

#[tokio::test]
async fn unsynced_allow_lets_rules_through_with_a_warning_until_every_kind_is_listed() {
    let api = ApiServer::captured();
    let (open, gate) = oneshot::channel();
    api.set(
        PEER_AUTHENTICATIONS,
        Mode::Get,
        Reply::Gated(gate, Box::new(Reply::Captured("11"))),
    );
    let server = start_with(&api, |_| {}, Unsynced::Allow).await;
    let (status, body) = readyz_says(&server, "PeerAuthentication").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not listed yet"), "{body}");
    // Every watch series exists before the first list.
    let text = server.handle.metrics_text();
    assert_eq!(
        metric_value(&text, "mtls_guard_watch_up{kind=\"PeerAuthentication\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&text, &events("PeerAuthentication", "relist")),
        Some(0.0)
    );

    let answer = validate(&server, "25").await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let warning = answer["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("not judged") && warning.contains("PeerAuthentication"),
        "{warning}"
    );

    open.send(()).unwrap();
    assert!(ready(&server).await);
    let answer = validate(&server, "25").await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    server.handle.stop().await;
}

#[tokio::test]
async fn a_lost_watch_fails_readiness_after_the_grace_period() {
    let api = ApiServer::captured();
    // Listed, but every watch of destinationrules is refused from then on.
    api.push(DESTINATION_RULES, Mode::Watch, Reply::Captured("27"));
    let server = start(&api, |c| c.watch_grace = Duration::from_millis(500)).await;
    let (status, body) = readyz_says(&server, "watch lost").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("DestinationRule") && body.contains("forbidden"),
        "{body}"
    );
    assert!(
        metric(
            &server,
            "mtls_guard_watch_up{kind=\"DestinationRule\"}",
            0.0
        )
        .await
    );

    // The watch works again and an event arrives: ready.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    api.set(DESTINATION_RULES, Mode::Watch, Reply::Live(Vec::new(), rx));
    tx.send(watch_lines("19").remove(0)).unwrap();
    assert!(ready(&server).await, "{:?}", readyz(&server).await);
    assert!(
        metric(
            &server,
            "mtls_guard_watch_up{kind=\"DestinationRule\"}",
            1.0
        )
        .await
    );
    assert_eq!(count(&server, ObjectKind::DestinationRule), 3);
    server.handle.stop().await;
}

#[tokio::test]
async fn a_missing_api_counts_as_empty_until_served_and_empties_when_removed() {
    let api = ApiServer::captured();
    api.set(
        "/apis",
        Mode::Aggregated,
        Reply::Json(discovery_without_v1alpha1()),
    );
    let server = start(&api, |c| c.discovery_interval = Duration::from_millis(100)).await;
    assert!(ready(&server).await, "{:?}", readyz(&server).await);
    assert_eq!(count(&server, ObjectKind::Policy), 0);
    assert!(api.requests_to(POLICIES).is_empty());
    let text = server.handle.metrics_text();
    assert_eq!(
        metric_value(&text, "mtls_guard_watch_up{kind=\"Policy\"}"),
        Some(1.0)
    );

    // The CRDs are installed: found by the next discovery, listed, judged with.
    api.set("/apis", Mode::Aggregated, Reply::Captured("04"));
    assert!(wait_count(&server, ObjectKind::Policy, 1).await);
    assert!(!api.requests_to(POLICIES).is_empty());

    // And removed again: the kind is emptied, the server stays ready.
    api.set(
        "/apis",
        Mode::Aggregated,
        Reply::Json(discovery_without_v1alpha1()),
    );
    assert!(wait_count(&server, ObjectKind::Policy, 0).await);
    assert_eq!(readyz(&server).await.0, 200);
    server.handle.stop().await;
}

#[tokio::test]
async fn a_list_answering_404_counts_as_empty() {
    let api = ApiServer::captured();
    // Discovery says served, but the list gets the captured plain-text 404 of an
    // API that is not served (a CRD deleted in between).
    api.set(MESH_POLICIES, Mode::Get, Reply::Captured("24"));
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await, "{:?}", readyz(&server).await);
    assert_eq!(count(&server, ObjectKind::MeshPolicy), 0);
    assert_eq!(count(&server, ObjectKind::Policy), 1);
    let text = server.handle.metrics_text();
    assert_eq!(
        metric_value(&text, "mtls_guard_watch_up{kind=\"MeshPolicy\"}"),
        Some(1.0)
    );
    server.handle.stop().await;
}

#[tokio::test]
async fn a_server_without_aggregated_discovery_is_read_through_its_group_list() {
    let api = ApiServer::captured();
    // What a server without aggregated discovery sends: its plain group list.
    api.set("/apis", Mode::Aggregated, Reply::Captured("03"));
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await, "{:?}", readyz(&server).await);
    assert_eq!(count(&server, ObjectKind::PeerAuthentication), 1);
    assert_eq!(count(&server, ObjectKind::Policy), 1);
    assert!(
        api.requests().iter().any(|r| r == "GET /apis?"),
        "{:?}",
        api.requests()
    );
    server.handle.stop().await;
}

/// docs/metrics.md, section "Cluster mode": every series exists before anything is
/// listed (discovery has not answered yet), counters at 0, and its kinds are the
/// kinds table's and the ConfigMap.
#[tokio::test]
async fn every_documented_watch_series_exists_from_start_up() {
    let api = ApiServer::captured();
    let (_open, gate) = oneshot::channel::<()>();
    api.set(
        "/apis",
        Mode::Aggregated,
        Reply::Gated(gate, Box::new(Reply::Captured("04"))),
    );
    let server = start(&api, |_| {}).await;
    let text = plain_client()
        .get(server.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let documented = documented_series(Some("Cluster mode"));
    for (series, kind) in &documented {
        match kind.as_str() {
            "counter" => assert_eq!(metric_value(&text, series), Some(0.0), "{series}\n{text}"),
            _ => assert!(metric_value(&text, series).is_some(), "{series}\n{text}"),
        }
    }
    let kinds: Vec<String> = documented
        .iter()
        .filter_map(|(s, _)| s.strip_prefix("mtls_guard_watch_up{kind=\""))
        .map(|k| k.trim_end_matches("\"}").to_string())
        .collect();
    let mut watched: Vec<String> = mtls_guard::model::KINDS
        .iter()
        .map(|k| k.name.to_string())
        .collect();
    watched.push("ConfigMap".to_string());
    assert_eq!(kinds, watched);
    assert_eq!(
        metric_value(&text, "mtls_guard_watch_up{kind=\"DestinationRule\"}"),
        Some(0.0)
    );
    server.handle.stop().await;
}

/// Section 8's backends come from the cluster too: the webhook configurations and
/// APIServices listed (in the API server's list shape, items without `apiVersion` and
/// `kind`; built here, as no list of them was captured) are indexed by the Services
/// they call, and a PeerAuthentication putting one under STRICT is warned about.
#[tokio::test]
async fn webhook_and_apiservice_backends_are_read_from_the_cluster() {
    let api = ApiServer::captured();
    let list = |kind: &str, api_version: &str, items: serde_json::Value| {
        Reply::Json(serde_json::json!({
            "kind": format!("{kind}List"), "apiVersion": api_version,
            "metadata": {"resourceVersion": "734"}, "items": items,
        }))
    };
    api.push(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        Mode::Get,
        list(
            "ValidatingWebhookConfiguration",
            "admissionregistration.k8s.io/v1",
            serde_json::json!([{
                "metadata": {"name": "policy-engine", "resourceVersion": "700"},
                "webhooks": [{"name": "validate.policy-engine.io",
                    "clientConfig": {"service": {"namespace": "bookinfo", "name": "details", "port": 9080}},
                    "admissionReviewVersions": ["v1"], "sideEffects": "None"}],
            }]),
        ),
    );
    api.push(
        "/apis/apiregistration.k8s.io/v1/apiservices",
        Mode::Get,
        list(
            "APIService",
            "apiregistration.k8s.io/v1",
            serde_json::json!([
                {"metadata": {"name": "v1.apps", "resourceVersion": "10"},
                    "spec": {"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15}},
                {"metadata": {"name": "v1beta1.metrics.k8s.io", "resourceVersion": "11"},
                    "spec": {"service": {"namespace": "bookinfo", "name": "ratings", "port": 9080},
                        "group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100}},
            ]),
        ),
    );
    let server = start(&api, |_| {}).await;
    assert!(ready(&server).await);
    assert!(wait_count(&server, ObjectKind::ValidatingWebhookConfiguration, 1).await);
    assert_eq!(count(&server, ObjectKind::APIService), 2);
    assert_eq!(count(&server, ObjectKind::MutatingWebhookConfiguration), 0);
    let view = server.handle.snapshots().current().unwrap();
    let called: Vec<String> = view
        .snapshot
        .backends()
        .map(|b| format!("{} {}/{}:{}", b.caller, b.namespace, b.service, b.port))
        .collect();
    assert_eq!(
        called,
        [
            "ValidatingWebhookConfiguration policy-engine bookinfo/details:9080",
            "APIService v1beta1.metrics.k8s.io bookinfo/ratings:9080",
        ]
    );
    // Bookinfo's Policy default is STRICT: both are already STRICT backends.
    let strict = mtls_guard::decision::strict_backends(&view.snapshot, &view.settings);
    assert_eq!(strict.len(), 2, "{strict:?}");
    server.handle.stop().await;
}
