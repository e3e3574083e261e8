//! Resident memory of the snapshot with the decision bench's world loaded (`world`:
//! 10,000 namespaces x 10 services, policies at every level, 100,000 DestinationRules),
//! then with 100,000 more DestinationRules (a second rule per service). Target: under
//! 300 MB.
//!
//! Method: the objects are made and applied one namespace at a time (as watch events
//! arrive), so that what stays resident is the index, not the input; VmRSS and VmHWM
//! are read from /proc/self/status (Linux) before and after, with the allocator the
//! binary uses (mimalloc). Run: `cargo bench --bench index_memory`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mtls_guard::snapshot::Snapshot;
use std::time::Instant;
use world::{
    mesh_level_objects, namespace_objects, ns_name, obj, rule_value, service_rule_spec, NAMESPACES,
    SERVICES,
};

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

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let (rss0, _) = memory();
    let t = Instant::now();
    let mut snap = Snapshot::default();
    for o in mesh_level_objects() {
        snap.apply(o);
    }
    for i in 0..NAMESPACES {
        for o in namespace_objects(i) {
            snap.apply(o);
        }
    }
    let built = t.elapsed();
    let (rss1, hwm1) = memory();
    println!(
        "world ({} objects, built by events in {built:.2?}): VmRSS {rss1:.0} MB ({:.0} MB over the {rss0:.0} MB at start), VmHWM {hwm1:.0} MB",
        snap.counts().values().sum::<usize>(),
        rss1 - rss0
    );
    for i in 0..NAMESPACES {
        let ns = ns_name(i);
        for j in 0..SERVICES {
            let name = format!("svc-{j}");
            snap.apply(obj(rule_value(
                &ns,
                &format!("{name}-second"),
                service_rule_spec(&format!("{name}.{ns}.svc.cluster.local")),
            )));
        }
    }
    let (rss2, hwm2) = memory();
    println!(
        "world + 100,000 more DestinationRules ({} objects): VmRSS {rss2:.0} MB ({:.0} MB over start), VmHWM {hwm2:.0} MB",
        snap.counts().values().sum::<usize>(),
        rss2 - rss0
    );
    std::hint::black_box(&snap);
}
