//! Load bench of the webhook over TLS: the real server (Bookinfo snapshot) against a
//! trivial axum handler on the same TLS/HTTP stack that answers a constant "allowed"
//! AdmissionReview (the stack's ceiling).
//!
//! Each worker task has its own HTTP/1.1 keep-alive connection and sends requests
//! back to back for a fixed time; the bench reports throughput and latency
//! percentiles per endpoint and concurrency, side by side with the ceiling.
//!
//! `cargo bench --bench load [-- MODE]`; modes:
//! - (none): the table above;
//! - `busy-folder`: `/validate` while another thread appends lines to a file, either
//!   beside the certificate and key (as a log in the certificate's folder) or in
//!   another folder, alternately; the two should be equal (issue 9, defect 1);
//! - `log-reviews`: `/validate` with every review logged at info (`--log-reviews
//!   all`) against the default (`changes`: an allowed review is not), both writing
//!   the log to a file, alternately;
//! - `events`: `/validate` while watch events are applied to the index and a snapshot
//!   published after each (as the cluster source does), against the same load without
//!   them, alternately, on one server judging against Bookinfo plus the decision
//!   bench's world (benches/world, 246,009 objects); driven by the in-process client,
//!   then by wrk from another process when wrk is installed. Each quiet run starts
//!   after the server's audit of the reset snapshot is done (the state without
//!   changes); runs are 12 s by default, so that a busy run includes the audit a
//!   steady stream of events causes every 10 s (2 s runs at 1 connection swing by
//!   ±15% from run to run on 2 cores, whichever side has the events).
//!
//! Environment:
//! - `MTLS_GUARD_BENCH_SECS`: seconds per run (default 2; 12 in mode `events`),
//! - `MTLS_GUARD_BENCH_CONCURRENCY`: comma-separated worker counts (default `1,8,64`;
//!   `1,64` for the two comparisons),
//! - `MTLS_GUARD_BENCH_WRITES`: lines a second the busy-folder writer appends (default 50000),
//! - `MTLS_GUARD_BENCH_EVENTS`: events a second in mode `events` (default 200).
//!
//! Client and server share the machine, so absolute numbers are a floor.

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/server_support/mod.rs"]
mod support;
mod world;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use mtls_guard::admission::{review, Endpoint};
use mtls_guard::model::{MeshObject, ObjectKind};
use mtls_guard::server::{self, tls, ConnLimits, ReviewLog, SnapshotSource};
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
    let config = Arc::new(tls::server_config(resolver, None).unwrap());
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

