//! Prometheus metrics of the server, served as OpenMetrics text on the admin port.

use crate::admission::{Endpoint, ReviewVerdict};
use crate::model::ObjectKind;
use crate::reconcile::cluster::{ReconcileObserver, WriteResult};
use crate::reconcile::NoticeReason;
use crate::snapshot::ObjectCounts;
use crate::source::cluster::{ClusterStatus, Watched};
use crate::source::{EventType, SourceObserver};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    endpoint: &'static str,
    verdict: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchEventLabels {
    kind: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    action: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

/// Why the certificate files were read to look for a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertCheck {
    /// A change notification for the certificate or key file.
    Change,
    /// The periodic check (`--cert-poll-interval`).
    Poll,
}

impl CertCheck {
    fn as_str(self) -> &'static str {
        match self {
            CertCheck::Change => "change",
            CertCheck::Poll => "poll",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct AuditLabels {
    namespace: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50µs .. ~6.5s: reviews take microseconds, the API server gives up after 10s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 18,
    ))
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    snapshot_objects: Family<KindLabels, Gauge>,
    snapshot_loaded: Gauge,
    cert_expiry: Gauge,
    cert_reloads: Family<ResultLabels, Counter>,
    cert_checks: Family<TriggerLabels, Counter>,
    snapshot_reloads: Family<ResultLabels, Counter>,
    in_flight: Gauge,
    watch_up: Family<WatchLabels, Gauge>,
    watch_last_event: Family<WatchLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    watch_events: Family<WatchEventLabels, Counter>,
    reconcile: ReconcileMetrics,
    audit_findings: Family<AuditLabels, Gauge>,
    /// The `audit_findings` series set by the last audit.
    audit_series: std::sync::Mutex<std::collections::BTreeSet<AuditLabels>>,
    audit_rules: Gauge,
    audit_runs: Counter,
    audit_timestamp: Gauge<f64, std::sync::atomic::AtomicU64>,
    audit_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// The reconcilers' series (contract section 9), registered only when one is on.
#[derive(Debug, Default)]
struct ReconcileMetrics {
    leader: Gauge,
    passes: Family<ResultLabels, Counter>,
    exemption_writes: Family<WriteLabels, Counter>,
    rule_patches: Family<ResultLabels, Counter>,
    notices: Family<ReasonLabels, Counter>,
}

impl ReconcileMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconcile_leader",
            "Reconcilers: 1 while this replica holds the Lease and acts, else 0",
            self.leader.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconcilers: passes over a new snapshot, by result (ok; error: the managed exemptions could not be listed)",
            self.passes.clone(),
        );
        registry.register(
            "reconcile_exemption_writes",
            "Reconcilers: server-side exemptions written, by action (create, update, delete) and result (ok, conflict, error)",
            self.exemption_writes.clone(),
        );
        registry.register(
            "reconcile_rule_patches",
            "Reconcilers: stored DestinationRules patched, by result (ok; conflict: its resourceVersion test failed; error)",
            self.rule_patches.clone(),
        );
        registry.register(
            "reconcile_notices",
            "Reconcilers: exemptions not written, with a warning Event, by reason",
            self.notices.clone(),
        );
        for result in ["ok", "error"] {
            drop(self.passes.get_or_create(&ResultLabels { result }));
        }
        for result in WriteResult::ALL {
            let result = result.as_str();
            drop(self.rule_patches.get_or_create(&ResultLabels { result }));
            for action in ["create", "update", "delete"] {
                drop(
                    self.exemption_writes
                        .get_or_create(&WriteLabels { action, result }),
                );
            }
        }
        for reason in NoticeReason::ALL {
            drop(self.notices.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            }));
        }
    }
}

