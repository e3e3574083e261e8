//! What `check` is asked to do: the plain options the CLI layer builds from its flags.

use crate::settings::Settings;
use crate::source::MeshOverrides;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One line per finding, then a summary line.
    #[default]
    Text,
    /// A JSON array of findings (fields documented in docs/codes.md).
    Json,
}

/// What `check` was asked to do (built by the CLI layer from its flags).
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Files and folders to read; `-` is standard input. Empty with `cluster`.
    pub paths: Vec<PathBuf>,
    /// No input file is not an error (by default it is: a mistyped path must not pass).
    pub allow_empty: bool,
    /// The namespace of namespaced objects that have none.
    pub namespace: String,
    pub output: OutputFormat,
    /// Also a line for every rule without findings, and for rules not checked.
    pub verbose: bool,
    pub settings: Settings,
    /// `--cluster`: judge the rules stored in a cluster instead of files.
    pub cluster: Option<ClusterTarget>,
}

/// `check --cluster`: which cluster, and which of its rules.
#[derive(Debug, Clone, Default)]
pub struct ClusterTarget {
    /// The kubeconfig file and context (kube-rs's defaults when `None`).
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Where the `istio` ConfigMap (mesh settings) lives.
    pub istio_namespace: String,
    /// The mesh settings fixed by flags; the rest come from the mesh config.
    pub overrides: MeshOverrides,
    /// Judge only the rules of this namespace (against the whole cluster); `None`: all.
    pub namespace: Option<String>,
}
