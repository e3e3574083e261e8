//! The cluster source (`serve` without `--policies`): kube-rs watches of every
//! kind in the model's table and of the `istio` ConfigMap, feeding one working
//! index that is published after each burst of events.
//!
//! - [`discovery`] finds which version of each kind's API is served, again every
//!   `discovery_interval`: a kind whose API appears is watched from then on, one
//!   whose API goes away is emptied (a missing API counts as listed, empty);
//! - [`watch`] runs kube-runtime's watcher per kind (list, watch, re-list after a
//!   410, the default backoff after errors) and sends [`Change`]s;
//! - the indexer task applies them to its working [`Snapshot`] (a list resets the
//!   kind) and, once every kind has been listed, publishes a clone after each
//!   burst (whatever is queued when it gets to it), with the settings of the mesh config;
//! - [`ClusterStatus`] tells `/readyz` and `--unsynced` what is not synced yet,
//!   and which watch has failed (a 403 names the missing RBAC rule).

pub mod discovery;
mod kinds;
mod mesh;
mod once;
mod status;
mod watch;

pub use kinds::{KindApi, Watched, MESH_CONFIG_MAP};
pub use mesh::{effective, MeshConfig, MeshOverrides, ISTIO_AUTO_MTLS_DEFAULT};
pub use once::{list_once, ListError};
pub use status::{ClusterStatus, Served};
pub use watch::{Change, Obj, What};

use super::{EventType, SnapshotStore, SourceObserver, View};
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use anyhow::Context;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch as signal};
use tokio::task::JoinHandle;

/// How reviews are answered before every kind has been listed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unsynced {
    /// Deny the reviews that would be judged, saying mtls-guard is still syncing
    /// (with `failurePolicy: Fail`, nothing unjudged gets in).
    #[default]
    Deny,
    /// Allow them unjudged, with a warning.
    Allow,
}

impl FromStr for Unsynced {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "deny" => Ok(Unsynced::Deny),
            "allow" => Ok(Unsynced::Allow),
            other => Err(format!("expected deny or allow, got {other:?}")),
        }
    }
}

/// Everything the cluster source needs.
#[derive(Clone)]
pub struct ClusterConfig {
    pub client: kube::Client,
    /// Where the `istio` ConfigMap lives (and the default root namespace).
    pub istio_namespace: String,
    /// Mesh settings fixed by flags.
    pub overrides: MeshOverrides,
    /// How often API discovery runs again.
    pub discovery_interval: Duration,
    /// How long a watch may fail before `/readyz` fails.
    pub watch_grace: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("istio_namespace", &self.istio_namespace)
            .field("overrides", &self.overrides)
            .field("discovery_interval", &self.discovery_interval)
            .field("watch_grace", &self.watch_grace)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// The defaults of `serve`'s flags, with `client`.
    pub fn new(client: kube::Client) -> ClusterConfig {
        ClusterConfig {
            client,
            istio_namespace: "istio-system".to_string(),
            overrides: MeshOverrides::default(),
            discovery_interval: Duration::from_secs(30),
            watch_grace: Duration::from_secs(60),
        }
    }

    /// The sync state to hand to [`SnapshotStore::for_cluster`] and [`spawn`].
    pub fn status(&self) -> Arc<ClusterStatus> {
        Arc::new(ClusterStatus::new(&Watched::all(), self.watch_grace))
    }
}

/// Changes applied at most before a publish, so that a long list of queued
/// events does not hold back every publish.
const MAX_BURST: usize = 4096;

