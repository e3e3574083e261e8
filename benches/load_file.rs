//! Load bench for one big file: the world of issue 9 (10,000 namespaces, each with a
//! Namespace, a STRICT PeerAuthentication, 10 Services and 10 DestinationRules:
//! 220,000 objects) written by the bench itself into a temporary folder, in three
//! shapes, each as one file and as the same objects split over 10 files:
//! - `jsonl`: one JSON object per line (JSON lines, or concatenated JSON values);
//! - `yaml`: YAML documents separated by `---` (a GitOps bundle);
//! - `list`: one `kind: List` document, as `kubectl get -o yaml` prints it.
//!
//! Each case runs in a child process of its own (this binary again), so that its
//! resident memory is its own: the loader's peak (VmHWM right after
//! `loader::load_paths`), the time to load, the time to index (`Snapshot::from_objects`,
//! as `serve --policies` does), and the resident memory with only the snapshot left
//! (VmRSS) and the peak of the whole run (VmHWM), from /proc/self/status.
//! Linear loading shows as one file costing about what 10 files cost.
//!
//! `cargo bench --bench load_file`; environment:
//! - `MTLS_GUARD_BENCH_NAMESPACES`: namespaces in the world (default 10000),
//! - `MTLS_GUARD_BENCH_SHAPES`: comma-separated shapes (default `jsonl,yaml,list`),
//! - `MTLS_GUARD_BENCH_KEEP`: a folder to write the files to and keep (for
//!   `serve --policies` by hand) instead of a temporary one.

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
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The child: loads and indexes one path, prints one line of JSON.
fn child(path: &str) {
    let (rss_start, _) = memory_kib();
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

fn measure(path: &Path) -> Value {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, path)
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
        child(&path);
        return;
    }
    let namespaces: usize = env_or("MTLS_GUARD_BENCH_NAMESPACES", 10_000);
    let shapes: Vec<String> = std::env::var("MTLS_GUARD_BENCH_SHAPES")
        .unwrap_or_else(|_| "jsonl,yaml,list".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
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
        "{:<6} {:<9} {:>8} {:>8} | {:>7} {:>8} | {:>10} {:>9} {:>9}",
        "shape", "files", "MB", "objects", "load s", "index s", "load peak", "RSS MB", "peak MB"
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
        for (label, path) in [("1 file", &one), ("10 files", &split)] {
            let m = measure(path);
            let mib = |k: &str| m[k].as_f64().unwrap_or(0.0) / 1024.0;
            println!(
                "{:<6} {:<9} {:>8.1} {:>8} | {:>7.2} {:>8.2} | {:>7.0} MB {:>9.0} {:>9.0}",
                shape,
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
            "{shape}: one file loads in {:.2}x the time of the same objects in {SPLIT} files",
            loads[0] / loads[1]
        );
    }
}