fn concurrencies(default: &str) -> Vec<usize> {
    std::env::var("MTLS_GUARD_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|c| *c > 0)
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; the first other argument is the mode.
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    let default_seconds = if mode == "events" { 12.0 } else { 2.0 };
    let seconds: f64 = env_or("MTLS_GUARD_BENCH_SECS", default_seconds);
    let duration = Duration::from_secs_f64(seconds.max(0.1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match mode.as_str() {
        "" => runtime.block_on(table(duration, concurrencies("1,8,64"))),
        "busy-folder" => runtime.block_on(busy_folder(duration, concurrencies("1,64"))),
        "log-reviews" => runtime.block_on(log_reviews(duration, concurrencies("1,64"))),
        "events" => runtime.block_on(events(duration, concurrencies("1,64"))),
        other => panic!("unknown mode {other:?}: expected busy-folder, log-reviews or events"),
    }
}

/// Appends `per_second` short lines a second to `path` (one write each, in bursts
/// every millisecond) until `stop`.
fn busy_writer(
    path: std::path::PathBuf,
    per_second: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = std::fs::File::create(&path).unwrap();
        let per_ms = per_second.div_ceil(1000).max(1);
        let line = b"2026-01-01T00:00:00.000000Z  INFO mtls_guard::server::webhook: review endpoint=validate verdict=allowed\n";
        let start = Instant::now();
        let mut written = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for _ in 0..per_ms {
                file.write_all(line).unwrap();
            }
            written += per_ms;
            // Keep to the rate: sleep until this burst's millisecond is over.
            let due = Duration::from_millis((written / per_ms) as u64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        written
    })
}

/// Issue 9, defect 1: the same server and certificate, with a busy file elsewhere
/// and then beside the certificate, alternately.
async fn busy_folder(duration: Duration, concurrencies: Vec<usize>) {
    let per_second: usize = env_or("MTLS_GUARD_BENCH_WRITES", 50_000);
    let real = TestServer::bookinfo().await;
    let ca = real.ca.pem();
    let url = format!(
        "https://127.0.0.1:{}/validate",
        real.handle.webhook_addr().port()
    );
    let body = compact(&review_body("10"));
    let elsewhere = tempfile::tempdir().unwrap();
    let checks = |handle: &server::Handle| {
        support::metric_value(
            &handle.metrics_text(),
            "mtls_guard_certificate_checks_total{trigger=\"change\"}",
        )
        .unwrap_or(f64::NAN)
    };
    println!(
        "busy-folder: /validate, {} s per run, a writer appending {per_second} lines/s to a file in another folder or in the certificate's folder, alternately",
        duration.as_secs_f64()
    );
    println!(
        "{:>4} {:>6} | {:>9} {:>8} {:>8} | {:>13} {:>13}",
        "conc", "round", "req/s", "p50 ms", "p99 ms", "busy file in", "cert checks"
    );
    for &c in &concurrencies {
        let mut sums = [0.0f64; 2];
        for round in 1..=2 {
            for (i, beside) in [false, true].into_iter().enumerate() {
                let path = if beside {
                    real.secret.path().join("server.log")
                } else {
                    elsewhere.path().join("server.log")
                };
                let checks_before = checks(&real.handle);
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let writer = busy_writer(path, per_second, stop.clone());
                let run = drive(url.clone(), ca.clone(), body.clone(), c, duration).await;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let written = writer.join().unwrap();
                sums[i] += run.throughput();
                println!(
                    "{:>4} {:>6} | {:>9.0} {:>8.3} {:>8.3} | {:>13} {:>13}{}",
                    c,
                    round,
                    run.throughput(),
                    run.percentile_ms(50.0),
                    run.percentile_ms(99.0),
                    if beside {
                        "cert folder"
                    } else {
                        "other folder"
                    },
                    checks(&real.handle) - checks_before,
                    if run.errors > 0 {
                        format!("  ERRORS: {}", run.errors)
                    } else {
                        format!(
                            "  ({:.0} lines/s written)",
                            written as f64 / duration.as_secs_f64()
                        )
                    }
                );
            }
        }
        println!(
            "{c:>4} conc: busy file in the certificate's folder / elsewhere = {:.2}",
            sums[1] / sums[0]
        );
    }
    real.handle.stop().await;
}

/// The cost of a log line per review: the default (an allowed review is not
/// logged at info) against `--log-reviews all`, both logging to a file.
async fn log_reviews(duration: Duration, concurrencies: Vec<usize>) {
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("serve.log");
    let file = std::fs::File::create(&log_path).unwrap();
    // What `serve` installs (text, info), writing to a file instead of stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    let start = |log: ReviewLog| {
        TestServer::start_with(
            SnapshotSource::Objects(support::bookinfo_objects()),
            move |c| c.log_reviews = log,
        )
    };
    let all = start(ReviewLog::All).await;
    let changes = start(ReviewLog::Changes).await;
    let body = compact(&review_body("10"));
    println!(
        "log-reviews: /validate (allowed), {} s per run, text log to a file; default `changes` (no line) against `all` (a line per review), alternately",
        duration.as_secs_f64()
    );
    println!(
        "{:>4} {:>6} | {:>9} {:>8} | {:>9} {:>8} | {:>11}",
        "conc", "round", "all r/s", "p50 ms", "chg r/s", "p50 ms", "log MB"
    );
    for &c in &concurrencies {
        let mut sums = [0.0f64; 2];
        for round in 1..=2 {
            let mut row = Vec::new();
            for server in [&all, &changes] {
                let url = format!(
                    "https://127.0.0.1:{}/validate",
                    server.handle.webhook_addr().port()
                );
                row.push(drive(url, server.ca.pem(), body.clone(), c, duration).await);
            }
            sums[0] += row[0].throughput();
            sums[1] += row[1].throughput();
            println!(
                "{:>4} {:>6} | {:>9.0} {:>8.3} | {:>9.0} {:>8.3} | {:>11.1}{}",
                c,
                round,
                row[0].throughput(),
                row[0].percentile_ms(50.0),
                row[1].throughput(),
                row[1].percentile_ms(50.0),
                std::fs::metadata(&log_path).map_or(0.0, |m| m.len() as f64 / 1e6),
                if row[0].errors + row[1].errors > 0 {
                    format!("  ERRORS: {} all, {} changes", row[0].errors, row[1].errors)
                } else {
                    String::new()
                }
            );
        }
        println!(
            "{c:>4} conc: throughput with a line per review / default = {:.2}",
            sums[0] / sums[1]
        );
    }
    all.handle.stop().await;
    changes.handle.stop().await;
}

/// The table: the real server against the ceiling, per endpoint and concurrency.
async fn table(duration: Duration, concurrencies: Vec<usize>) {
    let seconds = duration.as_secs_f64();
    {
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
            "endpoint",
            "conc",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9",
            "ceil r/s",
            "p50 ms",
            "p99 ms",
            "p99.9",
            "r/s %",
            "p50 x"
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
                    &format!(
                        "mtls_guard_review_duration_seconds_{what}{{endpoint=\"{endpoint}\"}}"
                    ),
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
    }
}

/// Bookinfo and the decision bench's world (10,000 namespaces, 246,009 objects).
fn world() -> Snapshot {
    let mut objects = support::bookinfo_objects();
    objects.extend(world::mesh_objects());
    Snapshot::from_objects(objects)
}

/// Applies `per_second` synthetic watch events to a working copy of `base` and
/// publishes a clone after each, as the cluster source does, until `stop`: a
/// Service, a Policy naming it and a DestinationRule for it are applied in
/// namespace bookinfo (where the reviews are judged), then deleted again.
/// Returns the events applied.
async fn churn(
    store: server::SnapshotStore,
    base: Snapshot,
    per_second: f64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let template = |name: &str, n: usize| -> Vec<MeshObject> {
        let service = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "bookinfo", "name": format!("{name}-{n}"), "resourceVersion": n.to_string()},
            "spec": {"selector": {"app": format!("{name}-{n}")}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}
        });
        let policy = serde_json::json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
            "metadata": {"namespace": "bookinfo", "name": format!("{name}-{n}")},
            "spec": {"targets": [{"name": format!("{name}-{n}")}], "peers": [{"mtls": {}}]}
        });
        let rule = serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"namespace": "bookinfo", "name": format!("{name}-{n}")},
            "spec": {"host": format!("{name}-{n}"), "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
        });
        [service, policy, rule]
            .into_iter()
            .map(|v| MeshObject::from_value(v).unwrap().unwrap())
            .collect()
    };
    let mut working = base;
    let period = Duration::from_secs_f64(1.0 / per_second);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut applied = 0usize;
    let mut queue = std::collections::VecDeque::new();
    while !*stop.borrow() {
        ticker.tick().await;
        // Add a Service, its Policy and its rule, then delete them again.
        if applied % 6 < 3 {
            if queue.is_empty() {
                queue.extend(template("churn", applied));
            }
            working.apply(queue.pop_front().unwrap());
        } else {
            let n = applied - (applied % 6);
            let kind = [
                ObjectKind::Service,
                ObjectKind::Policy,
                ObjectKind::DestinationRule,
            ][applied % 3];
            working.delete(kind, "bookinfo", &format!("churn-{n}"));
        }
        applied += 1;
        store.publish(working.clone());
    }
    applied
}

