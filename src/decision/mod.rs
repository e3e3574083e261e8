//! The pure decision core: given a snapshot, the settings and a DestinationRule,
//! what every (port, subset) scope of the rule must look like and whether it does.
//!
//! No I/O and no async: the webhook, the `check` command and the benchmarks all
//! call [`judge`] the same way. Each submodule holds one section of the contract
//! (`docs/behaviour.md`).

pub mod backend;
pub mod change;
mod client;
pub mod exemption;
mod host;
mod judge;
pub mod policy_object;
pub mod reach;
mod server;
mod shadow;
mod verdict;

pub use backend::{strict_backends, StrictBackend};
pub use change::{review_change, AffectedRule, Change, ChangeReview, ScopeChange};
pub use client::{
    accepted_modes, invalid_modes, ClientMode, ClientSource, InvalidMode, TlsScope, TLS_MODES,
};
pub use exemption::{Exemption, IngressVia};
pub use host::{resolve_host, rules_with_host, HostTarget};
pub use judge::judge;
pub use reach::{reached_between, Reach, Reached};
pub use server::{server_mode, Decider, Level, ServerDecision, ServerMode, Subject};
pub use verdict::{Finding, Group, Outcome, PortScope, Required, Verdict, Warning, WarningCode};
