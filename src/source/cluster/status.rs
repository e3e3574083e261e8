//! What the cluster source knows about each watch: whether its API is served,
//! whether it has been listed, and whether its watch works. `/readyz` and the
//! `--unsynced` answers read it.

use super::kinds::Watched;
use std::collections::BTreeMap;
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
    /// The watch has failed since then, without a successful event since.
    down_since: Option<Instant>,
    /// The watch's last error.
    last_error_at: Option<Instant>,
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
    /// How long a watch may fail before `/readyz` says so.
    grace: Duration,
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
                        last_error_at: None,
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
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn with_kind(&self, kind: Watched, f: impl FnOnce(&mut KindState)) {
        self.with(|inner| {
            if let Some(state) = inner.kinds.get_mut(&kind) {
                f(state);
            }
        });
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
                state.last_error_at = None;
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

    /// The watch of `kind` (at `api_version`) delivered an event or a list.
    pub(super) fn up(&self, kind: Watched, api_version: &str) {
        self.with_kind(kind, |state| {
            state.down_since = None;
            state.error = None;
            if state.served != Served::At(api_version.to_string()) {
                state.served = Served::At(api_version.to_string());
            }
        });
    }

    /// The watch of `kind` found its API not served (404); returns whether that
    /// is news (to be logged once).
    pub(super) fn not_served(&self, kind: Watched) -> bool {
        let mut new = false;
        self.with_kind(kind, |state| {
            new = state.served != Served::Missing;
            state.served = Served::Missing;
            state.down_since = None;
            state.last_error_at = None;
            state.error = None;
        });
        new
    }

    /// The watch of `kind` failed; returns whether the message is new (to be logged).
    pub(super) fn down(&self, kind: Watched, error: String) -> bool {
        let mut new = false;
        self.with_kind(kind, |state| {
            let now = Instant::now();
            if !state.failing() {
                state.down_since = Some(now);
            }
            state.last_error_at = Some(now);
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
                .is_some_and(|s| s.listed && !s.failing())
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
            let mut out = Vec::new();
            if !inner.discovered {
                out.push(match &inner.discovery_error {
                    Some(e) => format!("API discovery has not succeeded yet: {e}"),
                    None => "waiting for API discovery".to_string(),
                });
                return out;
            }
            for (kind, state) in &inner.kinds {
                if !state.listed {
                    out.push(format!("not listed yet: {}", describe(*kind, state)));
                } else if let Some(since) = state.down_since.filter(|_| state.failing()) {
                    let down = since.elapsed();
                    if down >= self.grace {
                        out.push(format!(
                            "watch lost for {}s: {}",
                            down.as_secs(),
                            describe(*kind, state)
                        ));
                    }
                }
            }
            out
        })
    }
}

/// A watch that has not failed for this long is taken to work again, even if no
/// event came (a quiet kind): kube-runtime's backoff retries at least every 30 s,
/// and a connection attempt gives up within about as long.
const RECOVERY: Duration = Duration::from_secs(90);

impl KindState {
    fn failing(&self) -> bool {
        self.down_since.is_some() && self.last_error_at.is_some_and(|t| t.elapsed() < RECOVERY)
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
