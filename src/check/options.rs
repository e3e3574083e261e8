//! What `check` is asked to do: the plain options the CLI layer builds from its flags.

use crate::settings::Settings;
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
    /// Files and folders to read; `-` is standard input.
    pub paths: Vec<PathBuf>,
    /// No input file is not an error (by default it is: a mistyped path must not pass).
    pub allow_empty: bool,
    /// The namespace of namespaced objects that have none.
    pub namespace: String,
    pub output: OutputFormat,
    /// Also a line for every rule without findings, and for rules not checked.
    pub verbose: bool,
    pub settings: Settings,
}
