//! Load bench for one big file: the world of issue 9 (10,000 namespaces, each with a
//! Namespace, a STRICT PeerAuthentication, 10 Services and 10 DestinationRules:
//! 220,000 objects) written by the bench itself into a temporary folder, in three
//! shapes, each as one file and as the same objects split over 10 files:
//! - `jsonl`: one JSON object per line (JSON lines, or concatenated JSON values);
//! - `yaml`: YAML documents separated by `---` (a GitOps bundle);
//! - `list`: one `kind: List` document, as `kubectl get -o yaml` prints it.
//!
//! Each case runs in a child process of its own (this binary again), so that its
//! resident memory is its own (VmRSS and VmHWM from /proc/self/status), in two ways:
//! - `check`: `loader::load_paths` (every object kept), then `Snapshot::from_objects`;
//!   the load peak is VmHWM right after loading;
//! - `serve`: `loader::stream_paths_in` into `Snapshot::apply`, then the freed memory
//!   given back, as `serve --policies` does (each object indexed as it is read); load
//!   includes indexing.
//!
//! RSS is what is resident with only the snapshot left; peak is the run's VmHWM.
//! Linear loading shows as one file costing about what 10 files cost.
//!
//! `cargo bench --bench load_file`; environment:
//! - `MTLS_GUARD_BENCH_NAMESPACES`: namespaces in the world (default 10000),
//! - `MTLS_GUARD_BENCH_SHAPES`: comma-separated shapes (default `jsonl,yaml,list`),
//! - `MTLS_GUARD_BENCH_KEEP`: a folder to write the files to and keep (for
//!   `serve --policies` by hand) instead of a temporary one,
//! - `MTLS_GUARD_BENCH_SERVE=0`: skip starting the release binary's `serve --policies`
//!   on each one-file shape (it reports the time until `/readyz` answers 200, and the
//!   server's resident memory and peak then).

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mtls_guard::loader;
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SERVICES_PER_NAMESPACE: usize = 10;
const SPLIT: usize = 10;
/// The child process measures the path in this variable instead of running the bench.
const CHILD: &str = "MTLS_GUARD_BENCH_LOAD_CHILD";
/// `1`: the child indexes objects as they are read (`serve`), else after loading (`check`).
const CHILD_STREAM: &str = "MTLS_GUARD_BENCH_LOAD_STREAM";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The objects of one namespace, keys in the order kubectl prints them.
fn namespace_objects(i: usize) -> Vec<Value> {
    let ns = format!("team-{i:05}");
    let meta = |name: &str, n: usize| {
        json!({
            "creationTimestamp": "2026-01-15T10:00:00Z",
            "generation": 1,
            "labels": {"app.kubernetes.io/part-of": "shop", "team": ns},
            "name": name,
            "namespace": ns,
            "resourceVersion": (1_000_000 + i * 100 + n).to_string(),
            "uid": format!("6b1d2c3e-{i:04x}-4{n:03x}-8000-{:012x}", i * 100 + n),
        })
    };
    let mut out = Vec::with_capacity(2 + 2 * SERVICES_PER_NAMESPACE);
    out.push(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "creationTimestamp": "2026-01-15T10:00:00Z",
            "labels": {"istio-injection": "enabled", "kubernetes.io/metadata.name": ns},
            "name": ns,
            "resourceVersion": (1_000_000 + i * 100).to_string(),
            "uid": format!("6b1d2c3e-{i:04x}-4000-8000-000000000000"),
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }));
    out.push(json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": meta("default", 1),
        "spec": {"mtls": {"mode": "STRICT"}},
    }));
    for s in 0..SERVICES_PER_NAMESPACE {
        let name = format!("svc-{s}");
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(&name, 10 + s),
            "spec": {
                "clusterIP": format!("10.{}.{}.{}", i / 256 % 256, i % 256, s + 1),
                "clusterIPs": [format!("10.{}.{}.{}", i / 256 % 256, i % 256, s + 1)],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "ports": [
                    {"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080},
                    {"name": "grpc", "port": 9090, "protocol": "TCP", "targetPort": "grpc"},
                ],
                "selector": {"app": name},
                "sessionAffinity": "None",
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        }));
    }
    for s in 0..SERVICES_PER_NAMESPACE {
        let name = format!("svc-{s}");
        out.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": meta(&name, 30 + s),
            "spec": {
                "host": format!("{name}.{ns}.svc.cluster.local"),
                "trafficPolicy": {
                    "connectionPool": {"http": {"http2MaxRequests": 1000}},
                    "tls": {"mode": "ISTIO_MUTUAL"},
                },
                "subsets": [
                    {"labels": {"version": "v1"}, "name": "v1"},
                    {"labels": {"version": "v2"}, "name": "v2"},
                ],
            },
        }));
    }
    out
}

