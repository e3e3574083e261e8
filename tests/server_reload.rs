//! Serving certificate hot reload: a Secret update (kubelet-style symlink swap) is
//! picked up with no failed request, new connections get the new certificate, and a
//! bad pair is refused while the old one keeps serving.

mod server_support;

use mtls_guard::server::SnapshotSource;
use server_support::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn quick_reload_server() -> TestServer {
    TestServer::start_with(SnapshotSource::Objects(bookinfo_objects()), |c| {
        c.cert_poll_interval = Duration::from_millis(200);
    })
    .await
}

/// Whether a brand-new connection trusting only `ca_pem` gets an answer.
async fn fresh_connection_works(server: &TestServer, ca_pem: &str) -> bool {
    let client = client_trusting(&[ca_pem], Protocol::Http1);
    match client
        .post(server.url("/validate"))
        .header("content-type", "application/json")
        .body(review_body("10"))
        .send()
        .await
    {
        Ok(resp) => resp.status() == 200,
        Err(_) => false,
    }
}

async fn wait_until_fresh_connection_works(server: &TestServer, ca_pem: &str) -> bool {
    for _ in 0..300 {
        if fresh_connection_works(server, ca_pem).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn wait_for_metric(server: &TestServer, sample: &str, value: f64) -> bool {
    for _ in 0..300 {
        if metric_value(&server.handle.metrics_text(), sample) == Some(value) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_new_connections_get_the_new_certificate() {
    let server = Arc::new(quick_reload_server().await);
    let old_ca = server.ca.pem();
    let new_ca = TestCa::new("rotated CA");
    let before = server.handle.certificate();

    // Workers trust both CAs, as clients do during a CA rollover; half of their
    // requests reuse a keep-alive connection, half open a new one.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (server, stop, ok, failed) = (server.clone(), stop.clone(), ok.clone(), failed.clone());
        let cas = [old_ca.clone(), new_ca.pem()];
        workers.push(tokio::spawn(async move {
            let keep_alive = client_trusting(&[&cas[0], &cas[1]], Protocol::Http1);
            for i in 0..5_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let fresh;
                let client = if (i + worker) % 2 == 0 {
                    &keep_alive
                } else {
                    fresh = client_trusting(&[&cas[0], &cas[1]], Protocol::Http1);
                    &fresh
                };
                let result = client
                    .post(server.url("/validate"))
                    .header("content-type", "application/json")
                    .body(review_body("10"))
                    .send()
                    .await;
                match result {
                    Ok(resp) if resp.status() == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(resp) => failed
                        .lock()
                        .unwrap()
                        .push(format!("status {}", resp.status())),
                    Err(e) => failed.lock().unwrap().push(format!("{e:?}")),
                }
            }
        }));
    }

    // Some traffic before the rotation.
    for _ in 0..200 {
        if ok.load(Ordering::SeqCst) >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let before_rotation = ok.load(Ordering::SeqCst);
    assert!(before_rotation > 0);

    let new_pair = new_ca.serving_pair();
    server
        .secret
        .update(new_pair.cert_pem.as_bytes(), new_pair.key_pem.as_bytes());

    assert!(
        wait_until_fresh_connection_works(&server, &new_ca.pem()).await,
        "a new connection trusting only the new CA succeeds after the reload"
    );
    assert!(
        !fresh_connection_works(&server, &old_ca).await,
        "new connections no longer get the old certificate"
    );
    let after = server.handle.certificate();
    assert_ne!(before.serial, after.serial);
    assert!(
        wait_for_metric(
            &server,
            "mtls_guard_certificate_reloads_total{result=\"ok\"}",
            1.0
        )
        .await
    );
    assert_eq!(
        metric_value(
            &server.handle.metrics_text(),
            "mtls_guard_serving_certificate_expiry_timestamp_seconds"
        ),
        Some(after.not_after as f64)
    );

    // Some traffic after the rotation too, then stop the workers.
    let after_rotation = ok.load(Ordering::SeqCst);
    for _ in 0..200 {
        if ok.load(Ordering::SeqCst) >= after_rotation + 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    eprintln!(
        "requests: {before_rotation} before the rotation, {} in all, {} failed",
        ok.load(Ordering::SeqCst),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        ok.load(Ordering::SeqCst) > after_rotation,
        "requests went on after the rotation"
    );
    let server = Arc::into_inner(server).expect("no other owner left");
    server.handle.stop().await;
}

#[tokio::test]
async fn a_bad_pair_is_refused_and_the_old_certificate_keeps_serving() {
    let server = quick_reload_server().await;
    let ca = server.ca.pem();
    let before = server.handle.certificate();
    let a = server.ca.serving_pair();
    let b = server.ca.serving_pair();

    // A certificate with someone else's key.
    server
        .secret
        .update(a.cert_pem.as_bytes(), b.key_pem.as_bytes());
    assert!(
        wait_for_metric(
            &server,
            "mtls_guard_certificate_reloads_total{result=\"error\"}",
            1.0
        )
        .await
    );
    assert_eq!(server.handle.certificate().serial, before.serial);
    assert!(fresh_connection_works(&server, &ca).await);

    // Not PEM at all.
    server.secret.update(b"garbage", b"more garbage");
    assert!(
        wait_for_metric(
            &server,
            "mtls_guard_certificate_reloads_total{result=\"error\"}",
            2.0
        )
        .await
    );
    assert_eq!(server.handle.certificate().serial, before.serial);
    assert!(fresh_connection_works(&server, &ca).await);

    // A good pair again is taken.
    let new_ca = TestCa::new("next CA");
    let good = new_ca.serving_pair();
    server
        .secret
        .update(good.cert_pem.as_bytes(), good.key_pem.as_bytes());
    assert!(wait_until_fresh_connection_works(&server, &new_ca.pem()).await);
    assert_ne!(server.handle.certificate().serial, before.serial);
    server.handle.stop().await;
}

/// A writer that replaces the certificate and the key one after the other (not
/// atomically, no symlinks): the half-written state is refused, the final one taken.
#[tokio::test]
async fn files_rewritten_one_by_one_are_picked_up() {
    let ca = TestCa::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.serving_pair();
    let files = mtls_guard::server::TlsFiles {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server-key.pem"),
    };
    std::fs::write(&files.cert, &first.cert_pem).unwrap();
    std::fs::write(&files.key, &first.key_pem).unwrap();
    let mut config = mtls_guard::server::ServerConfig::local(
        files.clone(),
        SnapshotSource::Objects(bookinfo_objects()),
    );
    config.cert_poll_interval = Duration::from_millis(200);
    let handle = mtls_guard::server::start(config).await.unwrap();
    let before = handle.certificate();

    let next_ca = TestCa::new("next CA");
    let next = next_ca.serving_pair();
    std::fs::write(&files.cert, &next.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::write(&files.key, &next.key_pem).unwrap();

    let mut reloaded = false;
    for _ in 0..300 {
        if handle.certificate().serial != before.serial {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded);
    let client = client_trusting(&[&next_ca.pem()], Protocol::Http2);
    let url = format!(
        "https://127.0.0.1:{}/validate",
        handle.webhook_addr().port()
    );
    let (status, _) = post(&client, &url, review_body("10")).await;
    assert_eq!(status, 200);
    handle.stop().await;
}

/// A server whose periodic check never comes during a test: every reload it
/// makes was triggered by a change notification.
async fn watch_only_server() -> TestServer {
    TestServer::start_with(SnapshotSource::Objects(bookinfo_objects()), |c| {
        c.cert_poll_interval = Duration::from_secs(3600);
    })
    .await
}

fn cert_checks(server: &TestServer, trigger: &str) -> f64 {
    let sample = format!("mtls_guard_certificate_checks_total{{trigger=\"{trigger}\"}}");
    metric_value(&server.handle.metrics_text(), &sample).expect("the checks series exists")
}

async fn wait_for_serial_change(server: &TestServer, before: &str) -> bool {
    for _ in 0..200 {
        if server.handle.certificate().serial != before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Issue 9, defect 1: a file written often beside the certificate (a log) made the
/// server re-read the certificate after every burst of writes. Only the certificate
/// and key count; a Secret update in the same folder is still seen at once.
#[tokio::test]
async fn writes_to_other_files_in_the_certificate_folder_cause_no_check() {
    let server = watch_only_server().await;
    let before = server.handle.certificate();
    assert_eq!(cert_checks(&server, "change"), 0.0);

    // A log beside the certificate, appended to for about a second, and a file
    // made, rewritten, renamed and removed.
    let log_path = server.secret.path().join("server.log");
    let mut log = std::fs::File::create(&log_path).unwrap();
    for i in 0..2_000 {
        use std::io::Write;
        writeln!(log, "line {i}").unwrap();
        log.flush().unwrap();
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let other = server.secret.path().join("other.txt");
    std::fs::write(&other, "a").unwrap();
    std::fs::write(&other, "b").unwrap();
    std::fs::rename(&other, server.secret.path().join("other2.txt")).unwrap();
    std::fs::remove_file(server.secret.path().join("other2.txt")).unwrap();
    // Longer than the settle time after an event, with room for a busy machine.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        cert_checks(&server, "change"),
        0.0,
        "writes to other files read the certificate files"
    );
    assert_eq!(server.handle.certificate().serial, before.serial);

    // The Secret's own update is still noticed, without the periodic check.
    let new_ca = TestCa::new("rotated CA");
    let pair = new_ca.serving_pair();
    server
        .secret
        .update(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes());
    assert!(
        wait_for_serial_change(&server, &before.serial).await,
        "the ..data swap is seen"
    );
    assert!(cert_checks(&server, "change") >= 1.0);
    assert_eq!(cert_checks(&server, "poll"), 0.0);
    assert!(wait_until_fresh_connection_works(&server, &new_ca.pem()).await);

    // And the next update too: the watch follows the new target.
    let third_ca = TestCa::new("third CA");
    let third = third_ca.serving_pair();
    let second_serial = server.handle.certificate().serial;
    server
        .secret
        .update(third.cert_pem.as_bytes(), third.key_pem.as_bytes());
    assert!(
        wait_for_serial_change(&server, &second_serial).await,
        "a second ..data swap is seen"
    );
    assert!(wait_until_fresh_connection_works(&server, &third_ca.pem()).await);
    assert_eq!(cert_checks(&server, "poll"), 0.0);
    server.handle.stop().await;
}

/// Plain files (no Secret volume): rewritten in place, then replaced by renaming
/// new files over them; both are seen without the periodic check, and the watch
/// follows the renamed-in files.
#[tokio::test]
async fn plain_files_rewritten_or_renamed_over_are_seen_without_polling() {
    let ca = TestCa::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.serving_pair();
    let files = mtls_guard::server::TlsFiles {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server-key.pem"),
    };
    std::fs::write(&files.cert, &first.cert_pem).unwrap();
    std::fs::write(&files.key, &first.key_pem).unwrap();
    let mut config = mtls_guard::server::ServerConfig::local(
        files.clone(),
        SnapshotSource::Objects(bookinfo_objects()),
    );
    config.cert_poll_interval = Duration::from_secs(3600);
    let handle = mtls_guard::server::start(config).await.unwrap();
    let serial = || handle.certificate().serial;
    let wait_change = |before: String| {
        let handle = &handle;
        async move {
            for _ in 0..200 {
                if handle.certificate().serial != before {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };

    // In place.
    let before = serial();
    let second = TestCa::new("second CA").serving_pair();
    std::fs::write(&files.key, &second.key_pem).unwrap();
    std::fs::write(&files.cert, &second.cert_pem).unwrap();
    assert!(wait_change(before).await, "an in-place rewrite is seen");

    // Renamed over, twice (the second proves the watch moved to the new file).
    for round in 0..2 {
        let before = serial();
        let next = TestCa::new(&format!("renamed CA {round}")).serving_pair();
        let (cert_tmp, key_tmp) = (dir.path().join("cert.tmp"), dir.path().join("key.tmp"));
        std::fs::write(&cert_tmp, &next.cert_pem).unwrap();
        std::fs::write(&key_tmp, &next.key_pem).unwrap();
        std::fs::rename(&key_tmp, &files.key).unwrap();
        std::fs::rename(&cert_tmp, &files.cert).unwrap();
        assert!(wait_change(before).await, "rename over, round {round}");
    }
    let text = handle.metrics_text();
    assert_eq!(
        metric_value(
            &text,
            "mtls_guard_certificate_checks_total{trigger=\"poll\"}"
        ),
        Some(0.0)
    );
    handle.stop().await;
}
