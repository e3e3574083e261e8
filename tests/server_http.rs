//! The server over real TLS with a real HTTP client: the webhook routes answer the
//! captured AdmissionReviews (contract section 6), the admin port reports health,
//! readiness and metrics, and bad input never stops the server.

mod server_support;

use base64::Engine;
use mtls_guard::server::{SnapshotSource, BODY_LIMIT};
use mtls_guard::snapshot::Snapshot;
use serde_json::Value;
use server_support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn is_mutating(number: &str) -> bool {
    let dir = fixtures().join("admission");
    std::fs::read_dir(dir).unwrap().any(|e| {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        name.starts_with(&format!("{number}-")) && name.ends_with("-mutating.json")
    })
}

fn decoded_patch(answer: &Value) -> Option<Value> {
    let b64 = answer.pointer("/response/patch")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn admin_port_reports_health_readiness_and_metrics() {
    let server = TestServer::bookinfo().await;
    let admin = plain_client();

    let healthz = admin
        .get(server.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = admin.get(server.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);

    // One review, so the review metrics have a sample.
    let (status, _) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200);

    let resp = admin
        .get(server.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    assert_eq!(
        metric_value(
            &text,
            &format!(
                "mtls_guard_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "mtls_guard_snapshot_objects{kind=\"Service\"}"),
        Some(4.0)
    );
    assert_eq!(
        metric_value(&text, "mtls_guard_snapshot_objects{kind=\"Policy\"}"),
        Some(1.0)
    );
    assert_eq!(metric_value(&text, "mtls_guard_snapshot_loaded"), Some(1.0));
    let expiry = metric_value(
        &text,
        "mtls_guard_serving_certificate_expiry_timestamp_seconds",
    );
    assert_eq!(expiry, Some(server.handle.certificate().not_after as f64));
    assert_eq!(
        metric_value(
            &text,
            "mtls_guard_reviews_total{endpoint=\"validate\",verdict=\"allowed\",kind=\"DestinationRule\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "mtls_guard_review_duration_seconds_count{endpoint=\"validate\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"));
    server.handle.stop().await;
}

/// docs/metrics.md: every documented series exists right after start-up, counters
/// and histograms at 0; every family the server exports is documented; the kinds
/// of `mtls_guard_snapshot_objects` are the kinds table's.
#[tokio::test]
async fn every_documented_series_exists_from_start_up() {
    let server = TestServer::start(SnapshotSource::Empty).await;
    let text = plain_client()
        .get(server.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let documented = documented_series(None);
    assert!(documented.len() > 30, "{documented:?}");
    for (series, kind) in &documented {
        match kind.as_str() {
            "counter" => assert_eq!(metric_value(&text, series), Some(0.0), "{series}\n{text}"),
            "histogram" => {
                let (name, labels) = series.split_once('{').unwrap();
                let count = format!("{name}_count{{{labels}");
                assert_eq!(metric_value(&text, &count), Some(0.0), "{count}\n{text}");
            }
            _ if series.ends_with('=') => assert!(
                text.lines().any(|l| l.starts_with(series.as_str())),
                "{series}\n{text}"
            ),
            _ => assert!(metric_value(&text, series).is_some(), "{series}\n{text}"),
        }
    }
    // Families whose series come later (with the first finding) have their own section.
    let later = documented_series(Some("Audit findings"));
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            documented
                .iter()
                .chain(&later)
                .any(|(s, _)| s.starts_with(name)),
            "{name} is exported but not in docs/metrics.md"
        );
    }
    let kinds: Vec<String> = documented
        .iter()
        .filter_map(|(s, _)| s.strip_prefix("mtls_guard_snapshot_objects{kind=\""))
        .map(|k| k.trim_end_matches("\"}").to_string())
        .collect();
    let table: Vec<String> = mtls_guard::model::KINDS
        .iter()
        .map(|k| k.name.to_string())
        .collect();
    assert_eq!(
        kinds, table,
        "docs/metrics.md lists the kinds of model::KINDS"
    );
    server.handle.stop().await;
}

#[tokio::test]
async fn every_fixture_is_answered_in_its_version_with_its_uid() {
    let server = TestServer::bookinfo().await;
    let client = server.client();
    let mut seen_v1beta1 = 0;
    for n in 1..=38 {
        let number = format!("{n:02}");
        let request = review_json(&number);
        let path = if is_mutating(&number) {
            "/mutate"
        } else {
            "/validate"
        };
        let (status, answer) = post(&client, &server.url(path), review_body(&number)).await;
        assert_eq!(status, 200, "fixture {number}: {answer}");
        assert_eq!(answer["kind"], "AdmissionReview", "fixture {number}");
        assert_eq!(
            answer["apiVersion"], request["apiVersion"],
            "fixture {number}"
        );
        assert_eq!(
            answer["response"]["uid"], request["request"]["uid"],
            "fixture {number}"
        );
        assert!(
            answer["response"]["allowed"].is_boolean(),
            "fixture {number}"
        );
        if request["apiVersion"] == "admission.k8s.io/v1beta1" {
            seen_v1beta1 += 1;
        }
    }
    assert_eq!(seen_v1beta1, 1, "fixture 21 is the v1beta1 review");
    server.handle.stop().await;
}

/// Contract section 7 over HTTPS: allowed untouched, patched to DISABLE, filled,
/// and the DISABLE rule denied (also under dry run).
#[tokio::test]
async fn bookinfo_scenario_verdicts() {
    let server = TestServer::bookinfo().await;
    let client = server.client();

    // reviews, ISTIO_MUTUAL: allowed untouched.
    let (_, answer) = post(&client, &server.url("/mutate"), review_body("09")).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    let (_, answer) = post(&client, &server.url("/validate"), review_body("10")).await;
    assert_eq!(answer["response"]["allowed"], true);

    // productpage, ISTIO_MUTUAL behind a non-mesh Ingress: patched to DISABLE, with a warning.
    let (_, answer) = post(&client, &server.url("/mutate"), review_body("07")).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let patch = decoded_patch(&answer).expect("a patch");
    assert!(patch.to_string().contains("DISABLE"), "{patch}");
    assert!(!answer["response"]["warnings"]
        .as_array()
        .unwrap()
        .is_empty());

    // reviews with tls.mode DISABLE (server dry run): denied, naming host, port and fix.
    let (_, answer) = post(&client, &server.url("/validate"), review_body("25")).await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("reviews") && message.contains("9080"),
        "{message}"
    );
    assert!(
        message.contains("DISABLE") && message.contains("ISTIO_MUTUAL"),
        "{message}"
    );

    // patch-me, no trafficPolicy: ISTIO_MUTUAL filled in, parent created first.
    let (_, answer) = post(&client, &server.url("/mutate"), review_body("36")).await;
    let patch = decoded_patch(&answer).expect("a patch");
    let ops = patch.as_array().unwrap();
    assert_eq!(ops[0]["path"], "/spec/trafficPolicy", "{patch}");
    assert!(patch.to_string().contains("ISTIO_MUTUAL"), "{patch}");

    let text = server.handle.metrics_text();
    for (labels, at_least) in [
        (
            "endpoint=\"mutate\",verdict=\"patched\",kind=\"DestinationRule\"",
            2.0,
        ),
        (
            "endpoint=\"validate\",verdict=\"denied\",kind=\"DestinationRule\"",
            1.0,
        ),
    ] {
        let v = metric_value(&text, &format!("mtls_guard_reviews_total{{{labels}}}"));
        assert!(v.unwrap_or(0.0) >= at_least, "{labels}: {text}");
    }
    server.handle.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_clear_answers_and_the_server_keeps_serving() {
    let server = TestServer::bookinfo().await;
    let client = server.client();

    let mut without_object = review_json("09");
    without_object["request"]["object"] = Value::Null;
    let mut string_object = review_json("09");
    string_object["request"]["object"] = Value::from("not an object");
    let mut no_request = review_json("10");
    no_request.as_object_mut().unwrap().remove("request");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid JSON", b"{\"apiVersion\": ".to_vec()),
        ("empty body", Vec::new()),
        ("not UTF-8", vec![0xff, 0xfe, 0x00, 0x80]),
        ("{}", b"{}".to_vec()),
        ("JSON array", b"[1,2,3]".to_vec()),
        ("deeply nested", deep.into_bytes()),
        (
            "review without request",
            serde_json::to_vec(&no_request).unwrap(),
        ),
        (
            "CREATE without object",
            serde_json::to_vec(&without_object).unwrap(),
        ),
        (
            "object is a string",
            serde_json::to_vec(&string_object).unwrap(),
        ),
    ];
    for (name, body) in cases {
        for path in ["/mutate", "/validate"] {
            let (status, answer) = post(&client, &server.url(path), body.clone()).await;
            assert!(
                status == 200 || status == 400,
                "{name} {path}: {status} {answer}"
            );
            if name == "object is a string" && path == "/mutate" {
                // Not judged: the mutating webhook lets it pass with a warning, and the
                // API server's schema check (after mutation) or /validate rejects it.
                assert_eq!(answer["response"]["allowed"], true, "{answer}");
                assert!(answer["response"].get("patch").is_none(), "{answer}");
                let warning = answer["response"]["warnings"][0].as_str().unwrap_or("");
                assert!(warning.contains("not judged"), "{answer}");
                continue;
            }
            let message = message_of(&answer);
            assert!(
                message.as_deref().is_some_and(|m| !m.is_empty()),
                "{name} {path}: no message in {answer}"
            );
            if let Some(response) = answer.get("response") {
                assert_eq!(response["allowed"], false, "{name} {path}: {answer}");
            }
            if status == 200 {
                assert_eq!(
                    answer["response"]["uid"],
                    review_json("09")["request"]["uid"]
                );
            }
            // The next request on the same client is served normally.
            let (status, answer) = post(&client, &server.url("/validate"), review_body("10")).await;
            assert_eq!(status, 200, "after {name}: {answer}");
            assert_eq!(answer["response"]["allowed"], true);
        }
    }
    server.handle.stop().await;
}

/// A body of exactly 3 MiB is read; one byte more gets 413; the server goes on.
#[tokio::test]
async fn body_limit_is_3_mib() {
    let server = TestServer::bookinfo().await;
    let mut at_limit = review_body("10");
    at_limit.resize(BODY_LIMIT, b' ');
    let mut over = at_limit.clone();
    over.push(b' ');
    for client in [server.client(), server.h2_client()] {
        let (status, answer) = post(&client, &server.url("/validate"), at_limit.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["response"]["uid"],
            review_json("10")["request"]["uid"]
        );
        let (status, answer) = post(&client, &server.url("/validate"), over.clone()).await;
        assert_eq!(status, 413, "{answer}");
        assert!(message_of(&answer).unwrap().contains("3 MiB"));
        let (status, _) = post(&client, &server.url("/validate"), review_body("10")).await;
        assert_eq!(status, 200);
    }
    server.handle.stop().await;
}

#[tokio::test]
async fn other_paths_and_methods_are_404_and_405() {
    let server = TestServer::bookinfo().await;
    let client = server.client();
    let resp = client.get(server.url("/validate")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = client.get(server.url("/mutate")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let (status, _) = post(&client, &server.url("/validate/main"), review_body("10")).await;
    assert_eq!(status, 404);
    let resp = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 404, "the probes are on the admin port only");
    // And the API server's query string is accepted.
    let (status, _) = post(
        &client,
        &server.url("/validate?timeout=10s"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200);
    server.handle.stop().await;
}

#[tokio::test]
async fn plaintext_http_on_the_tls_port_gets_no_http_answer() {
    let server = TestServer::bookinfo().await;
    let mut tcp = tokio::net::TcpStream::connect(server.handle.webhook_addr())
        .await
        .unwrap();
    tcp.write_all(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the server closes the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    let plain = plain_client();
    let url = format!(
        "http://127.0.0.1:{}/validate",
        server.handle.webhook_addr().port()
    );
    assert!(plain
        .post(url)
        .body(review_body("10"))
        .send()
        .await
        .is_err());

    // HTTPS still works afterwards.
    let (status, _) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200);
    server.handle.stop().await;
}

#[tokio::test]
async fn http2_and_http1_keep_alive_both_work() {
    let server = TestServer::bookinfo().await;
    for (client, version) in [
        (server.h2_client(), reqwest::Version::HTTP_2),
        (server.client(), reqwest::Version::HTTP_11),
    ] {
        for _ in 0..5 {
            let resp = client
                .post(server.url("/mutate"))
                .header("content-type", "application/json")
                .body(review_body("09"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.version(), version);
            assert_eq!(resp.status(), 200);
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(
                answer["response"]["uid"],
                review_json("09")["request"]["uid"]
            );
        }
    }
    // Several streams at once on one HTTP/2 connection.
    let client = server.h2_client();
    let url = server.url("/validate");
    let requests = (0..16).map(|_| post(&client, &url, review_body("25")));
    for (status, answer) in futures::future::join_all(requests).await {
        assert_eq!(status, 200);
        assert_eq!(answer["response"]["allowed"], false);
    }
    server.handle.stop().await;
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_served() {
    let server = TestServer::bookinfo().await;
    for version in [
        reqwest::tls::Version::TLS_1_2,
        reqwest::tls::Version::TLS_1_3,
    ] {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(server.ca.pem().as_bytes()).unwrap(),
            )
            .min_tls_version(version)
            .max_tls_version(version)
            .build()
            .unwrap();
        let (status, _) = post(&client, &server.url("/validate"), review_body("10")).await;
        assert_eq!(status, 200, "{version:?}");
    }
    // A client that trusts another CA refuses the server.
    let other = TestCa::new("other CA");
    let stranger = client_trusting(&[&other.pem()], Protocol::Http1);
    assert!(stranger
        .post(server.url("/validate"))
        .body(review_body("10"))
        .send()
        .await
        .is_err());
    server.handle.stop().await;
}

#[tokio::test]
async fn not_ready_and_503_until_a_snapshot_is_published() {
    let server = TestServer::start(SnapshotSource::Deferred).await;
    let admin = plain_client();
    let readyz = admin.get(server.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    assert!(readyz.text().await.unwrap().contains("snapshot"));
    let (status, answer) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 503, "{answer}");

    server
        .handle
        .snapshots()
        .publish(Snapshot::from_objects(bookinfo_objects()));
    let readyz = admin.get(server.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    let (status, answer) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("25"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false);
    server.handle.stop().await;
}

#[tokio::test]
async fn files_source_loads_policies_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let list =
        serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": bookinfo_values() });
    let path = dir.path().join("bookinfo.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    let server = TestServer::start(SnapshotSource::Files(vec![path])).await;
    let text = server.handle.metrics_text();
    assert_eq!(
        metric_value(&text, "mtls_guard_snapshot_objects{kind=\"Service\"}"),
        Some(4.0)
    );
    let (_, answer) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("25"),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    server.handle.stop().await;
}

#[tokio::test]
async fn missing_policy_files_fail_the_start() {
    let ca = TestCa::new("test CA");
    let secret = SecretDir::new(&ca.serving_pair());
    let config = mtls_guard::server::ServerConfig::local(
        secret.files(),
        SnapshotSource::Files(vec!["/nonexistent/policies.yaml".into()]),
    );
    let err = mtls_guard::server::start(config).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("/nonexistent/policies.yaml"),
        "{err:#}"
    );
}

/// A request whose body is still arriving when the shutdown starts is answered;
/// the server then stops, and new connections are refused.
#[tokio::test]
async fn shutdown_drains_a_request_in_flight() {
    let server = TestServer::bookinfo().await;
    let body = review_body("10");
    let (mut tls, rest) = half_sent_review(
        server.handle.webhook_addr(),
        &server.ca.pem(),
        "/validate",
        &body,
        &server.admin_url("/metrics"),
    )
    .await;

    server.handle.shutdown();
    assert!(
        wait_for_status(&server.admin_url("/readyz"), 503, 200).await,
        "not ready once the shutdown starts"
    );
    tls.write_all(&rest).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(review_json("10")["request"]["uid"].as_str().unwrap()));

    let addr = server.handle.webhook_addr();
    server.handle.wait().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Clients that stall are cut off by the limits: no TLS handshake, headers that never
/// end, a body that never ends (408). The server goes on serving.
#[tokio::test]
async fn stalled_clients_are_cut_off() {
    use std::time::Duration;
    let server = TestServer::start_with(SnapshotSource::Objects(bookinfo_objects()), |c| {
        c.limits.tls_handshake_timeout = Duration::from_millis(300);
        c.limits.header_read_timeout = Duration::from_millis(300);
        c.review_timeout = Duration::from_millis(300);
    })
    .await;
    let bound = Duration::from_secs(15);

    // TCP connection, no ClientHello: closed by the server.
    let mut tcp = tokio::net::TcpStream::connect(server.handle.webhook_addr())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(bound, tcp.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the server closes a connection without handshake"
    );

    // Headers that never end: closed without an answer.
    let mut tls = raw_tls(server.handle.webhook_addr(), &server.ca.pem()).await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(bound, tls.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the server closes a connection whose headers never end"
    );

    // A body that never ends: 408.
    let mut tls = raw_tls(server.handle.webhook_addr(), &server.ca.pem()).await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersion\":")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(bound, tls.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    let (status, _) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200);
    server.handle.stop().await;
}

/// A client that finishes the TLS handshake and then sends nothing (HTTP/1.1 or
/// HTTP/2 by ALPN alike) cannot hold a connection slot: the idle watch closes it,
/// and the one slot serves the next client.
#[tokio::test]
async fn silent_connections_are_closed_and_free_their_slot() {
    use std::time::Duration;
    let server = TestServer::start_with(SnapshotSource::Objects(bookinfo_objects()), |c| {
        c.limits.idle_timeout = Duration::from_millis(300);
        c.limits.max_connections = 1;
    })
    .await;
    let bound = Duration::from_secs(15);
    let mut silent = raw_tls(server.handle.webhook_addr(), &server.ca.pem()).await;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(bound, silent.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the server closes a connection that sends nothing"
    );
    let (status, answer) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"]["allowed"], true);
    server.handle.stop().await;
}

/// Reviews in flight are capped over all connections: with one slot held by a
/// request whose body is still arriving, another gets 503 at its deadline; once
/// the first is answered, the slot serves again.
#[tokio::test]
async fn reviews_in_flight_are_capped() {
    let server = TestServer::start_with(SnapshotSource::Objects(bookinfo_objects()), |c| {
        c.limits.max_in_flight = 1;
    })
    .await;
    let body = review_body("10");
    let (mut slow, rest) = half_sent_review(
        server.handle.webhook_addr(),
        &server.ca.pem(),
        "/validate",
        &body,
        &server.admin_url("/metrics"),
    )
    .await;
    let (status, answer) = post(
        &server.client(),
        &server.url("/validate?timeout=1s"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer.to_string().contains("too many reviews in flight"),
        "{answer}"
    );

    slow.write_all(&rest).await.unwrap();
    slow.flush().await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = slow.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let (status, _) = post(
        &server.client(),
        &server.url("/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200);
    server.handle.stop().await;
}

/// `--policies` files are reloaded when they change; a change that does not load
/// keeps the snapshot in place.
#[tokio::test]
async fn policy_files_are_reloaded_when_they_change() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesh.json");
    let write = |peers: Value| {
        let mut objects = bookinfo_values();
        for o in &mut objects {
            if o["kind"] == "Policy" && o["metadata"]["name"] == "default" {
                o["spec"]["peers"] = peers.clone();
            }
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        // Through a rename, as kubelet updates a mounted ConfigMap.
        let tmp = dir.path().join(".mesh.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&list).unwrap()).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write(serde_json::json!([{"mtls": {}}]));
    let server =
        TestServer::start_with(SnapshotSource::Files(vec![dir.path().to_path_buf()]), |c| {
            c.policies_poll_interval = Duration::from_millis(50);
        })
        .await;
    let client = server.client();
    let allowed = |answer: &Value| answer["response"]["allowed"] == true;
    // reviews with tls DISABLE: denied while the namespace requires mTLS.
    let (_, answer) = post(&client, &server.url("/validate"), review_body("25")).await;
    assert!(!allowed(&answer), "{answer}");

    // The namespace Policy turns to PLAINTEXT: the same rule becomes fine.
    write(serde_json::json!([]));
    let mut reloaded = false;
    for _ in 0..200 {
        let (_, answer) = post(&client, &server.url("/validate"), review_body("25")).await;
        if allowed(&answer) {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the changed policy was not picked up");

    // A broken file: the reload fails and the last good snapshot stays.
    let tmp = dir.path().join(".broken.tmp");
    std::fs::write(&tmp, b"{ not json").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    assert!(
        wait_for_metric_at(
            &server.admin_url("/metrics"),
            r#"mtls_guard_snapshot_reloads_total{result="error"}"#,
            1.0
        )
        .await,
        "the broken file was tried"
    );
    let (_, answer) = post(&client, &server.url("/validate"), review_body("25")).await;
    assert!(allowed(&answer), "{answer}");
    server.handle.stop().await;
}

/// Issue 3: apply each patch the server sends with the json-patch crate, send the
/// patched object back (as the API server would on to validation and on a
/// re-apply), and check it is allowed with nothing left to patch.
#[tokio::test]
async fn patched_objects_are_allowed_with_nothing_left_to_patch() {
    let server = TestServer::bookinfo().await;
    let client = server.client();
    // productpage (patched to DISABLE), patch-me on ratings (ISTIO_MUTUAL filled in).
    for (mutating, validating) in [("07", "08"), ("37", "38")] {
        let request = review_json(mutating);
        let (_, answer) = post(&client, &server.url("/mutate"), review_body(mutating)).await;
        let ops = decoded_patch(&answer).expect("a patch");
        let patch: json_patch::Patch = serde_json::from_value(ops).unwrap();
        let mut object = request["request"]["object"].clone();
        json_patch::patch(&mut object, &patch).unwrap();

        for (number, path) in [(mutating, "/mutate"), (validating, "/validate")] {
            let mut again = review_json(number);
            again["request"]["object"] = object.clone();
            let (status, answer) = post(
                &client,
                &server.url(path),
                serde_json::to_vec(&again).unwrap(),
            )
            .await;
            assert_eq!(status, 200);
            assert_eq!(
                answer["response"]["allowed"], true,
                "{path} {number}: {answer}"
            );
            assert!(
                answer["response"].get("patch").is_none(),
                "{path} {number}: {answer}"
            );
        }
    }
    // The ratings rule of the tutorial without tls: filled with ISTIO_MUTUAL.
    let mut ratings = review_json("11");
    ratings["request"]["object"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("trafficPolicy");
    let (_, answer) = post(
        &client,
        &server.url("/mutate"),
        serde_json::to_vec(&ratings).unwrap(),
    )
    .await;
    let patch: json_patch::Patch =
        serde_json::from_value(decoded_patch(&answer).expect("a patch")).unwrap();
    let mut object = ratings["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).unwrap();
    assert_eq!(
        object["spec"]["trafficPolicy"]["tls"]["mode"],
        "ISTIO_MUTUAL"
    );
    assert_eq!(
        object["spec"]["subsets"],
        ratings["request"]["object"]["spec"]["subsets"]
    );
    server.handle.stop().await;
}

/// What an HTTP/2 client that sends its whole body before reading the answer
/// (curl does) sees: how much of the body it could send, whether the stream was
/// reset under it, and the answer.
async fn h2_send_all_then_read(
    server: &TestServer,
    body: &[u8],
    content_length: bool,
) -> (usize, Option<String>, u16, Value) {
    let tls = raw_tls_alpn(server.handle.webhook_addr(), &server.ca.pem(), &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = axum::http::Request::post(server.url("/validate"))
        .header("content-type", "application/json");
    if content_length {
        request = request.header("content-length", body.len());
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    let body = axum::body::Bytes::copy_from_slice(body);
    let mut sent = 0;
    let mut reset = None;
    while sent < body.len() {
        send.reserve_capacity((body.len() - sent).min(256 * 1024));
        match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => {
                let end = sent + n;
                if let Err(e) = send.send_data(body.slice(sent..end), end == body.len()) {
                    reset = Some(e.to_string());
                    break;
                }
                sent = end;
            }
            Some(Err(e)) => {
                reset = Some(e.to_string());
                break;
            }
            None => {
                reset = Some("the stream closed".into());
                break;
            }
        }
    }
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut stream = response.into_body();
    let mut answer = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.unwrap();
        let _ = stream.flow_control().release_capacity(chunk.len());
        answer.extend_from_slice(&chunk);
    }
    (
        sent,
        reset,
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

/// Issue 9, defect 2: a body over 3 MiB over HTTP/2 got its stream reset while
/// the client was still sending, so curl reported "(92) Stream error in the HTTP/2
/// framing layer" instead of the 413. The client can now send its whole body and
/// read the 413 and its JSON message, with or without a Content-Length.
#[tokio::test]
async fn too_large_body_over_http2_gets_a_readable_413() {
    let server = TestServer::bookinfo().await;
    let body = vec![b' '; 4 * 1024 * 1024];
    for content_length in [true, false] {
        let (sent, reset, status, answer) =
            h2_send_all_then_read(&server, &body, content_length).await;
        assert_eq!(
            reset, None,
            "content-length {content_length}: stream reset after {sent} bytes"
        );
        assert_eq!(sent, body.len());
        assert_eq!(status, 413, "{answer}");
        assert!(
            message_of(&answer).unwrap().contains("at most 3 MiB"),
            "{answer}"
        );
    }

    // The same through reqwest (hyper's client, ALPN h2), and the connection goes on.
    let client = server.h2_client();
    for size in [3 * 1024 * 1024 + 1, 4 * 1024 * 1024, 8 * 1024 * 1024] {
        let resp = client
            .post(server.url("/validate"))
            .header("content-type", "application/json")
            .body(vec![b' '; size])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 413);
        let answer: Value = resp.json().await.unwrap();
        assert!(
            message_of(&answer).unwrap().contains("at most 3 MiB"),
            "{answer}"
        );
    }
    let (status, answer) = post(&client, &server.url("/validate"), review_body("10")).await;
    assert_eq!(status, 200, "{answer}");
    server.handle.stop().await;
}

/// Contract section 8 over HTTPS: the captured CREATE of a STRICT PeerAuthentication
/// (31) in the tutorial without its Policy, where reviews' rule says DISABLE, is
/// allowed by `/validate` with the warning naming the rule it breaks, denied with the
/// same text under --deny-breaking-changes, and passed silently by `/mutate`.
#[tokio::test]
async fn changes_to_policies_are_reviewed_against_the_stored_rules() {
    let mut objects: Vec<_> = bookinfo_objects()
        .into_iter()
        .filter(|o| o.kind() != mtls_guard::model::ObjectKind::Policy)
        .collect();
    let rule = serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {"host": "reviews", "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
    });
    objects.push(
        mtls_guard::model::MeshObject::from_value(rule)
            .unwrap()
            .unwrap(),
    );
    let expected = "mtls-guard: PeerAuthentication bookinfo/default (STRICT) breaks 1 DestinationRule: bookinfo/reviews port 9080 (tls DISABLE, needs ISTIO_MUTUAL)";

    let server = TestServer::start(SnapshotSource::Objects(objects.clone())).await;
    let client = server.client();
    let (status, answer) = post(&client, &server.url("/validate"), review_body("31")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        answer["response"]["warnings"],
        serde_json::json!([expected])
    );
    let (_, answer) = post(&client, &server.url("/mutate"), review_body("30")).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("warnings").is_none(), "{answer}");
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    server.handle.stop().await;

    let server = TestServer::start_with(SnapshotSource::Objects(objects), |c| {
        c.settings.deny_breaking_changes = true;
    })
    .await;
    let client = server.client();
    let (status, answer) = post(&client, &server.url("/validate"), review_body("31")).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(answer["response"]["status"]["code"], 403);
    assert_eq!(
        message_of(&answer).as_deref(),
        expected.strip_prefix("mtls-guard: ")
    );
    let text = server.handle.metrics_text();
    let denied = "mtls_guard_reviews_total{endpoint=\"validate\",verdict=\"denied\",kind=\"PeerAuthentication\"}";
    assert_eq!(metric_value(&text, denied), Some(1.0), "{text}");
    server.handle.stop().await;
}

/// Polls `GET /audit` until `done` holds for its JSON (bounded).
async fn audit_until(server: &TestServer, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let resp = plain_client()
            .get(server.admin_url("/audit"))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            last = resp.json().await.unwrap();
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/audit never got there; last: {last:#}");
}

fn codes_of(audit: &Value, rule: &str) -> Vec<String> {
    audit["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"]["name"] == rule)
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

/// Issue 10: `serve --policies` audits the stored rules of the Bookinfo tutorial,
/// before and after the exemption file is added: `GET /audit` and the gauge.
#[tokio::test]
async fn the_audit_follows_the_policy_files() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples.join("bookinfo")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let server =
        TestServer::start_with(SnapshotSource::Files(vec![dir.path().to_path_buf()]), |c| {
            c.policies_poll_interval = Duration::from_millis(50);
            c.audit_delay = Duration::from_millis(100);
        })
        .await;
    let metrics = server.admin_url("/metrics");

    // Before: productpage would be patched to DISABLE (it is behind the Ingress),
    // and Policy bookinfo/default still requires mTLS on its server side (MG206).
    let before = audit_until(&server, |a| a["counts"]["rules"] == 4).await;
    assert_eq!(
        codes_of(&before, "productpage"),
        ["MG103", "MG206"],
        "{before:#}"
    );
    assert_eq!(
        before["findings"].as_array().unwrap().len(),
        2,
        "{before:#}"
    );
    assert_eq!(
        before["summary"],
        "4 rules, 0 conflicts, 0 fills, 1 patches"
    );
    let patch = &before["findings"][0];
    assert_eq!(
        patch["rule"],
        serde_json::json!({"namespace": "bookinfo", "name": "productpage"})
    );
    assert_eq!(
        patch["scopes"],
        serde_json::json!([{"port": 9080, "subset": null}, {"port": 9080, "subset": "v1"}])
    );
    assert_eq!(patch["required"], "DISABLE");
    assert_eq!(
        patch["fix"],
        "set spec.trafficPolicy.tls.mode to DISABLE (was ISTIO_MUTUAL)"
    );
    assert!(
        before["computed_at"].as_str().unwrap().ends_with('Z'),
        "{before:#}"
    );
    let series =
        |code: &str| format!("mtls_guard_audit_findings{{namespace=\"bookinfo\",code=\"{code}\"}}");
    let text = server.handle.metrics_text();
    assert_eq!(metric_value(&text, &series("MG103")), Some(1.0), "{text}");
    assert_eq!(metric_value(&text, &series("MG206")), Some(1.0), "{text}");
    assert_eq!(metric_value(&text, "mtls_guard_audit_rules"), Some(4.0));
    // The documented family is there (docs/metrics.md, "Audit findings").
    for (prefix, _) in documented_series(Some("Audit findings")) {
        assert!(
            text.lines().any(|l| l.starts_with(&prefix)),
            "{prefix}\n{text}"
        );
    }

    // Scrapes and reads do not audit again.
    let runs = metric_value(&text, "mtls_guard_audit_runs_total").unwrap();
    for _ in 0..5 {
        let _ = plain_client().get(&metrics).send().await.unwrap();
        let _ = plain_client()
            .get(server.admin_url("/audit"))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = server.handle.metrics_text();
    assert_eq!(
        metric_value(&text, "mtls_guard_audit_runs_total"),
        Some(runs)
    );

    // After: the exemption Policy disable-mtls-productpage is added.
    std::fs::copy(
        examples.join("bookinfo-exemption/disable-mtls-productpage.yaml"),
        dir.path().join("disable-mtls-productpage.yaml"),
    )
    .unwrap();
    let after = audit_until(&server, |a| codes_of(a, "productpage") == ["MG103"]).await;
    assert!(
        after["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Policy bookinfo/disable-mtls-productpage exempts productpage"),
        "{after:#}"
    );
    assert!(after["computed_at_unix"].as_f64() > before["computed_at_unix"].as_f64());
    assert!(wait_for_metric_at(&metrics, &series("MG206"), 0.0).await);
    assert!(wait_for_metric_at(&metrics, &series("MG103"), 1.0).await);
    // One namespace's findings.
    let none: Value = plain_client()
        .get(server.admin_url("/audit?namespace=default"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["findings"], serde_json::json!([]));
    assert_eq!(none["counts"]["rules"], 4);
    server.handle.stop().await;
}

/// A burst of published snapshots makes one audit, once they settle; before the
/// first snapshot there is none (503).
#[tokio::test]
async fn a_burst_of_changes_is_audited_once() {
    let server = TestServer::start_with(SnapshotSource::Deferred, |c| {
        c.audit_delay = Duration::from_millis(400);
    })
    .await;
    let resp = plain_client()
        .get(server.admin_url("/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let runs = |text: &str| metric_value(text, "mtls_guard_audit_runs_total");
    assert_eq!(runs(&server.handle.metrics_text()), Some(0.0));
    for _ in 0..10 {
        server
            .handle
            .snapshots()
            .publish(Snapshot::from_objects(bookinfo_objects()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let audit = audit_until(&server, |a| a["counts"]["rules"] == 0).await;
    assert_eq!(audit["summary"], "0 rules, 0 conflicts, 0 fills, 0 patches");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(runs(&server.handle.metrics_text()), Some(1.0));
    server.handle.stop().await;
}
