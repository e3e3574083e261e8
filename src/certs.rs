//! (being written)
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct CertsArgs {}
pub fn run(_a: CertsArgs) -> ExitCode {
    ExitCode::FAILURE
}
