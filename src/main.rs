//! The `mtls-guard` command: `serve` the admission webhook, `check` files offline,
//! or make `certs` for the webhook.

use clap::{Parser, Subcommand};

/// mimalloc: a decision allocates a few small objects per review, and glibc's
/// allocator, on a heap fragmented by a large snapshot and TLS buffers, spent
/// most of a decision tidying free lists (see benches/decision.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mtls-guard",
    version,
    about = "Keeps Istio DestinationRule TLS consistent with mTLS policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge the DestinationRules in YAML/JSON files against the policies beside them.
    Check(mtls_guard::check::CheckArgs),
    /// Serve the mutating and validating admission webhook over TLS.
    Serve(Box<mtls_guard::server::ServeArgs>),
    /// Write a CA and a serving certificate for the webhook's Service.
    Certs(mtls_guard::certs::CertsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => mtls_guard::check::run(args),
        Command::Serve(args) => mtls_guard::server::run(*args),
        Command::Certs(args) => mtls_guard::certs::run(args),
    }
}
