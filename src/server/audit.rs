//! `serve`'s audit: the pure [`crate::audit`] over the published snapshot, run
//! again when the snapshot changes, off the request path and never per scrape.
//!
//! Changes come in bursts (a re-list, a `kubectl apply -f` of a folder), so the
//! audit waits until no view has been published for `delay`, but not longer than
//! [`MAX_WAIT`] after the first change, so that a steady stream of changes does
//! not hold it back for ever. It runs on the blocking pool (a full audit of a
//! large mesh takes a fraction of a second), and what `GET /audit` and the gauge
//! read is swapped in whole when it is done.

use super::metrics::Metrics;
use crate::audit::{audit, Findings};
use crate::source::SnapshotStore;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest an audit waits for changes to settle.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The last audit, as `GET /audit` serves it.
#[derive(Debug)]
pub struct Computed {
    pub findings: Findings,
    /// Seconds since the Unix epoch.
    pub computed_at: f64,
    pub took: Duration,
}

/// Where the last audit is kept.
#[derive(Debug, Default)]
pub struct AuditCell(RwLock<Option<Arc<Computed>>>);

impl AuditCell {
    pub fn latest(&self) -> Option<Arc<Computed>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, computed: Computed) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(computed));
    }
}

/// Audits each settled snapshot of `store` until `stop` turns true.
pub(crate) fn spawn(
    store: SnapshotStore,
    metrics: Arc<Metrics>,
    cell: Arc<AuditCell>,
    delay: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut published = store.subscribe();
    // A snapshot published before this task started is audited too.
    if store.is_loaded() {
        published.mark_changed();
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                changed = published.changed() => if changed.is_err() { return },
            }
            // Settle: until nothing new for `delay`, at most MAX_WAIT.
            let deadline = tokio::time::Instant::now() + MAX_WAIT;
            loop {
                let quiet = (tokio::time::Instant::now() + delay).min(deadline);
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => return,
                    _ = tokio::time::sleep_until(quiet) => break,
                    changed = published.changed() => if changed.is_err() { return },
                }
            }
            let Some(view) = store.current() else {
                continue;
            };
            let started = Instant::now();
            let done = tokio::task::spawn_blocking(move || {
                let report = audit(&view.snapshot, &view.settings, None);
                let findings = Findings::new(report);
                (findings, view)
            })
            .await;
            let (findings, view) = match done {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "audit failed");
                    continue;
                }
            };
            let took = started.elapsed();
            let computed_at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            metrics.set_audit(
                &findings.by_namespace_and_code(),
                findings.counts.rules,
                computed_at,
                took,
                |ns| view.snapshot.knows_namespace(ns),
            );
            tracing::info!(
                summary = %findings.summary,
                took_ms = took.as_millis() as u64,
                "audit of the stored DestinationRules"
            );
            cell.set(Computed {
                findings,
                computed_at,
                took,
            });
        }
    })
}
