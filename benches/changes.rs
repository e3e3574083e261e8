//! Contract section 8: a change to a policy reviewed against the stored rules of the
//! decision bench's world (`world`: 10,000 namespaces x 10 services, policies at every
//! level, 100,000 DestinationRules). Targets: a namespace-level change under 5 ms, a
//! mesh-level one (which can affect every rule) under 300 ms.
//!
//! Cases:
//! - `namespace_peer_authentication`: a STRICT PeerAuthentication `default` in
//!   ns-00042 (a namespace decided by its Policy): the namespace's rules and the wildcards;
//! - `namespace_review_json`: the same, as a whole AdmissionReview answered by
//!   `admission::review` (read, review, write);
//! - `mesh_peer_authentication`: a STRICT PeerAuthentication `default` in the root
//!   namespace: PeerAuthentication now applies everywhere, so every rule is compared
//!   (three namespaces in four change their deciding object);
//! - `mesh_policy`: the MeshPolicy `default` turned PERMISSIVE: every rule compared.

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use mtls_guard::admission::{review, Endpoint};
use mtls_guard::decision::{review_change, Change};
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use serde_json::json;
use std::hint::black_box;
use world::{mesh_objects, obj};

mod world;

fn peer_auth(ns: &str) -> serde_json::Value {
    json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": ns},
        "spec": {"mtls": {"mode": "STRICT"}},
    })
}

fn bench(c: &mut Criterion) {
    // Built on another thread, as the server's sources do.
    let snapshot = std::thread::spawn(|| Snapshot::from_objects(mesh_objects()))
        .join()
        .unwrap();
    let settings = Settings::default();
    let namespace = Change::Apply(obj(peer_auth("ns-00042")));
    let mesh = Change::Apply(obj(peer_auth("istio-system")));
    let mesh_policy = Change::Apply(obj(json!({
        "apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
        "metadata": {"name": "default"}, "spec": {"peers": [{"mtls": {"mode": "PERMISSIVE"}}]},
    })));
    // What each reviews, once, so the numbers can be read against it.
    for (name, change) in [
        ("namespace_peer_authentication", &namespace),
        ("mesh_peer_authentication", &mesh),
        ("mesh_policy", &mesh_policy),
    ] {
        let r = review_change(&snapshot, &settings, change);
        let scopes = |rules: &[mtls_guard::decision::AffectedRule]| {
            rules.iter().map(|r| r.scopes.len()).sum::<usize>()
        };
        eprintln!(
            "{name}: {} rules broken ({} scopes), {} left behind ({} scopes)",
            r.broken.len(),
            scopes(&r.broken),
            r.left_behind.len(),
            scopes(&r.left_behind)
        );
    }
    let mut body = serde_json::from_slice::<serde_json::Value>(include_bytes!(
        "../tests/fixtures/admission/31-create-peerauthentication-default-v1-validating.json"
    ))
    .unwrap();
    body["request"]["namespace"] = "ns-00042".into();
    body["request"]["object"]["metadata"]["namespace"] = "ns-00042".into();
    let body = serde_json::to_vec(&body).unwrap();

    let mut g = c.benchmark_group("changes");
    g.bench_function("namespace_peer_authentication", |b| {
        b.iter(|| review_change(black_box(&snapshot), &settings, black_box(&namespace)))
    });
    g.bench_function("namespace_review_json", |b| {
        b.iter(|| {
            review(
                black_box(&snapshot),
                &settings,
                Endpoint::Validate,
                black_box(&body),
            )
        })
    });
    g.sample_size(10);
    g.bench_function("mesh_peer_authentication", |b| {
        b.iter(|| review_change(black_box(&snapshot), &settings, black_box(&mesh)))
    });
    g.bench_function("mesh_policy", |b| {
        b.iter(|| review_change(black_box(&snapshot), &settings, black_box(&mesh_policy)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
