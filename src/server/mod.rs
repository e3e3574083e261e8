//! (being written)
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}
pub fn run(_a: ServeArgs) -> ExitCode {
    ExitCode::FAILURE
}
