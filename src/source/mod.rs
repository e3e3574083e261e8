//! Where the mesh snapshot comes from: files (`--policies`), objects a caller
//! hands over, or the cluster (kube-rs watches), and the cell reviews read it from.
//!
//! A source keeps its own working [`Snapshot`], updates it, and publishes clones
//! (cheap: the index shares structure) into the [`SnapshotStore`]; a review takes
//! the published [`View`] once and keeps it until it is answered. Nothing here
//! knows about HTTP or Prometheus: sources report what they do through a
//! [`SourceObserver`], which the server implements with its metrics, and the
//! server reads the state of the cluster watches ([`ClusterStatus`]) when scraped.

pub mod cluster;
mod files;

pub use cluster::{ClusterConfig, ClusterStatus, MeshOverrides, Unsynced};
pub use files::watch_files;

use crate::model::MeshObject;
use crate::settings::Settings;
use crate::snapshot::{ObjectCounts, Snapshot};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Where the snapshot comes from.
pub enum SnapshotSource {
    /// Loaded at start from YAML/JSON files and folders (`--policies`), and again
    /// whenever one of them changes (see [`watch_files`]).
    Files(Vec<PathBuf>),
    /// A snapshot built by the caller.
    Fixed(Snapshot),
    /// Objects given by the caller, indexed at start.
    Objects(Vec<MeshObject>),
    /// An empty snapshot, under which nothing requires mutual TLS.
    Empty,
    /// Published later through [`SnapshotStore::publish`]: not ready until then.
    Deferred,
    /// The cluster, through kube-rs watches ([`cluster`]): not ready until every
    /// watched kind has been listed once.
    Cluster(Box<ClusterConfig>),
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotSource::Files(paths) => f.debug_tuple("Files").field(paths).finish(),
            SnapshotSource::Fixed(_) => f.write_str("Fixed(..)"),
            SnapshotSource::Objects(objects) => write!(f, "Objects({} objects)", objects.len()),
            SnapshotSource::Empty => f.write_str("Empty"),
            SnapshotSource::Deferred => f.write_str("Deferred"),
            SnapshotSource::Cluster(c) => f.debug_tuple("Cluster").field(c).finish(),
        }
    }
}

impl SnapshotSource {
    /// Produces the first snapshot, if this source has one at start (blocking I/O
    /// for files). The cluster source publishes from its own task instead.
    pub fn initial(self) -> anyhow::Result<Option<Snapshot>> {
        match self {
            SnapshotSource::Files(paths) => files::load_files(&paths).map(Some),
            SnapshotSource::Fixed(snapshot) => Ok(Some(snapshot)),
            SnapshotSource::Objects(objects) => Ok(Some(Snapshot::from_objects(objects))),
            SnapshotSource::Empty => Ok(Some(Snapshot::default())),
            SnapshotSource::Deferred | SnapshotSource::Cluster(_) => Ok(None),
        }
    }
}

/// How a watch event changed the index, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An object was added or modified.
    Apply,
    /// An object was deleted.
    Delete,
    /// A (re-)list replaced every object of the kind.
    Relist,
}

impl EventType {
    pub const ALL: [EventType; 3] = [EventType::Apply, EventType::Delete, EventType::Relist];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Apply => "apply",
            EventType::Delete => "delete",
            EventType::Relist => "relist",
        }
    }
}

/// What sources report, so that the server can count it without the sources
/// knowing about metrics. Every method has a do-nothing default.
pub trait SourceObserver: Send + Sync {
    /// A new snapshot was published, with these object counts.
    fn published(&self, _counts: &ObjectCounts) {}
    /// Changed `--policies` files were loaded (`ok`) or failed to load.
    fn reloaded(&self, _ok: bool) {}
    /// A watch event of `kind` was applied to the index at `unix_seconds`.
    fn watch_event(&self, _kind: &'static str, _event: EventType, _unix_seconds: f64) {}
}

/// An observer that ignores everything.
impl SourceObserver for () {}

/// What a review is judged against: one snapshot and the settings that go with it
/// (in cluster mode the mesh config can change them).
#[derive(Debug, Clone)]
pub struct View {
    pub snapshot: Snapshot,
    pub settings: Settings,
}

/// The current view, shared by every request.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    current: Arc<RwLock<Option<Arc<View>>>>,
    /// Counts publishes, for what follows the snapshot (the audit).
    published: Arc<tokio::sync::watch::Sender<u64>>,
    /// Used by [`SnapshotStore::publish`], which publishes a snapshot alone.
    settings: Settings,
    cluster: Option<Arc<ClusterStatus>>,
}

impl SnapshotStore {
    /// An empty store; `settings` go with snapshots published alone.
    pub fn new(settings: Settings) -> SnapshotStore {
        SnapshotStore {
            current: Arc::new(RwLock::new(None)),
            published: Arc::new(tokio::sync::watch::Sender::new(0)),
            settings,
            cluster: None,
        }
    }

    /// A store fed by the cluster source, whose sync state decides readiness.
    pub fn for_cluster(settings: Settings, status: Arc<ClusterStatus>) -> SnapshotStore {
        SnapshotStore {
            cluster: Some(status),
            ..SnapshotStore::new(settings)
        }
    }

    /// The view reviews are judged against, once one is published.
    pub fn current(&self) -> Option<Arc<View>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Swaps in a new snapshot with the store's settings: reviews that already
    /// started keep the old one.
    pub fn publish(&self, snapshot: Snapshot) {
        let settings = self.settings.clone();
        self.publish_view(View { snapshot, settings });
    }

    /// Swaps in a new view.
    pub fn publish_view(&self, view: View) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(view));
        self.published.send_modify(|n| *n += 1);
    }

    /// Wakes when a view is published (the number of views published so far).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// The cluster source's sync state, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<ClusterStatus>> {
        self.cluster.as_ref()
    }

    /// Why the store cannot serve reviews yet, or has lost track of the cluster
    /// (empty when ready).
    pub fn not_ready(&self) -> Vec<String> {
        match &self.cluster {
            Some(status) => status.not_ready(),
            None if !self.is_loaded() => vec!["the mesh snapshot is not loaded".to_string()],
            None => Vec::new(),
        }
    }
}
