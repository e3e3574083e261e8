//! `--client-ca`: the webhook port asks for a client certificate and serves only
//! clients whose certificate is signed by that CA (real rustls on both sides).

mod server_support;

use mtls_guard::certs::ServingPair;
use mtls_guard::server::SnapshotSource;
use server_support::*;

/// A server requiring client certificates signed by `client_ca`.
async fn server_requiring(client_ca: &TestCa, dir: &std::path::Path) -> TestServer {
    let ca_file = dir.join("client-ca.crt");
    std::fs::write(&ca_file, client_ca.pem()).unwrap();
    TestServer::start_with(SnapshotSource::Objects(bookinfo_objects()), |c| {
        c.client_ca = Some(ca_file)
    })
    .await
}

/// An HTTP/2-capable client trusting the server's CA and presenting `identity`.
fn client_with(server: &TestServer, identity: Option<&ServingPair>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .https_only(true)
        .add_root_certificate(reqwest::Certificate::from_pem(server.ca.pem().as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(20));
    if let Some(pair) = identity {
        let pem = format!("{}{}", pair.cert_pem, pair.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn try_review(client: &reqwest::Client, server: &TestServer) -> Result<u16, String> {
    let resp = client
        .post(server.url("/validate"))
        .header("content-type", "application/json")
        .body(review_body("10"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    resp.bytes().await.map_err(|e| format!("{e:?}"))?;
    Ok(status)
}

fn reviews_answered(server: &TestServer) -> f64 {
    metric_value(
        &server.handle.metrics_text(),
        "mtls_guard_reviews_total{endpoint=\"validate\",verdict=\"allowed\",kind=\"DestinationRule\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_client_ca_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let api_server_ca = TestCa::new("API server client CA");
    let server = server_requiring(&api_server_ca, dir.path()).await;

    // No client certificate.
    let result = try_review(&client_with(&server, None), &server).await;
    assert!(result.is_err(), "no client certificate: {result:?}");

    // A client certificate from another CA.
    let other_ca = TestCa::new("someone else's CA");
    let stranger = other_ca
        .authority
        .issue_client("kube-apiserver", 1)
        .unwrap();
    let result = try_review(&client_with(&server, Some(&stranger)), &server).await;
    assert!(result.is_err(), "a certificate from another CA: {result:?}");

    // A certificate from the right CA that is not for client authentication (a
    // serving certificate, extended key usage serverAuth only).
    let serving = api_server_ca.serving_pair();
    let result = try_review(&client_with(&server, Some(&serving)), &server).await;
    assert!(
        result.is_err(),
        "a serving certificate as client certificate: {result:?}"
    );
    assert_eq!(reviews_answered(&server), 0.0, "no review was answered");

    // The API server's client certificate: answered, over HTTP/2 and HTTP/1.1.
    let api_server = api_server_ca
        .authority
        .issue_client("kube-apiserver", 1)
        .unwrap();
    let client = client_with(&server, Some(&api_server));
    assert_eq!(try_review(&client, &server).await, Ok(200));
    let resp = client
        .post(server.url("/validate"))
        .header("content-type", "application/json")
        .body(review_body("10"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(reviews_answered(&server), 2.0);
    server.handle.stop().await;
}

/// Without --client-ca no certificate is asked for, and one sent anyway is ignored.
#[tokio::test]
async fn without_a_client_ca_any_client_is_served() {
    let server = TestServer::bookinfo().await;
    assert_eq!(
        try_review(&client_with(&server, None), &server).await,
        Ok(200)
    );
    let someone = TestCa::new("any CA")
        .authority
        .issue_client("someone", 1)
        .unwrap();
    assert_eq!(
        try_review(&client_with(&server, Some(&someone)), &server).await,
        Ok(200)
    );
    server.handle.stop().await;
}

#[tokio::test]
async fn an_unusable_client_ca_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let secret = SecretDir::new(&ca.serving_pair());
    let not_pem = dir.path().join("client-ca.crt");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    for (path, expected) in [
        (not_pem, "no CERTIFICATE block"),
        (dir.path().join("missing.crt"), "missing.crt"),
    ] {
        let mut config = mtls_guard::server::ServerConfig::local(
            secret.files(),
            SnapshotSource::Objects(bookinfo_objects()),
        );
        config.client_ca = Some(path);
        let error = format!("{:#}", mtls_guard::server::start(config).await.unwrap_err());
        assert!(error.contains(expected), "{error}");
    }
}
