//! One decision against a large mesh (`world`): 10,000 namespaces x 10 services, policies at
//! every level. Target: a median under 5 µs per `judge` call.
//!
//! Per namespace `ns-NNNNN`:
//! - Services `svc-0` .. `svc-9`, ports 9080 (`http`) and 9090 (`grpc`, targetPort 19090);
//! - Policy `default` (STRICT; PERMISSIVE in every 7th namespace);
//! - Policy `svc-0-off`: service level, PLAINTEXT (a targeted exemption);
//! - Policy `svc-1-grpc`: service-port level, svc-1 by number and svc-2 by port name;
//! - every 4th namespace (i % 4 == 0): a namespace PeerAuthentication, STRICT;
//! - the next (i % 4 == 1): a workload PeerAuthentication for svc-5 with portLevelMtls 19090;
//! - every 10th: a non-mesh Ingress in front of svc-9 (no Istio gateway anywhere).
//!
//! Plus the MeshPolicy `default` (STRICT). DestinationRules are in the snapshot too
//! (counted, not indexed), one per service, with subsets and portLevelSettings.
//!
//! Groups: `judge` (the snapshot built on another thread, as the server's
//! `spawn_blocking` does), `snapshot` (build time), `judge_fragmented_arena` (the
//! same rules, judged on the thread that parsed 246k objects and built the snapshot).

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mtls_guard::decision::judge;
use mtls_guard::model::{DestinationRule, MeshObject};
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::Instant;
use world::{mesh_objects, obj, rule_value, service_rule_spec};

mod world;

fn rule(ns: &str, spec: Value) -> DestinationRule {
    match obj(rule_value(ns, "bench", spec)) {
        MeshObject::DestinationRule(dr, _) => *dr,
        _ => unreachable!(),
    }
}

/// The rules benched: (name, namespace admitted in, rule).
fn cases() -> Vec<(&'static str, &'static str, DestinationRule)> {
    // ns-00042: Policy-decided (i % 4 == 2); ns-00041: workload PeerAuthentication;
    // ns-00040: namespace PeerAuthentication and an Ingress in front of svc-9.
    vec![
        (
            "short_host",
            "ns-00042",
            rule("ns-00042", service_rule_spec("svc-3")),
        ),
        (
            "fqdn_service_port_policy",
            "ns-01234",
            rule(
                "ns-01234",
                service_rule_spec("svc-1.ns-01234.svc.cluster.local"),
            ),
        ),
        (
            "namespace_wide_wildcard",
            "ns-00077",
            rule(
                "ns-00077",
                json!({
                    "host": "*.ns-00077.svc.cluster.local",
                    "trafficPolicy": {
                        "tls": {"mode": "ISTIO_MUTUAL"},
                        "portLevelSettings": [{"port": {"number": 9080}, "tls": {"mode": "ISTIO_MUTUAL"}}],
                    },
                }),
            ),
        ),
        (
            "pa_workload_port",
            "ns-00041",
            rule("ns-00041", service_rule_spec("svc-5")),
        ),
        (
            "ingress_exempt_patch",
            "ns-00040",
            rule("ns-00040", service_rule_spec("svc-9.ns-00040")),
        ),
        (
            "unknown_service",
            "ns-00043",
            rule("ns-00043", service_rule_spec("ghost")),
        ),
    ]
}

fn bench_judge(c: &mut Criterion, group: &str, snapshot: &Snapshot, describe: bool) {
    let settings = Settings::default();
    let mut g = c.benchmark_group(group);
    for (name, ns, dr) in cases() {
        if describe {
            let v = judge(snapshot, &settings, &dr, ns);
            eprintln!(
                "{name}: {} findings, {} changes, {} conflicts, {} warnings",
                v.findings.len(),
                v.changes().count(),
                v.conflicts().count(),
                v.warnings.len()
            );
        }
        g.bench_function(name, |b| {
            b.iter(|| judge(black_box(snapshot), &settings, black_box(&dr), ns))
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    // As the server does (`spawn_blocking` in src/server), the snapshot is built on
    // another thread than the one that judges, so the judging thread's malloc arena is
    // not the one 246k parsed-and-dropped objects fragmented.
    let (objects, snapshot) = std::thread::spawn(|| {
        let t = Instant::now();
        let objects = mesh_objects();
        let parsed = t.elapsed();
        let copy = objects.clone();
        let t = Instant::now();
        let snapshot = Snapshot::from_objects(copy);
        let built = t.elapsed();
        eprintln!(
            "{} objects: parsed with MeshObject::from_value in {parsed:.2?}, snapshot built in {built:.2?}; counts {:?}",
            objects.len(),
            snapshot.counts()
        );
        (objects, snapshot)
    })
    .join()
    .unwrap();

    bench_judge(c, "judge", &snapshot, true);

    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.bench_function("build_10000ns_x_10svc", |b| {
        b.iter_batched(
            || objects.clone(),
            Snapshot::from_objects,
            BatchSize::PerIteration,
        )
    });
    g.finish();

    drop(objects);
    drop(snapshot);

    // Worst case: parse the objects and build the snapshot on the judging thread itself,
    // so that its malloc arena is the one 246k parsed-and-dropped objects fragmented.
    // glibc then consolidates fastbins on each decision's one large allocation (the
    // findings), and that walks cold memory.
    let snapshot = Snapshot::from_objects(mesh_objects());
    bench_judge(c, "judge_fragmented_arena", &snapshot, false);
}

criterion_group!(benches, bench);
criterion_main!(benches);