/// Counts a request as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of a server fed by files or objects.
    pub fn new() -> Metrics {
        Self::build(false, false)
    }

    /// The metrics of a server watching the cluster: the watch series too, each at
    /// 0 from start-up.
    pub fn for_cluster() -> Metrics {
        Self::for_cluster_with(false)
    }

    /// [`Metrics::for_cluster`], with the reconcilers' series when `reconcilers`.
    pub fn for_cluster_with(reconcilers: bool) -> Metrics {
        let metrics = Self::build(true, reconcilers);
        metrics.start_watch_series();
        metrics
    }

    fn build(cluster: bool, reconcilers: bool) -> Metrics {
        let mut registry = Registry::with_prefix("mtls_guard");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "Admission reviews answered, by endpoint (mutate, validate), verdict (allowed, patched, denied, error) and object kind",
            reviews.clone(),
        );
        let latency: Family<EndpointLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "review_duration",
            "Time from the request's headers to the answer, by endpoint",
            Unit::Seconds,
            latency.clone(),
        );
        let snapshot_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "snapshot_objects",
            "Objects in the mesh snapshot the reviews are judged against, by kind",
            snapshot_objects.clone(),
        );
        let snapshot_loaded = Gauge::default();
        registry.register(
            "snapshot_loaded",
            "1 once a mesh snapshot is loaded, else 0",
            snapshot_loaded.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, in seconds since the Unix epoch",
            cert_expiry.clone(),
        );
        let cert_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Attempts to load a changed serving certificate, by result (ok, error)",
            cert_reloads.clone(),
        );
        let cert_checks = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "certificate_checks",
            "Times the serving certificate files were read to look for a change, by trigger (change: a notification for the certificate or key file; poll: the periodic check)",
            cert_checks.clone(),
        );
        for trigger in [CertCheck::Change, CertCheck::Poll] {
            // The series exist (at 0) from the start.
            drop(cert_checks.get_or_create(&TriggerLabels {
                trigger: trigger.as_str(),
            }));
        }
        let snapshot_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "snapshot_reloads",
            "Attempts to load changed --policies files, by result (ok, error)",
            snapshot_reloads.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Webhook requests being received or answered",
            in_flight.clone(),
        );
        let watch_up = Family::<WatchLabels, Gauge>::default();
        let watch_last_event =
            Family::<WatchLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let watch_events = Family::<WatchEventLabels, Counter>::default();
        // Only a server that watches the cluster exports them.
        if cluster {
            registry.register(
                "watch_up",
                "Cluster mode: 1 when the kind is listed and its watch streams (or its API is not served: \
                 nothing to watch), 0 before its first list and while its watch fails",
                watch_up.clone(),
            );
            registry.register(
                "watch_last_event_timestamp_seconds",
                "Cluster mode: when the last event (or list) of the kind was applied to the index, \
                 in seconds since the Unix epoch (0: none yet)",
                watch_last_event.clone(),
            );
            registry.register(
                "watch_events",
                "Cluster mode: watch events applied to the index, by kind and type (apply, delete, relist)",
                watch_events.clone(),
            );
        }
        let reconcile = ReconcileMetrics::default();
        if reconcilers {
            reconcile.register(&mut registry);
        }
        let audit_findings = Family::<AuditLabels, Gauge>::default();
        registry.register(
            "audit_findings",
            "Findings of the last audit of the stored DestinationRules (check's lines), by the rule's namespace and code",
            audit_findings.clone(),
        );
        let audit_rules = Gauge::default();
        registry.register(
            "audit_rules",
            "DestinationRules judged by the last audit (0: none yet)",
            audit_rules.clone(),
        );
        let audit_runs = Counter::default();
        registry.register(
            "audit_runs",
            "Audits computed (each after the snapshot settled)",
            audit_runs.clone(),
        );
        let audit_timestamp = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "audit_last_run_timestamp_seconds",
            "When the last audit was computed, in seconds since the Unix epoch (0: none yet)",
            audit_timestamp.clone(),
        );
        let audit_duration = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "audit_duration",
            "How long the last audit took",
            Unit::Seconds,
            audit_duration.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        // Every documented series exists from the start, at 0 (docs/metrics.md): a
        // rate over a series that appears with its first increment misses that one.
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let endpoint = endpoint.as_str();
            drop(latency.get_or_create(&EndpointLabels { endpoint }));
            for verdict in ReviewVerdict::ALL {
                drop(reviews.get_or_create(&ReviewLabels {
                    endpoint,
                    verdict: verdict.as_str(),
                    kind: ObjectKind::DestinationRule.name(),
                }));
            }
        }
        for result in ["ok", "error"] {
            drop(cert_reloads.get_or_create(&ResultLabels { result }));
            drop(snapshot_reloads.get_or_create(&ResultLabels { result }));
        }
        let metrics = Metrics {
            registry,
            reviews,
            latency,
            snapshot_objects,
            snapshot_loaded,
            cert_expiry,
            cert_reloads,
            cert_checks,
            snapshot_reloads,
            in_flight,
            watch_up,
            watch_last_event,
            watch_events,
            reconcile,
            audit_findings,
            audit_series: Default::default(),
            audit_rules,
            audit_runs,
            audit_timestamp,
            audit_duration,
        };
        metrics.set_kind_counts(&ObjectCounts::new());
        metrics
    }

    /// Marks a webhook request as in flight until the returned guard is dropped.
    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts one answered review and its latency.
    pub fn observe_review(
        &self,
        endpoint: &'static str,
        verdict: &'static str,
        kind: &str,
        elapsed: Duration,
    ) {
        // The kind comes from the request: only the kinds mtls-guard reads get a
        // series of their own, so a caller cannot grow the label set.
        let kind = match ObjectKind::named(kind) {
            Some(k) => k.name(),
            None if kind.is_empty() => "unknown",
            None => "other",
        };
        self.reviews
            .get_or_create(&ReviewLabels {
                endpoint,
                verdict,
                kind,
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }

    /// Publishes the object counts of a newly loaded snapshot.
    pub fn set_snapshot(&self, counts: &ObjectCounts) {
        self.set_kind_counts(counts);
        self.snapshot_loaded.set(1);
    }

    /// One series per kind mtls-guard reads, 0 for the kinds `counts` lacks.
    fn set_kind_counts(&self, counts: &ObjectCounts) {
        for kind in ObjectKind::all() {
            let n = counts.get(&kind).copied().unwrap_or(0);
            self.snapshot_objects
                .get_or_create(&KindLabels {
                    kind: kind.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn set_cert_expiry(&self, not_after_unix: i64) {
        self.cert_expiry.set(not_after_unix);
    }

    pub fn count_cert_reload(&self, ok: bool) {
        self.cert_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    pub fn count_cert_check(&self, trigger: CertCheck) {
        self.cert_checks
            .get_or_create(&TriggerLabels {
                trigger: trigger.as_str(),
            })
            .inc();
    }

    pub fn count_snapshot_reload(&self, ok: bool) {
        self.snapshot_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Creates every watch series at 0 (cluster mode), so that rates and alerts
    /// see them from start-up; a server fed by files has none.
    fn start_watch_series(&self) {
        for kind in Watched::all() {
            let kind = kind.name();
            self.watch_up.get_or_create(&WatchLabels { kind }).set(0);
            self.watch_last_event
                .get_or_create(&WatchLabels { kind })
                .set(0.0);
            for event in EventType::ALL {
                self.watch_events
                    .get_or_create(&WatchEventLabels {
                        kind,
                        r#type: event.as_str(),
                    })
                    .inc_by(0);
            }
        }
    }

    /// Sets `watch_up` from the cluster source's state (read when scraped).
    pub(crate) fn read_watches(&self, status: &ClusterStatus) {
        for kind in Watched::all() {
            self.watch_up
                .get_or_create(&WatchLabels { kind: kind.name() })
                .set(i64::from(status.is_up(kind)));
        }
    }

    /// Publishes an audit: one `audit_findings` series per namespace and code with
    /// findings. A series that had findings and has none now reads 0 while its
    /// namespace is `known`, and goes with the namespace.
    pub fn set_audit(
        &self,
        findings: &std::collections::BTreeMap<(&str, &'static str), usize>,
        rules: usize,
        computed_at_unix: f64,
        took: Duration,
        known: impl Fn(&str) -> bool,
    ) {
        let mut series = self.audit_series.lock().unwrap_or_else(|e| e.into_inner());
        let now: std::collections::BTreeSet<AuditLabels> = findings
            .keys()
            .map(|(namespace, code)| AuditLabels {
                namespace: namespace.to_string(),
                code,
            })
            .collect();
        for gone in series.difference(&now) {
            if known(&gone.namespace) {
                self.audit_findings.get_or_create(gone).set(0);
            } else {
                self.audit_findings.remove(gone);
            }
        }
        series.retain(|s| known(&s.namespace));
        for ((namespace, code), n) in findings {
            let labels = AuditLabels {
                namespace: namespace.to_string(),
                code,
            };
            self.audit_findings
                .get_or_create(&labels)
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        series.extend(now);
        self.audit_rules
            .set(i64::try_from(rules).unwrap_or(i64::MAX));
        self.audit_runs.inc();
        self.audit_timestamp.set(computed_at_unix);
        self.audit_duration.set(took.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl SourceObserver for Metrics {
    fn published(&self, counts: &ObjectCounts) {
        self.set_snapshot(counts);
    }

    fn reloaded(&self, ok: bool) {
        self.count_snapshot_reload(ok);
    }

    fn watch_event(&self, kind: &'static str, event: EventType, unix_seconds: f64) {
        self.watch_events
            .get_or_create(&WatchEventLabels {
                kind,
                r#type: event.as_str(),
            })
            .inc();
        self.watch_last_event
            .get_or_create(&WatchLabels { kind })
            .set(unix_seconds);
    }
}

impl ReconcileObserver for Metrics {
    fn leader(&self, holds: bool) {
        self.reconcile.leader.set(i64::from(holds));
    }

    fn pass(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reconcile
            .passes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    fn exemption_write(&self, action: &'static str, result: WriteResult) {
        self.reconcile
            .exemption_writes
            .get_or_create(&WriteLabels {
                action,
                result: result.as_str(),
            })
            .inc();
    }

    fn rule_patch(&self, result: WriteResult) {
        self.reconcile
            .rule_patches
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    fn notice(&self, reason: NoticeReason) {
        self.reconcile
            .notices
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_requests_do_not_grow_the_label_set() {
        let m = Metrics::new();
        for kind in ["DestinationRule", "Foo", "Bar", ""] {
            m.observe_review("validate", "allowed", kind, Duration::from_micros(10));
        }
        let text = m.encode();
        assert!(text.contains(r#"kind="DestinationRule""#), "{text}");
        assert!(
            text.contains(r#"kind="other""#) && text.contains(r#"kind="unknown""#),
            "{text}"
        );
        assert!(!text.contains("Foo") && !text.contains("Bar"), "{text}");
    }
}