/// What one timed run gave, whichever client drove it.
struct Sample {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    elapsed: Duration,
}

impl From<Run> for Sample {
    fn from(run: Run) -> Sample {
        Sample {
            throughput: run.throughput(),
            p50_ms: run.percentile_ms(50.0),
            p99_ms: run.percentile_ms(99.0),
            errors: run.errors,
            elapsed: run.elapsed,
        }
    }
}

/// Who sends the reviews in mode `events`.
#[derive(Clone)]
enum Client {
    /// Worker tasks in this process, on the server's runtime.
    InProcess { ca_pem: String },
    /// wrk (Debian), another process, as the API server is: the script posts the body.
    Wrk { script: std::path::PathBuf },
}

impl Client {
    fn name(&self) -> &'static str {
        match self {
            Client::InProcess { .. } => "in-process client",
            Client::Wrk { .. } => "wrk (another process)",
        }
    }

    async fn run(&self, url: &str, body: &[u8], concurrency: usize, duration: Duration) -> Sample {
        match self {
            Client::InProcess { ca_pem } => drive(
                url.to_string(),
                ca_pem.clone(),
                body.to_vec(),
                concurrency,
                duration,
            )
            .await
            .into(),
            Client::Wrk { script } => {
                let (script, url) = (script.clone(), url.to_string());
                tokio::task::spawn_blocking(move || wrk(&script, &url, concurrency, duration))
                    .await
                    .unwrap()
            }
        }
    }
}