/// Runs the cluster source until `stop` turns true: discovery, one watch per
/// served kind, and the indexer that publishes into `store`.
pub fn spawn(
    config: ClusterConfig,
    base: Settings,
    store: SnapshotStore,
    status: Arc<ClusterStatus>,
    observer: Arc<dyn SourceObserver>,
    mut stop: signal::Receiver<bool>,
) -> JoinHandle<()> {
    let (tx, rx) = mpsc::channel(1024);
    let indexer = Indexer {
        working: Snapshot::default(),
        mesh: None,
        generations: BTreeMap::new(),
        base,
        overrides: config.overrides.clone(),
        istio_namespace: config.istio_namespace.clone(),
        store,
        status: status.clone(),
        observer,
        dirty: false,
        published: false,
    };
    tokio::spawn(async move {
        let indexing = tokio::spawn(indexer.run(rx));
        let mut watches = Watches {
            config,
            status,
            tx,
            running: BTreeMap::new(),
            generation: 0,
        };
        loop {
            // Discovery may hang on a slow API server: a stop must not wait for it.
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                _ = watches.discover() => {}
            }
            let wait = if watches.status.synced() || watches.config.discovery_interval.is_zero() {
                watches.config.discovery_interval
            } else {
                // Until the first discovery succeeds, retry sooner.
                watches
                    .config
                    .discovery_interval
                    .min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
            }
        }
        for (_, (_, task)) in std::mem::take(&mut watches.running) {
            task.abort();
        }
        indexing.abort();
    })
}

/// The watches running, by kind, and what they need.
struct Watches {
    config: ClusterConfig,
    status: Arc<ClusterStatus>,
    tx: mpsc::Sender<Change>,
    /// Kind → the `apiVersion` watched and its task.
    running: BTreeMap<Watched, (String, JoinHandle<()>)>,
    generation: u64,
}

