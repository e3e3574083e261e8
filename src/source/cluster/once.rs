//! One list of every watched kind, for `check --cluster`: the snapshot and the
//! settings `serve` would publish after its first sync, without staying to watch.
//!
//! The same discovery, kinds table and object reading as the watches: each kind is
//! listed by kube-runtime's watcher (pages of 500), which is dropped once its
//! initial list is complete, before it would start watching.

use super::discovery;
use super::kinds::Watched;
use super::mesh::{effective, MeshConfig, MeshOverrides};
use super::watch::{self, Obj};
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use crate::source::View;
use futures::StreamExt;
use kube::discovery::ApiResource;
use kube::runtime::watcher::{watcher, Event};

/// Why the cluster could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("API discovery failed: {0}")]
    Discovery(#[source] kube::Error),
    /// A 403 names the RBAC rule to add, as the watches' errors do.
    #[error("listing {kind}: {message}")]
    List { kind: Watched, message: String },
    #[error("listing {0}: the API server ended the list before it was complete")]
    Incomplete(Watched),
}

/// Lists every kind of the table and the `istio` ConfigMap once, and builds the
/// snapshot and the settings (the flags' `base` and `overrides` over the mesh
/// config, as in `serve`'s cluster mode). A kind whose API is not served is empty.
pub async fn list_once(
    client: &kube::Client,
    istio_namespace: &str,
    base: &Settings,
    overrides: &MeshOverrides,
) -> Result<View, ListError> {
    let groups = discovery::served_groups(client)
        .await
        .map_err(ListError::Discovery)?;
    let found = discovery::resolve_all(&Watched::all(), &groups);
    let lists = found.into_iter().map(|(kind, resource)| {
        let client = client.clone();
        async move { list_kind(client, kind, resource, istio_namespace).await }
    });
    let mut objects = Vec::new();
    let mut mesh: Option<MeshConfig> = None;
    for listed in futures::future::join_all(lists).await {
        for obj in listed? {
            match obj {
                Obj::Mesh(o) => objects.push(o),
                Obj::MeshConfig(m) => mesh = Some(m),
            }
        }
    }
    Ok(View {
        snapshot: Snapshot::from_objects(objects),
        settings: effective(base, overrides, mesh.as_ref(), istio_namespace),
    })
}

/// Every object of `kind`, read as the watches read them (objects that do not fit
/// the model are logged and left out). A 404 means the API went away: empty.
async fn list_kind(
    client: kube::Client,
    kind: Watched,
    resource: ApiResource,
    istio_namespace: &str,
) -> Result<Vec<Obj>, ListError> {
    let (api, config) = watch::target(client, kind, &resource, istio_namespace);
    let mut stream = watcher(api, config).boxed();
    let mut listed = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(object)) => listed.extend(watch::read(kind, &resource, object)),
            Ok(Event::InitDone) => return Ok(listed),
            // Not before the list is done; the stream is dropped at InitDone.
            Ok(Event::Apply(_) | Event::Delete(_)) => {}
            Err(error) => {
                if watch::api_status(&error).map(|(code, _)| code) == Some(404) {
                    return Ok(Vec::new());
                }
                return Err(ListError::List {
                    kind,
                    message: watch::describe_error(&error, &resource, kind, istio_namespace),
                });
            }
        }
    }
    Err(ListError::Incomplete(kind))
}