/// A wrk script that posts the file `body` with each request.
fn wrk_script(dir: &std::path::Path, body: &[u8]) -> std::path::PathBuf {
    let body_path = dir.join("review.json");
    std::fs::write(&body_path, body).unwrap();
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "local f = assert(io.open({:?}, \"rb\"))\nwrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = f:read(\"*a\")\nf:close()\n",
            body_path.to_str().unwrap()
        ),
    )
    .unwrap();
    script
}

/// Whether wrk can be run.
fn have_wrk() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// One wrk run (one thread for each 32 connections, at most 2), read from its report.
fn wrk(script: &std::path::Path, url: &str, connections: usize, duration: Duration) -> Sample {
    let threads = connections.div_ceil(32).clamp(1, 2);
    let start = Instant::now();
    let output = std::process::Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["--latency", "--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let millis = |v: &str| -> f64 {
        let (number, factor) = if let Some(n) = v.strip_suffix("us") {
            (n, 1e-3)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1e3)
        } else {
            (v, f64::NAN)
        };
        number.parse::<f64>().map_or(f64::NAN, |n| n * factor)
    };
    // "Socket errors: connect 0, read 0, write 0, timeout 0" and "Non-2xx or 3xx responses: N".
    let socket_errors: usize = field("Socket errors:").map_or(0, |v| {
        v.split(',')
            .filter_map(|part| part.split_whitespace().nth(1)?.parse::<usize>().ok())
            .sum()
    });
    let non_2xx: usize = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Sample {
        throughput: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .expect("wrk reports Requests/sec"),
        p50_ms: field("50%").map_or(f64::NAN, millis),
        p99_ms: field("99%").map_or(f64::NAN, millis),
        errors: socket_errors + non_2xx,
        elapsed,
    }
}