impl Watches {
    /// Runs discovery once, then starts, restarts or stops watches to match.
    async fn discover(&mut self) {
        let groups = match discovery::served_groups(&self.config.client).await {
            Ok(groups) => groups,
            Err(e) => {
                let message = e.to_string();
                if self.status.discovery_failed(message.clone()) {
                    tracing::warn!(error = %message, "API discovery failed; the watches keep running, retrying");
                }
                return;
            }
        };
        let kinds = Watched::all();
        let found = discovery::resolve_all(&kinds, &groups);
        // Before any list can land: every kind is now either watched or reset.
        self.status.discovery_done();
        for kind in kinds {
            let watched = self.running.get(&kind).map(|(v, _)| v.clone());
            match found.get(&kind) {
                Some(resource) if watched.as_deref() == Some(resource.api_version.as_str()) => {}
                Some(resource) => {
                    if let Some((_, task)) = self.running.remove(&kind) {
                        task.abort();
                    }
                    self.generation += 1;
                    tracing::info!(kind = %kind, api_version = %resource.api_version, "watching");
                    self.status
                        .set_served(kind, Served::At(resource.api_version.clone()));
                    let task = tokio::spawn(watch::run(
                        self.config.client.clone(),
                        kind,
                        resource.clone(),
                        self.config.istio_namespace.clone(),
                        self.generation,
                        self.tx.clone(),
                        self.status.clone(),
                    ));
                    self.running
                        .insert(kind, (resource.api_version.clone(), task));
                }
                None => {
                    let was_running = self.running.remove(&kind).map(|(_, task)| task.abort());
                    if was_running.is_some() || self.status.served(kind) == Served::Unknown {
                        let api = kind.api();
                        tracing::warn!(
                            kind = %kind,
                            group = api.group,
                            versions = ?api.versions,
                            "API not served: treated as empty (no objects) until discovery finds it"
                        );
                        self.generation += 1;
                        self.status.set_served(kind, Served::Missing);
                        let change = Change {
                            kind,
                            generation: self.generation,
                            what: What::Reset(Vec::new()),
                        };
                        if self.tx.send(change).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The cluster source's working index and how it is published.
struct Indexer {
    working: Snapshot,
    mesh: Option<MeshConfig>,
    /// The newest watch generation seen per kind: changes of older ones are late.
    generations: BTreeMap<Watched, u64>,
    base: Settings,
    overrides: MeshOverrides,
    istio_namespace: String,
    store: SnapshotStore,
    status: Arc<ClusterStatus>,
    observer: Arc<dyn SourceObserver>,
    /// Changed since the last publish.
    dirty: bool,
    published: bool,
}

impl Indexer {
    async fn run(mut self, mut rx: mpsc::Receiver<Change>) {
        while let Some(change) = rx.recv().await {
            self.apply(change);
            for _ in 1..MAX_BURST {
                match rx.try_recv() {
                    Ok(change) => self.apply(change),
                    Err(_) => break,
                }
            }
            self.publish();
        }
    }

    fn apply(&mut self, change: Change) {
        let newest = self.generations.entry(change.kind).or_default();
        if change.generation < *newest {
            return;
        }
        *newest = change.generation;
        let event = match change.what {
            What::Reset(objects) => {
                match change.kind {
                    Watched::Mesh(kind) => {
                        let objects = objects
                            .into_iter()
                            .filter_map(|o| match o {
                                Obj::Mesh(m) => Some(m),
                                Obj::MeshConfig(_) => None,
                            })
                            .collect();
                        self.working.reset(kind, objects);
                        // The listed objects were freed on this thread: a re-list
                        // of every DestinationRule must not leave its peak resident.
                        crate::allocator::release_freed_memory();
                    }
                    Watched::MeshConfig => {
                        self.set_mesh(objects.into_iter().find_map(|o| match o {
                            Obj::MeshConfig(m) => Some(m),
                            Obj::Mesh(_) => None,
                        }));
                    }
                }
                self.status.listed(change.kind);
                EventType::Relist
            }
            What::Apply(Obj::Mesh(object)) => {
                self.working.apply(object);
                EventType::Apply
            }
            What::Apply(Obj::MeshConfig(mesh)) => {
                self.set_mesh(Some(mesh));
                EventType::Apply
            }
            What::Delete { namespace, name } => {
                match change.kind {
                    Watched::Mesh(kind) => self.working.delete(kind, &namespace, &name),
                    Watched::MeshConfig => self.set_mesh(None),
                }
                EventType::Delete
            }
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.observer.watch_event(change.kind.name(), event, now);
        self.dirty = true;
    }

    fn set_mesh(&mut self, mesh: Option<MeshConfig>) {
        if mesh != self.mesh {
            tracing::info!(
                mesh = ?mesh,
                "mesh config ({}/{MESH_CONFIG_MAP}) changed",
                self.istio_namespace
            );
        }
        self.mesh = mesh;
    }

    fn settings(&self) -> Settings {
        effective(
            &self.base,
            &self.overrides,
            self.mesh.as_ref(),
            &self.istio_namespace,
        )
    }

    /// Publishes the working index once every kind has been listed.
    fn publish(&mut self) {
        if !self.dirty || !self.status.synced() {
            return;
        }
        let view = View {
            snapshot: self.working.clone(),
            settings: self.settings(),
        };
        if !self.published {
            for note in view.snapshot.notes() {
                tracing::warn!(note = %note, "snapshot");
            }
            tracing::info!(
                objects = ?view.snapshot.counts(),
                auto_mtls = view.settings.auto_mtls,
                root_namespace = %view.settings.root_namespace,
                "every watched kind is listed: reviews are judged from now on"
            );
            self.published = true;
        }
        self.observer.published(view.snapshot.counts());
        self.store.publish_view(view);
        self.dirty = false;
    }
}

/// A client as kube-rs configures one: `--kubeconfig` (else `$KUBECONFIG`, else
/// `~/.kube/config`) with `--context`, else the in-cluster ServiceAccount.
pub async fn connect(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("using the kubeconfig ($KUBECONFIG or ~/.kube/config)")?,
        None => kube::Config::infer()
            .await
            .context("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a cluster")?,
    };
    tracing::info!(cluster_url = %config.cluster_url, "cluster mode: API server");
    kube::Client::try_from(config).context("making the Kubernetes client")
}