/// Writes `objects` (namespaces `range`) in one shape to `path`.
fn write_shape(path: &Path, shape: &str, range: std::ops::Range<usize>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    match shape {
        "jsonl" => {
            for i in range {
                for o in namespace_objects(i) {
                    serde_json::to_writer(&mut out, &o).unwrap();
                    out.write_all(b"\n").unwrap();
                }
            }
        }
        "yaml" => {
            for i in range {
                for o in namespace_objects(i) {
                    out.write_all(b"---\n").unwrap();
                    serde_yaml_ng::to_writer(&mut out, &o).unwrap();
                }
            }
        }
        "list" => {
            let items: Vec<Value> = range.flat_map(namespace_objects).collect();
            let list = json!({
                "apiVersion": "v1",
                "items": items,
                "kind": "List",
                "metadata": {"resourceVersion": ""},
            });
            serde_yaml_ng::to_writer(&mut out, &list).unwrap();
        }
        other => panic!("unknown shape {other}"),
    }
    out.flush().unwrap();
}

/// VmRSS and VmHWM of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    memory_of("self")
}

/// The child: loads and indexes one path, prints one line of JSON. `stream`: as
/// `serve --policies` does (each object indexed as it is read); otherwise as `check`
/// does (every object loaded, then indexed).
fn child(path: &str, stream: bool) {
    let (rss_start, _) = memory_kib();
    if stream {
        let start = Instant::now();
        let mut snapshot = Snapshot::default();
        let mut objects = 0;
        loader::stream_paths_in(
            &[PathBuf::from(path)],
            loader::DEFAULT_NAMESPACE,
            &mut |o| {
                objects += 1;
                snapshot.apply(o);
            },
        )
        .expect("loads");
        // As `serve` does after loading its files (src/source/files.rs).
        mtls_guard::allocator::release_freed_memory();
        let load = start.elapsed();
        let (rss, peak) = memory_kib();
        std::hint::black_box(&snapshot);
        println!(
            "{}",
            json!({
                "objects": objects,
                "load_s": load.as_secs_f64(),
                "index_s": 0.0,
                "start_kib": rss_start,
                "load_peak_kib": peak,
                "rss_kib": rss,
                "peak_kib": peak,
            })
        );
        return;
    }
    let start = Instant::now();
    let loaded = loader::load_paths(&[PathBuf::from(path)]).expect("loads");
    let load = start.elapsed();
    let (_, load_peak) = memory_kib();
    let objects = loaded.objects.len();
    let start = Instant::now();
    let snapshot = Snapshot::from_objects(loaded.objects);
    let index = start.elapsed();
    drop(loaded.origins);
    let (rss, peak) = memory_kib();
    std::hint::black_box(&snapshot);
    println!(
        "{}",
        json!({
            "objects": objects,
            "load_s": load.as_secs_f64(),
            "index_s": index.as_secs_f64(),
            "start_kib": rss_start,
            "load_peak_kib": load_peak,
            "rss_kib": rss,
            "peak_kib": peak,
        })
    );
}

fn measure(path: &Path, stream: bool) -> Value {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, path)
        .env(CHILD_STREAM, if stream { "1" } else { "0" })
        .output()
        .expect("runs the child");
    assert!(
        out.status.success(),
        "child failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("child prints JSON")
}

/// VmRSS and VmHWM of process `pid` (a number, or `self`), in KiB.
fn memory_of(pid: impl std::fmt::Display) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The status code of `GET /readyz` on `addr`, if it answered.
fn readyz(addr: &str) -> Option<u16> {
    use std::io::Read as _;
    let mut conn = std::net::TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    conn.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1)?.parse().ok()
}

