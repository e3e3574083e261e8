//! `mtls-guard check`'s flags.

use super::SettingsArgs;
use crate::check::{CheckOptions, ClusterTarget, OutputFormat};
use crate::loader;
use clap::builder::PossibleValue;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// YAML/JSON files or folders (read recursively: *.yaml, *.yml, *.json), or `-` for
    /// standard input. Policies, Services, Ingresses and Namespaces are read from the
    /// same files as the rules.
    #[arg(
        required_unless_present = "cluster",
        conflicts_with = "cluster",
        value_name = "PATH"
    )]
    pub paths: Vec<PathBuf>,
    /// Exit 0 when no input file is found; by default that is unusable input (exit 2),
    /// so that a mistyped path does not pass.
    #[arg(long, conflicts_with = "cluster")]
    pub allow_empty: bool,
    /// Files: the namespace of namespaced objects that have none, as `kubectl apply -n`
    /// [default: default]. With --cluster: judge only the rules of this namespace
    /// (against the whole cluster) [default: every namespace].
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Also print a line for every rule without findings, and for rules not checked (mode off).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Judge the DestinationRules stored in the cluster instead of files: every kind
    /// `serve` watches is listed once, and the mesh settings come from the `istio`
    /// ConfigMap as in `serve`'s cluster mode (flags win).
    #[arg(long)]
    pub cluster: bool,
    /// --cluster: the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config,
    /// then the in-cluster ServiceAccount).
    #[arg(long, value_name = "FILE", conflicts_with = "paths")]
    pub kubeconfig: Option<PathBuf>,
    /// --cluster: the kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME", conflicts_with = "paths")]
    pub context: Option<String>,
    /// --cluster: the namespace of Istio's `istio` ConfigMap (mesh settings; also the
    /// root namespace when neither the mesh config nor --root-namespace names one).
    #[arg(long, default_value = "istio-system", value_name = "NS")]
    pub istio_namespace: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl From<CheckArgs> for CheckOptions {
    fn from(a: CheckArgs) -> CheckOptions {
        let cluster = a.cluster.then(|| ClusterTarget {
            kubeconfig: a.kubeconfig,
            context: a.context,
            istio_namespace: a.istio_namespace,
            overrides: a.settings.mesh_overrides(),
            namespace: a.namespace.clone(),
        });
        CheckOptions {
            paths: a.paths,
            allow_empty: a.allow_empty,
            namespace: a
                .namespace
                .unwrap_or_else(|| loader::DEFAULT_NAMESPACE.to_string()),
            output: a.output,
            verbose: a.verbose,
            settings: a.settings.into(),
            cluster,
        }
    }
}

impl clap::ValueEnum for OutputFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[OutputFormat::Text, OutputFormat::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            OutputFormat::Text => {
                PossibleValue::new("text").help("One line per finding, then a summary line")
            }
            OutputFormat::Json => PossibleValue::new("json")
                .help("A JSON array of findings (fields documented in docs/codes.md)"),
        })
    }
}
