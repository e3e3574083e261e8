//! Cost of one AdmissionReview answer (parse, judge, plan, serialize) on the
//! real captured bodies, against the cost of only scanning the body as JSON.

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use mtls_guard::admission::{review, Endpoint};
use mtls_guard::loader::load_paths;
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use std::hint::black_box;
use std::path::PathBuf;

/// A captured body as the API server sent it: compact JSON (the fixtures are
/// pretty-printed copies, in the original key order).
fn fixture(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let pretty = std::fs::read(dir.join(name)).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&pretty).unwrap();
    serde_json::to_vec(&value).unwrap()
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let loaded = load_paths(&[root.join("examples/bookinfo")]).unwrap();
    let snapshot = Snapshot::from_objects(loaded.objects);
    let settings = Settings::default();
    let cases = [
        (
            "validate_reviews_allowed",
            Endpoint::Validate,
            "10-create-destinationrule-reviews-v1-validating.json",
        ),
        (
            "validate_reviews_denied",
            Endpoint::Validate,
            "25-update-destinationrule-reviews-v1-validating.json",
        ),
        (
            "mutate_productpage_patched",
            Endpoint::Mutate,
            "07-create-destinationrule-productpage-v1-mutating.json",
        ),
    ];
    let mut g = c.benchmark_group("review");
    for (name, endpoint, file) in cases {
        let body = fixture(file);
        g.bench_function(format!("json_parse_only/{name}"), |b| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap())
        });
        g.bench_function(name, |b| {
            b.iter(|| review(&snapshot, &settings, endpoint, black_box(&body)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
