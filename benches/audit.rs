//! A full audit of the world (`world`: 10,000 namespaces x 10 services, policies at
//! every level, 100,000 DestinationRules with subsets and port entries): every rule
//! judged, grouped and planned as `check` does, then kept as `serve` keeps it
//! (`Findings`). Target: under 1 s.
//!
//! Before the timing it prints the findings and the process's resident memory
//! (VmRSS, VmHWM from /proc/self/status) with the snapshot built and with one audit
//! kept; the target for the whole process is 400 MB. The snapshot is built as the
//! cluster source builds it: objects as a paged list brings them, without the raw
//! JSON, and the freed memory given back once built.
//! Run: `cargo bench --bench audit -- --warm-up-time 1 --measurement-time 20`.

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use mtls_guard::audit::{audit, Findings};
use mtls_guard::model::{MeshObject, ObjectKind};
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use std::hint::black_box;
use std::time::Instant;
use world::{mesh_level_objects, namespace_objects, NAMESPACES};

mod world;

/// `VmRSS` and `VmHWM` in MB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn bench(c: &mut Criterion) {
    // Built on another thread, as the server's sources do, from objects made one
    // namespace at a time as a paged list brings them (without the raw JSON the
    // cluster source drops), then the freed memory given back as after a re-list;
    // judged here.
    let snapshot = std::thread::spawn(|| {
        let objects = mesh_level_objects()
            .into_iter()
            .chain((0..NAMESPACES).flat_map(namespace_objects))
            .map(MeshObject::without_raw);
        let snapshot = Snapshot::from_objects(objects);
        mtls_guard::allocator::release_freed_memory();
        snapshot
    })
    .join()
    .unwrap();
    let settings = Settings::default();
    let rules = snapshot.counts()[&ObjectKind::DestinationRule];
    let (rss, hwm) = memory();
    println!("world: {rules} DestinationRules; VmRSS {rss:.0} MB, VmHWM {hwm:.0} MB");
    let t = Instant::now();
    let kept = Findings::new(audit(&snapshot, &settings, None));
    let took = t.elapsed();
    let (rss, hwm) = memory();
    println!(
        "one audit in {took:.2?}: {} with findings {:?}; {} rules kept; VmRSS {rss:.0} MB, VmHWM {hwm:.0} MB",
        kept.summary,
        kept.by_namespace_and_code()
            .into_iter()
            .fold(std::collections::BTreeMap::<&str, usize>::new(), |mut m, ((_, code), n)| {
                *m.entry(code).or_default() += n;
                m
            }),
        kept.report.rules.len(),
    );
    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.bench_function("world", |b| {
        b.iter(|| Findings::new(audit(black_box(&snapshot), &settings, None)))
    });
    group.finish();
    black_box(kept);
}

criterion_group!(benches, bench);
criterion_main!(benches);