/// `/validate` without and with `MTLS_GUARD_BENCH_EVENTS` events a second applied
/// to the index (each published), alternately, on the same server and world; driven
/// by the in-process client and then by wrk from another process (when wrk is
/// installed), as the API server drives the webhook.
async fn events(duration: Duration, concurrencies: Vec<usize>) {
    let per_second: f64 = env_or("MTLS_GUARD_BENCH_EVENTS", 200.0);
    let real = TestServer::bookinfo().await;
    let base = world();
    let audits = |handle: &server::Handle| {
        support::metric_value(&handle.metrics_text(), "mtls_guard_audit_runs_total").unwrap_or(0.0)
    };
    // The server audits each settled snapshot (a second after the last change, at
    // most 10 s after the first), which takes a core for a fraction of a second on
    // this world: wait for the audit that the last change starts, so that a quiet run
    // is the steady state without changes (no audit). Under a steady stream of
    // events the server audits every 10 s: busy runs of 10 s or more include that.
    let settle = |before: f64| {
        let handle = &real.handle;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while audits(handle) <= before && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let before = audits(&real.handle);
    real.handle.snapshots().publish(base.clone());
    settle(before).await;
    let audit_seconds = support::metric_value(
        &real.handle.metrics_text(),
        "mtls_guard_audit_duration_seconds",
    )
    .unwrap_or(f64::NAN);
    let url = format!(
        "https://127.0.0.1:{}/validate",
        real.handle.webhook_addr().port()
    );
    let body = compact(&review_body("10"));
    let scratch = tempfile::tempdir().unwrap();
    let mut clients = vec![Client::InProcess {
        ca_pem: real.ca.pem(),
    }];
    if have_wrk() {
        clients.push(Client::Wrk {
            script: wrk_script(scratch.path(), &body),
        });
    } else {
        println!("events: wrk is not installed (apt-get install wrk): the in-process client only");
    }
    println!(
        "events: /validate (allowed), {} s per run, world of {} objects; without events, then with {per_second} events/s applied and published, alternately",
        duration.as_secs_f64(),
        base.counts().values().sum::<usize>()
    );
    println!(
        "the server's audit of this world took {audit_seconds:.2} s (idle); `audits`: how many ran during the busy run (every 10 s under steady events)"
    );
    for client in &clients {
        println!("{}:", client.name());
        println!(
            "{:>4} {:>6} | {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} {:>9} {:>6} | {:>6}",
            "conc",
            "round",
            "quiet r/s",
            "p50 ms",
            "p99 ms",
            "busy r/s",
            "p50 ms",
            "p99 ms",
            "events/s",
            "audits",
            "busy %"
        );
        for &c in &concurrencies {
            let mut sums = [0.0f64; 2];
            for round in 1..=2 {
                let quiet = client.run(&url, &body, c, duration).await;
                let audits_before = audits(&real.handle);
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let churner = tokio::spawn(churn(
                    real.handle.snapshots().clone(),
                    base.clone(),
                    per_second,
                    stop_rx,
                ));
                let busy = client.run(&url, &body, c, duration).await;
                let _ = stop_tx.send(true);
                let applied = churner.await.unwrap();
                let audits_after = audits(&real.handle);
                real.handle.snapshots().publish(base.clone());
                settle(audits_after).await;
                sums[0] += quiet.throughput;
                sums[1] += busy.throughput;
                println!(
                    "{c:>4} {round:>6} | {:>9.0} {:>8.3} {:>8.3} | {:>9.0} {:>8.3} {:>8.3} {:>9.0} {:>6} | {:>5.0}%{}",
                    quiet.throughput,
                    quiet.p50_ms,
                    quiet.p99_ms,
                    busy.throughput,
                    busy.p50_ms,
                    busy.p99_ms,
                    applied as f64 / busy.elapsed.as_secs_f64(),
                    audits_after - audits_before,
                    100.0 * busy.throughput / quiet.throughput,
                    if quiet.errors + busy.errors > 0 { "  ERRORS" } else { "" }
                );
            }
            println!(
                "{c:>4} {:>6} | {:>9.0} {:>29} {:>9.0} {:>33} | {:>5.0}%",
                "mean",
                sums[0] / 2.0,
                "",
                sums[1] / 2.0,
                "",
                100.0 * sums[1] / sums[0]
            );
        }
    }
    real.handle.stop().await;
}
