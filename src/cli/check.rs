//! `mtls-guard check`'s flags.

use super::SettingsArgs;
use crate::check::{CheckOptions, OutputFormat};
use crate::loader;
use clap::builder::PossibleValue;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// YAML/JSON files or folders (read recursively: *.yaml, *.yml, *.json), or `-` for
    /// standard input. Policies, Services, Ingresses and Namespaces are read from the
    /// same files as the rules.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Exit 0 when no input file is found; by default that is unusable input (exit 2),
    /// so that a mistyped path does not pass.
    #[arg(long)]
    pub allow_empty: bool,
    /// The namespace of namespaced objects that have none, as `kubectl apply -n`.
    #[arg(short = 'n', long, default_value = loader::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Also print a line for every rule without findings, and for rules not checked (mode off).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl From<CheckArgs> for CheckOptions {
    fn from(a: CheckArgs) -> CheckOptions {
        CheckOptions {
            paths: a.paths,
            allow_empty: a.allow_empty,
            namespace: a.namespace,
            output: a.output,
            verbose: a.verbose,
            settings: a.settings.into(),
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