/// `mtls-guard serve --policies PATH` (the release binary): seconds from start until
/// `/readyz` answers 200, and the server's VmRSS and VmHWM (KiB) then.
fn serve_ready(path: &Path, scratch: &Path) -> (f64, u64, u64) {
    use std::io::BufRead as _;
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtls-guard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--cert-dir")
        .arg(scratch.join("certs"))
        .arg("--policies")
        .arg(path)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts mtls-guard serve");
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let admin = v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin port listening"));
            if admin {
                let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
            }
        }
    });
    let admin = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("serve logs its admin port");
    let deadline = start + std::time::Duration::from_secs(900);
    let ready = loop {
        if readyz(&admin) == Some(200) {
            break start.elapsed();
        }
        assert!(Instant::now() < deadline, "serve was not ready in 900 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited before it was ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (rss, peak) = memory_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (ready.as_secs_f64(), rss, peak)
}

fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    } else {
        std::fs::metadata(path).unwrap().len()
    }
}

fn main() {
    if let Ok(path) = std::env::var(CHILD) {
        child(&path, std::env::var(CHILD_STREAM).is_ok_and(|v| v == "1"));
        return;
    }
    let namespaces: usize = env_or("MTLS_GUARD_BENCH_NAMESPACES", 10_000);
    let shapes: Vec<String> = std::env::var("MTLS_GUARD_BENCH_SHAPES")
        .unwrap_or_else(|_| "jsonl,yaml,list".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let serve = std::env::var("MTLS_GUARD_BENCH_SERVE").map_or(true, |v| v != "0");
    let temp = tempfile::tempdir().unwrap();
    let root = std::env::var("MTLS_GUARD_BENCH_KEEP")
        .map(PathBuf::from)
        .unwrap_or_else(|_| temp.path().to_path_buf());
    std::fs::create_dir_all(&root).unwrap();
    println!(
        "mtls-guard load_file bench: {namespaces} namespaces, {} objects, each case in its own process; {} CPUs",
        namespaces * (2 + 2 * SERVICES_PER_NAMESPACE),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<6} {:<6} {:<9} {:>6} {:>7} | {:>7} {:>8} | {:>10} {:>7} {:>7}",
        "shape",
        "path",
        "files",
        "MB",
        "objects",
        "load s",
        "index s",
        "load peak",
        "RSS MB",
        "peak MB"
    );
    for shape in &shapes {
        let ext = if shape == "jsonl" { "json" } else { "yaml" };
        let one = root.join(format!("{shape}-one.{ext}"));
        write_shape(&one, shape, 0..namespaces);
        let split = root.join(format!("{shape}-split"));
        std::fs::create_dir_all(&split).unwrap();
        let per = namespaces.div_ceil(SPLIT);
        for f in 0..SPLIT {
            let range = (f * per).min(namespaces)..((f + 1) * per).min(namespaces);
            write_shape(&split.join(format!("{f:02}.{ext}")), shape, range);
        }
        let mut loads = Vec::new();
        let cases = [
            ("check", "1 file", &one, false),
            ("check", "10 files", &split, false),
            ("serve", "1 file", &one, true),
            ("serve", "10 files", &split, true),
        ];
        for (how, label, path, stream) in cases {
            let m = measure(path, stream);
            let mib = |k: &str| m[k].as_f64().unwrap_or(0.0) / 1024.0;
            println!(
                "{:<6} {:<6} {:<9} {:>6.1} {:>7} | {:>7.2} {:>8.2} | {:>7.0} MB {:>7.0} {:>7.0}",
                shape,
                how,
                label,
                size_of(path) as f64 / 1e6,
                m["objects"],
                m["load_s"].as_f64().unwrap_or(0.0),
                m["index_s"].as_f64().unwrap_or(0.0),
                mib("load_peak_kib"),
                mib("rss_kib"),
                mib("peak_kib"),
            );
            loads.push(m["load_s"].as_f64().unwrap_or(0.0));
        }
        println!(
            "{shape}: one file loads in {:.2}x (check) and {:.2}x (serve) the time of the same objects in {SPLIT} files",
            loads[0] / loads[1],
            loads[2] / loads[3]
        );
        if serve {
            let (ready, rss, peak) = serve_ready(&one, &root);
            println!(
                "{shape}: `mtls-guard serve --policies {}` ready (GET /readyz 200) after {ready:.2} s; then {:.0} MB resident, {:.0} MB peak",
                one.file_name().unwrap().to_string_lossy(),
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            );
        }
    }
}
