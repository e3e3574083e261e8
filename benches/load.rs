//! Load bench of the webhook over TLS: the real server (Bookinfo snapshot) against a
//! trivial axum handler on the same TLS/HTTP stack that answers a constant "allowed"
//! AdmissionReview (the stack's ceiling).
//!
//! Each worker task has its own HTTP/1.1 keep-alive connection and sends requests
//! back to back for a fixed time; the bench reports throughput and latency
//! percentiles per endpoint and concurrency, side by side with the ceiling.
//!
//! `cargo bench --bench load`; environment:
//! - `MTLS_GUARD_BENCH_SECS`: seconds per run (default 2),
//! - `MTLS_GUARD_BENCH_CONCURRENCY`: comma-separated worker counts (default `1,8,64`).
//!
//! Client and server share the machine, so absolute numbers are a floor.

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/server_support/mod.rs"]
mod support;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use mtls_guard::admission::{review, Endpoint};
use mtls_guard::server::{self, tls, ConnLimits};
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{client_trusting, review_body, Protocol, TestServer};

const CONSTANT_ALLOW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

struct Run {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    /// Sorted latencies, microseconds.
    latencies: Vec<u32>,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies.len()) - 1;
        f64::from(self.latencies[index]) / 1000.0
    }
}

async fn drive(
    url: String,
    ca_pem: String,
    body: Vec<u8>,
    concurrency: usize,
    duration: Duration,
) -> Run {
    let body = Bytes::from(body);
    // Connect every worker first, so that the timed part has only warm connections.
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let client = client_trusting(&[&ca_pem], Protocol::Http1);
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("warm-up request");
        assert_eq!(resp.status(), 200, "warm-up request");
        resp.bytes().await.unwrap();
        clients.push(client);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for client in clients {
        let (url, body) = (url.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let result = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match result {
                    Ok(resp) => resp.status() == 200 && resp.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Run {
        requests: latencies.len(),
        errors,
        elapsed,
        latencies,
    }
}

/// The fixtures are pretty-printed copies of bodies the API server sent as
/// compact JSON (fixtures README): send them as they came.
fn compact(pretty: &[u8]) -> Vec<u8> {
    let value: serde_json::Value = serde_json::from_slice(pretty).unwrap();
    serde_json::to_vec(&value).unwrap()
}

/// The ceiling: the same listener code (rustls, hyper-util auto builder, axum) with
/// a handler that reads the body and answers a constant.
async fn start_ceiling(
    cert_pem: &str,
    key_pem: &str,
) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let pair = tls::parse_pair(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let resolver = Arc::new(tls::CertResolver::new(pair));
    let config = Arc::new(tls::server_config(resolver).unwrap());
    async fn constant(_body: Bytes) -> ([(&'static str, &'static str); 1], &'static str) {
        ([("content-type", "application/json")], CONSTANT_ALLOW)
    }
    let app = Router::new()
        .route("/mutate", post(constant))
        .route("/validate", post(constant));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server::serve_tls(
        listener,
        config,
        app,
        ConnLimits::default(),
        rx,
    ));
    (addr, tx)
}

/// Mean time of one call to the pure review function, for reading the table above.
fn pure_review_micros(body: &[u8], endpoint: Endpoint) -> f64 {
    let snapshot = Snapshot::from_objects(support::bookinfo_objects());
    let settings = Settings::default();
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < Duration::from_millis(500) {
        for _ in 0..100 {
            std::hint::black_box(review(&snapshot, &settings, endpoint, body));
        }
        calls += 100;
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let seconds: f64 = env_or("MTLS_GUARD_BENCH_SECS", 2.0);
    let duration = Duration::from_secs_f64(seconds.max(0.1));
    let concurrencies: Vec<usize> = std::env::var("MTLS_GUARD_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8,64".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|c| *c > 0)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let real = TestServer::bookinfo().await;
        let ca = real.ca.pem();
        let cert = std::fs::read_to_string(real.secret.path().join("tls.crt")).unwrap();
        let key = std::fs::read_to_string(real.secret.path().join("tls.key")).unwrap();
        let (ceiling_addr, ceiling_stop) = start_ceiling(&cert, &key).await;
        let real_port = real.handle.webhook_addr().port();

        println!(
            "mtls-guard load bench: {} s per run, HTTP/1.1 keep-alive over TLS, one connection per worker, {} CPUs (shared by client and server)",
            seconds,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "{:<9} {:>4} | {:>9} {:>8} {:>8} {:>8} | {:>9} {:>8} {:>8} {:>8} | {:>6} {:>6}",
            "endpoint", "conc", "req/s", "p50 ms", "p99 ms", "p99.9", "ceil r/s", "p50 ms", "p99 ms", "p99.9", "r/s %", "p50 x"
        );
        // validate: reviews, ISTIO_MUTUAL (allowed); mutate: productpage (patched to DISABLE).
        let cases = [
            ("validate", "10", Endpoint::Validate),
            ("mutate", "07", Endpoint::Mutate),
        ];
        let mut pure = Vec::new();
        for (endpoint, fixture, kind) in cases {
            let body = compact(&review_body(fixture));
            pure.push((endpoint, pure_review_micros(&body, kind)));
            for &c in &concurrencies {
                let ours = drive(
                    format!("https://127.0.0.1:{real_port}/{endpoint}"),
                    ca.clone(),
                    body.clone(),
                    c,
                    duration,
                )
                .await;
                let ceiling = drive(
                    format!("https://127.0.0.1:{}/{endpoint}", ceiling_addr.port()),
                    ca.clone(),
                    body.clone(),
                    c,
                    duration,
                )
                .await;
                println!(
                    "{:<9} {:>4} | {:>9.0} {:>8.3} {:>8.3} {:>8.3} | {:>9.0} {:>8.3} {:>8.3} {:>8.3} | {:>5.0}% {:>6.2}{}",
                    endpoint,
                    c,
                    ours.throughput(),
                    ours.percentile_ms(50.0),
                    ours.percentile_ms(99.0),
                    ours.percentile_ms(99.9),
                    ceiling.throughput(),
                    ceiling.percentile_ms(50.0),
                    ceiling.percentile_ms(99.0),
                    ceiling.percentile_ms(99.9),
                    100.0 * ours.throughput() / ceiling.throughput(),
                    ours.percentile_ms(50.0) / ceiling.percentile_ms(50.0),
                    if ours.errors + ceiling.errors > 0 {
                        format!("  ERRORS: {} ours, {} ceiling", ours.errors, ceiling.errors)
                    } else {
                        String::new()
                    }
                );
            }
        }
        let metrics = real.handle.metrics_text();
        for (endpoint, micros) in pure {
            let sample = |what: &str| {
                support::metric_value(
                    &metrics,
                    &format!("mtls_guard_review_duration_seconds_{what}{{endpoint=\"{endpoint}\"}}"),
                )
                .unwrap_or(f64::NAN)
            };
            println!(
                "{endpoint}: pure admission::review {micros:.1} µs per call (one thread, no I/O); \
                 in the server, body read + review {:.1} µs on average",
                1e6 * sample("sum") / sample("count")
            );
        }
        let _ = ceiling_stop.send(true);
        real.handle.stop().await;
    });
}
