//! The watches of the cluster source: one per kind of the model's table
//! ([`crate::model::KINDS`]), and the `istio` ConfigMap (mesh settings) beside them.
//! A kind added to the table is watched without a change here.

use crate::model::ObjectKind;
use std::fmt;

/// Where a watched kind is served, as the API server names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindApi {
    /// Empty for the core group.
    pub group: &'static str,
    /// The versions mtls-guard reads, oldest first.
    pub versions: &'static [&'static str],
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// One watch of the cluster source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Watched {
    /// Objects of a kind the snapshot indexes.
    Mesh(ObjectKind),
    /// The `istio` ConfigMap in the Istio namespace (mesh settings).
    MeshConfig,
}

/// The name of the ConfigMap holding the mesh config, in the Istio namespace.
pub const MESH_CONFIG_MAP: &str = "istio";

const CONFIG_MAP: KindApi = KindApi {
    group: "",
    versions: &["v1"],
    kind: "ConfigMap",
    plural: "configmaps",
    namespaced: true,
};

impl Watched {
    /// Every watch, in a fixed order (the order of logs and `/readyz`).
    pub fn all() -> Vec<Watched> {
        ObjectKind::all()
            .map(Watched::Mesh)
            .chain([Watched::MeshConfig])
            .collect()
    }

    pub fn api(self) -> KindApi {
        match self {
            Watched::Mesh(kind) => {
                let info = kind.info();
                KindApi {
                    group: info.group,
                    versions: info.versions,
                    kind: info.name,
                    plural: info.plural,
                    namespaced: info.namespaced,
                }
            }
            Watched::MeshConfig => CONFIG_MAP,
        }
    }

    /// The `kind` label of metrics and the name in logs.
    pub fn name(self) -> &'static str {
        self.api().kind
    }
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
