//! The real server in cluster mode, fed by the stand-in API server, and what the
//! cluster tests ask it (needs `mod server_support;` beside `mod cluster_support;`).

use super::ApiServer;
use crate::server_support::*;
use mtls_guard::model::ObjectKind;
use mtls_guard::server::{SnapshotSource, Unsynced};
use mtls_guard::source::ClusterConfig;
use serde_json::Value;

/// A server whose cluster source reads `api`, with `tweak` applied to its config.
pub async fn start_with(
    api: &ApiServer,
    tweak: impl FnOnce(&mut ClusterConfig),
    unsynced: Unsynced,
) -> TestServer {
    let mut config = ClusterConfig::new(api.client());
    tweak(&mut config);
    TestServer::start_with(SnapshotSource::Cluster(Box::new(config)), |c| {
        c.unsynced = unsynced;
    })
    .await
}

pub async fn readyz(server: &TestServer) -> (u16, String) {
    let resp = plain_client()
        .get(server.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Objects of `kind` in the published snapshot (0 before one is published).
pub fn count(server: &TestServer, kind: ObjectKind) -> usize {
    server
        .handle
        .snapshots()
        .current()
        .and_then(|view| view.snapshot.counts().get(&kind).copied())
        .unwrap_or(0)
}

/// The answer of `/validate` to captured review `number` (HTTP 200 asserted).
pub async fn validate(server: &TestServer, number: &str) -> Value {
    let (status, answer) = post(
        &server.client(),
        &server.url("/validate"),
        review_body(number),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}
