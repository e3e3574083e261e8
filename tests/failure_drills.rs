//! Failure drills of cluster mode (issue 9, item 6): the API server unreachable at
//! start, a watch dropped mid-stream, a 410 on re-list, a CRD deleted and created
//! again, RBAC forbidden on one kind after the first sync. Each drill checks what an
//! operator sees (`/readyz`, the watch metrics, the log line) and that no review is
//! judged against a half-built snapshot, or a stale one past the grace period.
//! tests/cluster_source.rs covers the rest of the watch path (a 403 at start, a 410
//! on a watch, a missing API, bookmarks). docs/operations.md has the table.
//!
//! Kube's own client against the stand-in API server of tests/cluster_support
//! (captured responses), feeding the real server, asked over HTTPS. The tests run
//! on one thread, so the test's tracing subscriber sees the server's log lines.

mod cluster_support;
mod server_support;

use cluster_support::*;
use mtls_guard::model::ObjectKind;
use mtls_guard::server::Unsynced;
use mtls_guard::source::ClusterConfig;
use serde_json::Value;
use server_support::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The log lines (text format, info and above) of everything on this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines holding every one of `parts`.
    fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
            .collect()
    }

    /// Waits (bounded) for a line holding every one of `parts`.
    async fn wait_for(&self, parts: &[&str]) -> String {
        for _ in 0..300 {
            if let Some(line) = self.lines_with(parts).pop() {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no log line with {parts:?}:\n{}", self.text());
    }
}

/// What a drill holds: the log (captured while the guard lives), the stand-in API
/// server and the server.
type Drill = (
    Logs,
    tracing::subscriber::DefaultGuard,
    ApiServer,
    TestServer,
);

/// Starts a drill on `api` (its routes set beforehand), capturing the log first.
async fn drill(
    api: ApiServer,
    tweak: impl FnOnce(&mut ClusterConfig),
    unsynced: Unsynced,
) -> Drill {
    let (logs, guard) = Logs::capture();
    let server = start_with(&api, tweak, unsynced).await;
    (logs, guard, api, server)
}

/// [`drill`], once the server is ready.
async fn ready_drill(
    api: ApiServer,
    tweak: impl FnOnce(&mut ClusterConfig),
    unsynced: Unsynced,
) -> Drill {
    let drill = drill(api, tweak, unsynced).await;
    readyz_is(&drill.3, 200).await;
    drill
}

/// Polls `/readyz` until it answers `status` (bounded); returns its body.
async fn readyz_is(server: &TestServer, status: u16) -> String {
    let mut last = (0, String::new());
    for _ in 0..300 {
        last = readyz(server).await;
        if last.0 == status {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never answered {status}; last: {last:?}");
}

fn metric(server: &TestServer, sample: &str) -> Option<f64> {
    metric_value(&server.handle.metrics_text(), sample)
}

fn watch_up(server: &TestServer, kind: &str) -> Option<f64> {
    metric(server, &format!("mtls_guard_watch_up{{kind=\"{kind}\"}}"))
}

fn events(server: &TestServer, kind: &str, kind_type: &str) -> Option<f64> {
    metric(
        server,
        &format!("mtls_guard_watch_events_total{{kind=\"{kind}\",type=\"{kind_type}\"}}"),
    )
}

fn last_event(server: &TestServer, kind: &str) -> Option<f64> {
    metric(
        server,
        &format!("mtls_guard_watch_last_event_timestamp_seconds{{kind=\"{kind}\"}}"),
    )
}

/// Polls (bounded) until `check` holds; else fails with the log.
async fn eventually(logs: &Logs, what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}\n{}", logs.text());
}

/// Review 25 (reviews rule set to `tls.mode: DISABLE`) judged against the
/// captured cluster, whose Policy bookinfo/default requires mutual TLS.
async fn assert_judged(server: &TestServer) {
    let answer = validate(server, "25").await;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = message_of(&answer).unwrap();
    assert!(
        message.contains("requires mutual TLS (STRICT)"),
        "{message}"
    );
}

/// Ready, the watch of `kind` up, and reviews judged.
async fn assert_serving(server: &TestServer, kind: &str) {
    assert_eq!(readyz(server).await.0, 200);
    assert_eq!(watch_up(server, kind), Some(1.0));
    assert_judged(server).await;
}

/// Review 25 answered per `--unsynced` (not judged), with `reason` in the answer.
async fn assert_not_judged(server: &TestServer, unsynced: Unsynced, reason: &str) {
    let answer = validate(server, "25").await;
    match unsynced {
        Unsynced::Deny => {
            assert_eq!(answer["response"]["allowed"], false, "{answer}");
            assert_eq!(answer["response"]["status"]["code"], 503, "{answer}");
            let message = message_of(&answer).unwrap();
            assert!(message.contains(reason), "{message}");
            assert!(!message.contains("requires mutual TLS"), "{message}");
        }
        Unsynced::Allow => {
            assert_eq!(answer["response"]["allowed"], true, "{answer}");
            let warning = answer["response"]["warnings"][0].as_str().unwrap();
            assert!(
                warning.contains("not judged") && warning.contains(reason),
                "{warning}"
            );
        }
    }
}

/// The captured 410 Status (fixture 23's ERROR event), as the API server answers a
/// list whose continue token or resource version has expired.
fn expired() -> Reply {
    let line: Value = serde_json::from_str(&watch_lines("23")[0]).unwrap();
    assert_eq!(line["object"]["code"], 410);
    Reply::Status(410, line["object"].clone())
}

/// The captured DestinationRule list (fixture 10) with only the items named.
fn rules_list(names: &[&str], continue_token: &str) -> Value {
    let mut list = fixture_json("10");
    list["items"]
        .as_array_mut()
        .unwrap()
        .retain(|i| names.contains(&i["metadata"]["name"].as_str().unwrap()));
    list["metadata"]["continue"] = Value::from(continue_token);
    list
}

/// The captured aggregated discovery (04) without the group `group`.
fn discovery_without(group: &str) -> Value {
    let mut doc = fixture_json("04");
    let items = doc["items"].as_array_mut().unwrap();
    let before = items.len();
    items.retain(|g| g["metadata"]["name"] != group);
    assert_eq!(items.len(), before - 1);
    doc
}

fn watches_of(api: &ApiServer, path: &str) -> Vec<String> {
    api.requests_to(path)
        .into_iter()
        .filter(|r| r.contains("watch=true"))
        .collect()
}

fn lists_of(api: &ApiServer, path: &str) -> Vec<String> {
    api.requests_to(path)
        .into_iter()
        .filter(|r| !r.contains("watch=true"))
        .collect()
}

#[tokio::test]
async fn drill_api_server_unreachable_at_start() {
    let api = ApiServer::captured();
    api.set_unreachable(true);
    let (logs, _guard, api, server) = drill(
        api,
        |c| c.discovery_interval = Duration::from_millis(100),
        Unsynced::Deny,
    )
    .await;

    // Not ready, saying why; every watch series at 0; reviews not judged.
    let line = logs
        .wait_for(&["WARN", "API discovery failed", "connection refused"])
        .await;
    let body = readyz_is(&server, 503).await;
    assert!(
        body.contains("API discovery has not succeeded yet") && body.contains("connection refused"),
        "{body}"
    );
    assert_eq!(watch_up(&server, "DestinationRule"), Some(0.0));
    assert_eq!(events(&server, "Policy", "relist"), Some(0.0));
    assert_eq!(last_event(&server, "Policy"), Some(0.0));
    assert_not_judged(&server, Unsynced::Deny, "still syncing").await;
    // Retried every 100 ms, logged once.
    eventually(&logs, "discovery retried", || {
        logs.text().matches("connection refused").count() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        logs.lines_with(&["API discovery failed"]).len(),
        1,
        "{line}\n{}",
        logs.text()
    );

    // Reachable: listed, ready, judged.
    api.set_unreachable(false);
    readyz_is(&server, 200).await;
    logs.wait_for(&["INFO", "every watched kind is listed"])
        .await;
    assert_eq!(watch_up(&server, "DestinationRule"), Some(1.0));
    assert_eq!(events(&server, "Policy", "relist"), Some(1.0));
    assert!(last_event(&server, "Policy").unwrap() > 1.7e9);
    assert_judged(&server).await;
    server.handle.stop().await;
}

#[tokio::test]
async fn drill_api_server_unreachable_after_sync_stops_judging_after_the_grace_period() {
    for unsynced in [Unsynced::Deny, Unsynced::Allow] {
        let api = ApiServer::captured();
        let watch = api.droppable_watch(DESTINATION_RULES);
        let (logs, _guard, api, server) =
            ready_drill(api, |c| c.watch_grace = Duration::from_secs(2), unsynced).await;
        assert_judged(&server).await;

        // The API server goes away: the open watch breaks, its retries fail.
        api.set_unreachable(true);
        drop(watch);
        logs.wait_for(&[
            "ERROR",
            "watch failed",
            "DestinationRule",
            "connection refused",
        ])
        .await;
        assert_eq!(watch_up(&server, "DestinationRule"), Some(0.0));
        // The other watches are quiet and open: they stay up.
        assert_eq!(watch_up(&server, "Service"), Some(1.0));
        // Past the grace period: not ready, and reviews no longer judged.
        let body = readyz_is(&server, 503).await;
        assert!(
            body.contains("watch lost for") && body.contains("DestinationRule"),
            "{body}"
        );
        assert_not_judged(&server, unsynced, "lost its watch").await;

        // Back: the watch runs again, ready, judged.
        api.set_unreachable(false);
        readyz_is(&server, 200).await;
        logs.wait_for(&["INFO", "watch works again", "DestinationRule"])
            .await;
        assert_eq!(watch_up(&server, "DestinationRule"), Some(1.0));
        assert_judged(&server).await;
        server.handle.stop().await;
    }
}

#[tokio::test]
async fn drill_watch_dropped_mid_stream_resumes_without_a_relist() {
    let api = ApiServer::captured();
    let watch = api.droppable_watch(DESTINATION_RULES);
    // A short grace period: a watch that restarted must not count as lost, even on
    // a quiet kind where no event follows.
    let (logs, _guard, api, server) = ready_drill(
        api,
        |c| c.watch_grace = Duration::from_secs(1),
        Unsynced::Deny,
    )
    .await;
    let listed_at = last_event(&server, "DestinationRule").unwrap();

    // One event (ADDED details, RV 735), then the connection breaks mid-stream.
    watch.send(watch_lines("19").remove(0)).unwrap();
    eventually(&logs, "the event applied", || {
        events(&server, "DestinationRule", "apply") == Some(1.0)
    })
    .await;
    assert_eq!(count(&server, ObjectKind::DestinationRule), 3);
    assert!(last_event(&server, "DestinationRule").unwrap() >= listed_at);
    drop(watch);
    let line = logs
        .wait_for(&["ERROR", "watch failed", "DestinationRule"])
        .await;
    assert!(line.contains("reset"), "{line}");

    // Watched again from the last event's resource version, with no new list.
    eventually(&logs, "watched again from RV 735", || {
        watches_of(&api, DESTINATION_RULES)
            .iter()
            .any(|r| r.contains("resourceVersion=735"))
    })
    .await;
    logs.wait_for(&["INFO", "watch works again", "DestinationRule"])
        .await;
    assert_eq!(lists_of(&api, DESTINATION_RULES).len(), 1);
    assert_eq!(watch_up(&server, "DestinationRule"), Some(1.0));
    // Well past the grace period, with no event since: still ready and judged.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(readyz(&server).await.0, 200);
    assert_eq!(watch_up(&server, "DestinationRule"), Some(1.0));
    assert_eq!(events(&server, "DestinationRule", "relist"), Some(1.0));
    assert_eq!(count(&server, ObjectKind::DestinationRule), 3);
    assert_judged(&server).await;
    server.handle.stop().await;
}

#[tokio::test]
async fn drill_410_on_relist_keeps_the_last_full_list_until_a_list_completes() {
    let api = ApiServer::captured();
    // The watch answers 410 (the captured ERROR event): kube-runtime re-lists. The
    // re-list's first page (reviews only) says there is more; the second page is
    // held, then answers 410 (an expired continue token); the list after that
    // (from scratch) finds reviews only: ratings was deleted meanwhile.
    api.push(
        DESTINATION_RULES,
        Mode::Watch,
        Reply::Lines(watch_lines("23")),
    );
    api.push(
        DESTINATION_RULES,
        Mode::Get,
        Reply::Json(rules_list(&["reviews"], "page-2")),
    );
    let (open, gate) = oneshot::channel();
    api.push(
        DESTINATION_RULES,
        Mode::Get,
        Reply::Gated(gate, Box::new(expired())),
    );
    api.push(
        DESTINATION_RULES,
        Mode::Get,
        Reply::Json(rules_list(&["reviews"], "")),
    );
    let (logs, _guard, api, server) = drill(api, |_| {}, Unsynced::Deny).await;

    // Half-way through the re-list: the snapshot is still the first full list.
    eventually(&logs, "the second page asked for", || {
        lists_of(&api, DESTINATION_RULES)
            .iter()
            .any(|r| r.contains("continue=page-2"))
    })
    .await;
    logs.wait_for(&["INFO", "DestinationRule", "(410)"]).await;
    assert_eq!(count(&server, ObjectKind::DestinationRule), 2);
    assert_eq!(readyz(&server).await.0, 200);
    assert_eq!(watch_up(&server, "DestinationRule"), Some(1.0));
    assert_eq!(events(&server, "DestinationRule", "relist"), Some(1.0));
    assert_judged(&server).await;

    // The 410 on the second page: listed again from scratch, and only then applied.
    open.send(()).unwrap();
    eventually(&logs, "re-listed", || {
        events(&server, "DestinationRule", "relist") == Some(2.0)
    })
    .await;
    assert_eq!(count(&server, ObjectKind::DestinationRule), 1);
    assert_eq!(lists_of(&api, DESTINATION_RULES).len(), 4);
    assert_eq!(
        logs.lines_with(&["DestinationRule", "(410)"]).len(),
        2,
        "{}",
        logs.text()
    );
    // Routine: never an error, never down.
    assert!(logs.lines_with(&["ERROR"]).is_empty(), "{}", logs.text());
    assert_serving(&server, "DestinationRule").await;
    server.handle.stop().await;
}

#[tokio::test]
async fn drill_crd_deleted_and_created_again() {
    let api = ApiServer::captured();
    let watch = api.live_watch(PEER_AUTHENTICATIONS);
    let (logs, _guard, api, server) = ready_drill(
        api,
        |c| c.discovery_interval = Duration::from_millis(200),
        Unsynced::Deny,
    )
    .await;
    assert_eq!(count(&server, ObjectKind::PeerAuthentication), 1);
    let generation_before = logs.lines_with(&["watching", "PeerAuthentication"]).len();

    // The CRD is deleted: its watch ends, its list answers 404, discovery drops
    // the group. The kind is emptied and counts as up: nothing to watch.
    api.set(PEER_AUTHENTICATIONS, Mode::Get, Reply::Captured("25"));
    api.set(PEER_AUTHENTICATIONS, Mode::Watch, Reply::Captured("25"));
    api.set(
        "/apis",
        Mode::Aggregated,
        Reply::Json(discovery_without("security.istio.io")),
    );
    drop(watch);
    eventually(&logs, "PeerAuthentication emptied", || {
        count(&server, ObjectKind::PeerAuthentication) == 0
    })
    .await;
    logs.wait_for(&["WARN", "PeerAuthentication", "not served (404)"])
        .await;
    // The next discovery finds the group gone and stops the watch.
    logs.wait_for(&["WARN", "API not served", "PeerAuthentication"])
        .await;
    assert_eq!(readyz(&server).await.0, 200);
    assert_eq!(watch_up(&server, "PeerAuthentication"), Some(1.0));
    assert!(logs.lines_with(&["ERROR"]).is_empty(), "{}", logs.text());
    // Policy bookinfo/default still requires mutual TLS.
    assert_judged(&server).await;

    // Created again, with its object: discovery finds it, it is listed and watched.
    api.set(PEER_AUTHENTICATIONS, Mode::Get, Reply::Captured("11"));
    let watch = api.live_watch(PEER_AUTHENTICATIONS);
    api.set("/apis", Mode::Aggregated, Reply::Captured("04"));
    eventually(&logs, "PeerAuthentication listed again", || {
        count(&server, ObjectKind::PeerAuthentication) == 1
    })
    .await;
    assert!(
        logs.lines_with(&["watching", "PeerAuthentication"]).len() > generation_before,
        "{}",
        logs.text()
    );
    assert_eq!(readyz(&server).await.0, 200);
    assert_eq!(watch_up(&server, "PeerAuthentication"), Some(1.0));
    // Its events apply again.
    let mut peer_auth = list_item(
        "11",
        "default",
        "security.istio.io/v1",
        "PeerAuthentication",
    );
    peer_auth["metadata"]["resourceVersion"] = Value::from("900");
    let deletes = events(&server, "PeerAuthentication", "delete").unwrap();
    watch.send(event_line("DELETED", &peer_auth)).unwrap();
    eventually(&logs, "the delete applied", || {
        events(&server, "PeerAuthentication", "delete") == Some(deletes + 1.0)
    })
    .await;
    assert_eq!(count(&server, ObjectKind::PeerAuthentication), 0);
    server.handle.stop().await;
}

#[tokio::test]
async fn drill_crd_deleted_and_created_again_between_two_discoveries() {
    let api = ApiServer::captured();
    let watch = api.live_watch(PEER_AUTHENTICATIONS);
    // Discovery runs at start only: the watch alone sees the CRD go and come back.
    let (logs, _guard, api, server) = ready_drill(
        api,
        |c| c.discovery_interval = Duration::from_secs(3600),
        Unsynced::Deny,
    )
    .await;
    api.set(PEER_AUTHENTICATIONS, Mode::Get, Reply::Captured("25"));
    api.set(PEER_AUTHENTICATIONS, Mode::Watch, Reply::Captured("25"));
    drop(watch);
    eventually(&logs, "PeerAuthentication emptied", || {
        count(&server, ObjectKind::PeerAuthentication) == 0
    })
    .await;
    logs.wait_for(&["WARN", "PeerAuthentication", "not served (404)"])
        .await;
    assert_eq!(readyz(&server).await.0, 200);
    assert_eq!(watch_up(&server, "PeerAuthentication"), Some(1.0));

    // Created again: the watch's retry lists it (kube-runtime's backoff).
    api.set(PEER_AUTHENTICATIONS, Mode::Get, Reply::Captured("11"));
    let _watch = api.live_watch(PEER_AUTHENTICATIONS);
    eventually(&logs, "PeerAuthentication listed again", || {
        count(&server, ObjectKind::PeerAuthentication) == 1
    })
    .await;
    assert_eq!(readyz(&server).await.0, 200);
    assert_eq!(watch_up(&server, "PeerAuthentication"), Some(1.0));
    assert!(logs.lines_with(&["ERROR"]).is_empty(), "{}", logs.text());
    server.handle.stop().await;
}

#[tokio::test]
async fn drill_rbac_forbidden_on_one_kind_after_sync() {
    for unsynced in [Unsynced::Deny, Unsynced::Allow] {
        let api = ApiServer::captured();
        let watch = api.live_watch(DESTINATION_RULES);
        let (logs, _guard, api, server) =
            ready_drill(api, |c| c.watch_grace = Duration::from_secs(2), unsynced).await;
        let listed_at = last_event(&server, "DestinationRule").unwrap();

        // The ClusterRole loses destinationrules: the watch ends (as at its
        // timeout), and every list and watch after that is refused (the captured 403).
        api.set(DESTINATION_RULES, Mode::Get, Reply::Captured("27"));
        api.set(DESTINATION_RULES, Mode::Watch, Reply::Captured("27"));
        drop(watch);
        let line = logs
            .wait_for(&[
                "ERROR",
                "watch failed",
                "DestinationRule",
                "forbidden (403)",
            ])
            .await;
        assert!(
            line.contains("\\\"destinationrules\\\"") || line.contains("\"destinationrules\""),
            "{line}"
        );
        assert!(line.contains("networking.istio.io"), "{line}");
        assert_eq!(watch_up(&server, "DestinationRule"), Some(0.0));
        assert_eq!(watch_up(&server, "Service"), Some(1.0));

        // Past the grace period: /readyz names the rule to add; reviews are not
        // judged against what may be stale.
        let body = readyz_is(&server, 503).await;
        assert!(
            body.contains("watch lost for")
                && body.contains("DestinationRule")
                && body.contains("[list, watch]")
                && body.contains("\"destinationrules\"")
                && body.contains("\"networking.istio.io\""),
            "{body}"
        );
        assert_not_judged(&server, unsynced, "lost its watch").await;
        // Nothing was applied meanwhile.
        assert_eq!(last_event(&server, "DestinationRule"), Some(listed_at));
        assert_eq!(events(&server, "DestinationRule", "relist"), Some(1.0));
        // Logged once, however often retried.
        assert_eq!(
            logs.lines_with(&["watch failed", "DestinationRule"]).len(),
            1,
            "{}",
            logs.text()
        );

        // Granted again: listed, ready, judged.
        api.set(DESTINATION_RULES, Mode::Get, Reply::Captured("10"));
        let _watch = api.live_watch(DESTINATION_RULES);
        readyz_is(&server, 200).await;
        logs.wait_for(&["INFO", "watch works again", "DestinationRule"])
            .await;
        assert_eq!(watch_up(&server, "DestinationRule"), Some(1.0));
        assert_judged(&server).await;
        server.handle.stop().await;
    }
}
