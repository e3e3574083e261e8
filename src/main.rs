//! The `mtls-guard` command: `serve` the admission webhook, `check` files offline,
//! or make `certs` for the webhook. The flags are in [`mtls_guard::cli`].

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: a decision allocates a few small objects per review, and glibc's
/// allocator, on a heap fragmented by a large snapshot and TLS buffers, spent
/// most of a decision tidying free lists (see benches/decision.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    mtls_guard::cli::Cli::parse().run()
}
