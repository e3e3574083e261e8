//! mtls-guard: keeps Istio DestinationRule TLS consistent with the mesh's mTLS
//! policies, at admission time.
//!
//! The pure core ([`snapshot`], [`decision`], [`enforcement`], [`patch`], [`admission`],
//! [`audit`], the planning of [`reconcile`])
//! does no I/O; the edges ([`loader`], [`check`], [`source`], [`server`], [`certs`]) stay thin
//! around it, and [`cli`] turns the command line into their plain options.
//!
//! "The contract" and "section N" in comments and tests mean the behaviour described
//! in `docs/behaviour.md`, whose section numbers they follow.

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod certs;
pub mod check;
pub mod cli;
pub mod decision;
pub mod enforcement;
pub mod gateway;
pub mod loader;
pub mod model;
pub mod patch;
pub mod reconcile;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod source;
