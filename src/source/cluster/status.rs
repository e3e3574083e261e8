//! What the cluster source knows about each watch: whether its API is served,
//! whether it has been listed, and whether its watch works. `/readyz` and the
//! `--unsynced` answers read it; every review asks whether a watch is lost
//! ([`ClusterStatus::lost`]), which costs an atomic load while none is.

use super::kinds::Watched;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether discovery found a kind's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Discovery has not answered yet.
    Unknown,
    /// Not served: counted as listed, with no objects.
    Missing,
    /// Watched at this `apiVersion`.
    At(String),
}

#[derive(Debug, Clone)]
struct KindState {
    served: Served,
    /// Listed once since start (a missing API counts as listed, empty).
    listed: bool,
    /// The watch has failed since then, without a successful list, watch
    /// request or event since.
    down_since: Option<Instant>,
    /// The last error of the watch, as logged.
    error: Option<String>,
}

#[derive(Debug)]
struct Inner {
    discovered: bool,
    discovery_error: Option<String>,
    kinds: BTreeMap<Watched, KindState>,
}

/// The sync state of every watch of the cluster source.
#[derive(Debug)]
pub struct ClusterStatus {
    inner: Mutex<Inner>,
    /// How long a watch may fail before `/readyz` fails and reviews are no
    /// longer judged.
    grace: Duration,
    /// When (nanoseconds after `epoch`) the first failing watch passes the grace
    /// period; `u64::MAX` when no watch is failing. Kept under `inner`'s lock.
    lost_from: AtomicU64,
    epoch: Instant,
}

impl ClusterStatus {
    pub fn new(kinds: &[Watched], grace: Duration) -> ClusterStatus {
        let kinds = kinds
            .iter()
            .map(|k| {
                (
                    *k,
                    KindState {
                        served: Served::Unknown,
                        listed: false,
                        down_since: None,
                        error: None,
                    },
                )
            })
            .collect();
        ClusterStatus {
            inner: Mutex::new(Inner {
                discovered: false,
                discovery_error: None,
                kinds,
            }),
            grace,
            lost_from: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Changes the state of `kind`, then recomputes when a watch will be lost.
    fn with_kind<T: Default>(&self, kind: Watched, f: impl FnOnce(&mut KindState) -> T) -> T {
        self.with(|inner| {
            let out = inner.kinds.get_mut(&kind).map(f).unwrap_or_default();
            let first_down = inner.kinds.values().filter_map(|s| s.down_since).min();
            let from = first_down.map_or(u64::MAX, |since| {
                let at = since.saturating_duration_since(self.epoch) + self.grace;
                u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
            });
            self.lost_from.store(from, Ordering::Release);
            out
        })
    }

    pub(super) fn discovery_done(&self) {
        self.with(|inner| {
            inner.discovered = true;
            inner.discovery_error = None;
        });
    }

    /// Returns whether the message is new (to be logged).
    pub(super) fn discovery_failed(&self, error: String) -> bool {
        self.with(|inner| {
            let new = inner.discovery_error.as_deref() != Some(error.as_str());
            inner.discovery_error = Some(error);
            new
        })
    }

    pub(super) fn set_served(&self, kind: Watched, served: Served) {
        self.with_kind(kind, |state| {
            if served == Served::Missing {
                state.down_since = None;
                state.error = None;
            }
            state.served = served;
        });
    }

    pub fn served(&self, kind: Watched) -> Served {
        self.with(|inner| {
            inner
                .kinds
                .get(&kind)
                .map_or(Served::Unknown, |s| s.served.clone())
        })
    }

    /// The index holds a full list of `kind`.
    pub(super) fn listed(&self, kind: Watched) {
        self.with_kind(kind, |state| state.listed = true);
    }

    /// The watch of `kind` (at `api_version`) delivered an event or a list, or
    /// its watch request was answered. Returns how long it had been failing, if
    /// it was (to be logged).
    pub(super) fn up(&self, kind: Watched, api_version: &str) -> Option<Duration> {
        self.with_kind(kind, |state| {
            state.error = None;
            if state.served != Served::At(api_version.to_string()) {
                state.served = Served::At(api_version.to_string());
            }
            state.down_since.take().map(|since| since.elapsed())
        })
    }

    /// The watch of `kind` found its API not served (404); returns whether that
    /// is news (to be logged once).
    pub(super) fn not_served(&self, kind: Watched) -> bool {
        let mut new = false;
        self.with_kind(kind, |state| {
            new = state.served != Served::Missing;
            state.served = Served::Missing;
            state.down_since = None;
            state.error = None;
        });
        new
    }

    /// The watch of `kind` failed; returns whether the message is new (to be logged).
    pub(super) fn down(&self, kind: Watched, error: String) -> bool {
        let mut new = false;
        self.with_kind(kind, |state| {
            state.down_since.get_or_insert_with(Instant::now);
            new = state.error.as_deref() != Some(error.as_str());
            state.error = Some(error);
        });
        new
    }

    /// The kind is listed (or not served) and its watch is not failing: the
    /// `watch_up` metric.
    pub fn is_up(&self, kind: Watched) -> bool {
        self.with(|inner| {
            inner
                .kinds
                .get(&kind)
                .is_some_and(|s| s.listed && s.down_since.is_none())
        })
    }

    /// Every kind has been listed once (or is not served).
    pub fn synced(&self) -> bool {
        self.with(|inner| inner.discovered && inner.kinds.values().all(|s| s.listed))
    }

    /// The kinds not listed yet, with the reason when one is known.
    pub fn pending(&self) -> Vec<String> {
        self.with(|inner| {
            inner
                .kinds
                .iter()
                .filter(|(_, s)| !s.listed)
                .map(|(kind, s)| describe(*kind, s))
                .collect()
        })
    }

    /// Why the cluster source cannot be relied on (empty when it can): not
    /// listed yet, or a watch failing for longer than the grace period.
    pub fn not_ready(&self) -> Vec<String> {
        self.with(|inner| {
            if !inner.discovered {
                return vec![match &inner.discovery_error {
                    Some(e) => format!("API discovery has not succeeded yet: {e}"),
                    None => "waiting for API discovery".to_string(),
                }];
            }
            let mut out: Vec<String> = inner
                .kinds
                .iter()
                .filter(|(_, s)| !s.listed)
                .map(|(kind, s)| format!("not listed yet: {}", describe(*kind, s)))
                .collect();
            out.extend(self.lost_in(inner));
            out
        })
    }

    /// The watches of listed kinds failing for longer than the grace period:
    /// the published snapshot may be stale, so reviews are answered per
    /// `--unsynced` rather than judged. Cheap (an atomic load) while none is.
    pub fn lost(&self) -> Vec<String> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if now < self.lost_from.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.with(|inner| self.lost_in(inner))
    }

    fn lost_in(&self, inner: &Inner) -> Vec<String> {
        inner
            .kinds
            .iter()
            .filter(|(_, s)| s.listed)
            .filter_map(|(kind, state)| {
                let down = state.down_since?.elapsed();
                (down >= self.grace).then(|| {
                    format!(
                        "watch lost for {}s: {}",
                        down.as_secs(),
                        describe(*kind, state)
                    )
                })
            })
            .collect()
    }
}

fn describe(kind: Watched, state: &KindState) -> String {
    let at = match &state.served {
        Served::At(api_version) => format!(" ({api_version})"),
        _ => String::new(),
    };
    match &state.error {
        Some(error) => format!("{kind}{at}: {error}"),
        None => format!("{kind}{at}"),
    }
}
