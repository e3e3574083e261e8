//! The snapshot as an index updated per watch event (issue 6, item 2), in the decision
//! bench's world (`world`: 10,000 namespaces x 10 services, policies at every level,
//! 100,000 DestinationRules).
//!
//! - `event/*`: one watch event applied to a working copy and the snapshot published
//!   (cloned into a new `Arc`, the previous one dropped), as a cluster source does.
//!   Each iteration changes another namespace, alternating two versions of the object.
//!   Target: under 50 µs.
//! - `relist/every_kind`: a re-list of every kind (`reset`) of that world into the
//!   built snapshot. Target: under 1 s.
//!
//! Resident memory is measured by the `index_memory` bench binary.

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mtls_guard::model::{MeshObject, ObjectKind};
use mtls_guard::snapshot::Snapshot;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use world::{mesh_objects, ns_name, obj, rule_value, service_rule_spec, NAMESPACES};

mod world;

/// Namespaces spread over the world, so that events do not hit one warm namespace.
fn spread(k: usize) -> usize {
    (k * 7919) % NAMESPACES
}

/// Two versions of one object of each benched kind, in namespace `i`.
fn versions(kind: &str, i: usize, second: bool) -> MeshObject {
    let ns = ns_name(i);
    match kind {
        "service" => {
            let mut ports = vec![
                json!({"name": "http", "port": 9080, "targetPort": 9080}),
                json!({"name": "grpc", "port": 9090, "targetPort": 19090}),
            ];
            if second {
                ports.push(json!({"name": "admin", "port": 9091}));
            }
            obj(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "svc-3", "namespace": ns, "labels": {"app": "svc-3"}},
                "spec": {"selector": {"app": "svc-3"}, "ports": ports},
            }))
        }
        "policy" => obj(json!({
            "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
            "metadata": {"name": "svc-1-grpc", "namespace": ns},
            "spec": {
                "targets": [
                    {"name": "svc-1", "ports": [{"number": 9090}]},
                    {"name": "svc-2", "ports": [{"name": "grpc"}]},
                ],
                "peers": [{"mtls": {"mode": if second { "STRICT" } else { "PERMISSIVE" }}}],
            },
        })),
        // A workload PeerAuthentication: every Service of the namespace is re-linked.
        "peer_authentication" => obj(json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "svc-5", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "svc-5"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {"19090": {"mode": if second { "PERMISSIVE" } else { "DISABLE" }}},
            },
        })),
        "destination_rule" => {
            let mut spec = service_rule_spec("svc-4");
            if second {
                spec["trafficPolicy"]["tls"]["mode"] = json!("DISABLE");
            }
            obj(rule_value(&ns, "svc-4", spec))
        }
        _ => unreachable!(),
    }
}

fn bench(c: &mut Criterion) {
    let objects = mesh_objects();
    let t = Instant::now();
    let snapshot = Snapshot::from_objects(objects.clone());
    eprintln!(
        "{} objects: snapshot built in {:.2?}; counts {:?}",
        objects.len(),
        t.elapsed(),
        snapshot.counts()
    );

    let mut g = c.benchmark_group("event");
    for kind in [
        "service",
        "policy",
        "peer_authentication",
        "destination_rule",
    ] {
        let events: Vec<MeshObject> = (0..2000)
            .map(|k| versions(kind, spread(k / 2), k % 2 == 1))
            .collect();
        let mut working = snapshot.clone();
        let mut published = Arc::new(working.clone());
        let mut k = 0;
        g.bench_function(kind, |b| {
            b.iter_batched(
                || {
                    k += 1;
                    events[k % events.len()].clone()
                },
                |event| {
                    working.apply(event);
                    published = Arc::new(working.clone());
                },
                BatchSize::SmallInput,
            )
        });
        drop(published);
    }
    g.finish();

    let mut by_kind: BTreeMap<ObjectKind, Vec<MeshObject>> = BTreeMap::new();
    for o in &objects {
        by_kind.entry(o.kind()).or_default().push(o.clone());
    }
    drop(objects);
    let mut g = c.benchmark_group("relist");
    g.sample_size(10);
    g.bench_function("every_kind", |b| {
        b.iter_batched(
            || (snapshot.clone(), by_kind.clone()),
            |(mut snap, lists)| {
                for (kind, list) in lists {
                    snap.reset(kind, list);
                }
                snap
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
