//! One pass of the reconcilers' planning (contract section 9) over the decision
//! bench's world (benches/world: 10,000 namespaces x 10 services, policies at every
//! level, a non-mesh Ingress in every 10th namespace, 100,000 DestinationRules, each
//! given a resourceVersion as the cluster source has it). A pass runs off the
//! runtime (`spawn_blocking`), once per debounced snapshot change.
//!
//! After one namespace-level change (a PeerAuthentication in one namespace), the
//! stored-rules pass judges only the rules the change can reach ([`RulePasses`]);
//! `one_namespace_change` measures it beside the full pass over the same snapshot.
//!
//! `cargo bench --bench reconcile -- --warm-up-time 1 --measurement-time 10`

/// The allocator the `mtls-guard` binary uses (src/main.rs), so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mtls_guard::model::MeshObject;
use mtls_guard::reconcile::{
    plan, plan_exemptions, plan_pass, plan_rules, ExemptionApi, Reconcilers, RulePasses,
};
use mtls_guard::settings::Settings;
use mtls_guard::snapshot::Snapshot;
use std::hint::black_box;

mod world;

fn bench(c: &mut Criterion) {
    let mut objects = world::mesh_objects();
    for (i, o) in objects.iter_mut().enumerate() {
        if let MeshObject::DestinationRule(rule, _) = o {
            rule.metadata.resource_version = Some(i.to_string());
        }
    }
    let snapshot = Snapshot::from_objects(objects);
    let settings = Settings::default();
    let api = ExemptionApi::peer_authentication("security.istio.io/v1");
    let both = Reconcilers {
        exemptions: Some(api.clone()),
        rules: true,
    };
    let planned = plan(&snapshot, &settings, &both, &[]);
    eprintln!(
        "world: {:?}; one pass: {} exemptions wanted ({} notices), {} rule patches, {} rules held",
        snapshot.counts(),
        planned.exemptions.wanted.len(),
        planned.exemptions.notices.len(),
        planned.rules.patches.len(),
        planned.rules.held.len(),
    );

    let mut g = c.benchmark_group("reconcile_plan_10000ns_x_10svc");
    g.sample_size(10);
    g.bench_function("exemptions", |b| {
        b.iter(|| black_box(plan_exemptions(&snapshot, &settings, &api, &[])))
    });
    g.bench_function("rules", |b| {
        b.iter(|| black_box(plan_rules(&snapshot, &settings)))
    });
    g.bench_function("both", |b| {
        b.iter(|| black_box(plan(&snapshot, &settings, &both, &[])))
    });
    g.finish();

    // One namespace-level change: namespace 42's PeerAuthentication `default` is written.
    let mut changed = snapshot.clone();
    changed.apply(world::obj(serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": world::ns_name(42)},
        "spec": {"mtls": {"mode": "DISABLE"}},
    })));
    let mut primed = RulePasses::default();
    primed.plan(&snapshot, &settings);
    let (incremental, report) = primed.clone().plan(&changed, &settings);
    assert!(!report.full);
    assert_eq!(incremental, plan_rules(&changed, &settings));
    eprintln!(
        "one namespace change: the incremental pass judges {} rules ({} patches, {} held)",
        report.judged,
        incremental.patches.len(),
        incremental.held.len()
    );
    let mut g = c.benchmark_group("reconcile_rules_one_namespace_change");
    g.sample_size(10);
    g.bench_function("full", |b| {
        b.iter(|| black_box(plan_rules(&changed, &settings)))
    });
    g.bench_function("incremental", |b| {
        b.iter_batched(
            || primed.clone(),
            |mut passes| black_box(passes.plan(&changed, &settings)),
            BatchSize::LargeInput,
        )
    });
    // Both reconcilers: the exemptions are planned whole each pass, and the rules are
    // judged against the snapshot with the exemptions in place, built again each pass.
    let mut primed_both = RulePasses::default();
    plan_pass(&snapshot, &settings, &both, &[], &mut primed_both);
    let (_, report) = plan_pass(&changed, &settings, &both, &[], &mut primed_both.clone());
    eprintln!(
        "one namespace change, both reconcilers: the incremental pass judges {} rules",
        report.judged
    );
    g.bench_function("both_full", |b| {
        b.iter(|| black_box(plan(&changed, &settings, &both, &[])))
    });
    g.bench_function("both_incremental", |b| {
        b.iter_batched(
            || primed_both.clone(),
            |mut passes| black_box(plan_pass(&changed, &settings, &both, &[], &mut passes)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
