//! (being written)
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct CheckArgs {}
pub fn run(_a: CheckArgs) -> ExitCode {
    ExitCode::FAILURE
}
