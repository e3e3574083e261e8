//! mtls-guard: keeps Istio DestinationRule TLS consistent with the mesh's mTLS
//! policies, at admission time.
//!
//! The pure core ([`snapshot`], [`decision`], [`patch`], [`admission`]) does no I/O;
//! the edges ([`loader`], [`check`], [`server`], [`certs`]) stay thin around it.

pub mod admission;
pub mod certs;
pub mod check;
pub mod decision;
pub mod loader;
pub mod model;
pub mod patch;
pub mod server;
pub mod settings;
pub mod snapshot;
