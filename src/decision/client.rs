//! Client side: the TLS mode a DestinationRule sets for one port and subset
//! (contract section 3).

use crate::model::{ClientTls, DestinationRuleSpec, TrafficPolicy};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientMode {
    IstioMutual,
    Disable,
    Simple,
    Mutual,
    Unset,
    /// A mode the CRD does not allow; never equal to a required mode.
    Invalid(String),
}

/// The values Istio's schema accepts for `tls.mode`, exactly as written there.
pub const TLS_MODES: [&str; 4] = ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];

impl ClientMode {
    /// `tls: {}` (no mode) is DISABLE, Istio's default for a present `tls`. Any
    /// value but the four of [`TLS_MODES`] (`istio_mutual`, ` DISABLE`) is invalid.
    pub fn of(tls: &ClientTls) -> ClientMode {
        match tls.mode.as_deref() {
            None => ClientMode::Disable,
            Some("ISTIO_MUTUAL") => ClientMode::IstioMutual,
            Some("DISABLE") => ClientMode::Disable,
            Some("SIMPLE") => ClientMode::Simple,
            Some("MUTUAL") => ClientMode::Mutual,
            Some(m) => ClientMode::Invalid(m.to_string()),
        }
    }

    /// The value written into `tls.mode`.
    pub fn as_str(&self) -> &str {
        match self {
            ClientMode::IstioMutual => "ISTIO_MUTUAL",
            ClientMode::Disable => "DISABLE",
            ClientMode::Simple => "SIMPLE",
            ClientMode::Mutual => "MUTUAL",
            ClientMode::Unset => "UNSET",
            ClientMode::Invalid(m) => m,
        }
    }
}

impl fmt::Display for ClientMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A place in a rule that holds a `trafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsScope {
    Top,
    /// Index into `spec.subsets`.
    Subset(usize),
}

/// Where a scope's client mode came from: the field a fix must change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientSource {
    /// The scope's `trafficPolicy.tls`, or its absence (UNSET).
    ScopeTls(TlsScope),
    /// Entry `.1` of the scope's `trafficPolicy.portLevelSettings`.
    PortEntry(TlsScope, usize),
}

impl ClientSource {
    /// The JSON pointer of the `trafficPolicy` that holds the field.
    pub fn traffic_policy_pointer(scope: TlsScope) -> String {
        match scope {
            TlsScope::Top => "/spec/trafficPolicy".to_string(),
            TlsScope::Subset(i) => format!("/spec/subsets/{i}/trafficPolicy"),
        }
    }

    /// Where the field sits, as a person reads it (`spec.subsets[v2].trafficPolicy.tls`).
    pub fn describe(&self, spec: &DestinationRuleSpec) -> String {
        match *self {
            ClientSource::ScopeTls(s) => format!("{}.tls", Self::describe_scope(spec, s)),
            ClientSource::PortEntry(s, j) => {
                format!(
                    "{}.portLevelSettings[{j}].tls",
                    Self::describe_scope(spec, s)
                )
            }
        }
    }

    /// A scope's `trafficPolicy`, as a person reads it (`spec.subsets[v2].trafficPolicy`).
    pub fn describe_scope(spec: &DestinationRuleSpec, scope: TlsScope) -> String {
        match scope {
            TlsScope::Top => "spec.trafficPolicy".to_string(),
            TlsScope::Subset(i) => {
                let name = spec.subsets.get(i).map_or("", |s| s.name.as_str());
                format!("spec.subsets[{name}].trafficPolicy")
            }
        }
    }
}

/// The mode one `trafficPolicy` gives `port`, if it says anything about it: a
/// port entry replaces the scope's own `tls` wholesale, even without `tls` itself.
fn scope_mode(
    tp: &TrafficPolicy,
    scope: TlsScope,
    port: Option<u32>,
) -> Option<(ClientMode, ClientSource)> {
    if let Some(j) = port.and_then(|p| tp.port_entry(p)) {
        let mode = tp.port_level_settings[j]
            .tls
            .as_ref()
            .map_or(ClientMode::Unset, ClientMode::of);
        return Some((mode, ClientSource::PortEntry(scope, j)));
    }
    tp.tls
        .as_ref()
        .map(|tls| (ClientMode::of(tls), ClientSource::ScopeTls(scope)))
}

/// The client mode for `port` (`None`: a port the rule does not name) and
/// `subset` (an index into `spec.subsets`, or the rule itself).
pub fn client_mode(
    spec: &DestinationRuleSpec,
    port: Option<u32>,
    subset: Option<usize>,
) -> (ClientMode, ClientSource) {
    let own = subset.and_then(|i| {
        let tp = spec.subsets.get(i)?.traffic_policy.as_ref()?;
        scope_mode(tp, TlsScope::Subset(i), port)
    });
    own.or_else(|| {
        spec.traffic_policy
            .as_ref()
            .and_then(|tp| scope_mode(tp, TlsScope::Top, port))
    })
    .unwrap_or((ClientMode::Unset, ClientSource::ScopeTls(TlsScope::Top)))
}

/// A `tls.mode` that Istio's schema does not accept, and the field that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMode {
    pub source: ClientSource,
    pub mode: String,
}

impl InvalidMode {
    /// The message `check` prints and the validating webhook denies with.
    pub fn message(&self, spec: &DestinationRuleSpec) -> String {
        format!(
            "{}.mode {:?} is not a TLS mode Istio accepts; use {}",
            self.source.describe(spec),
            self.mode,
            accepted_modes()
        )
    }
}

/// "DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL".
pub fn accepted_modes() -> String {
    let (last, rest) = TLS_MODES.split_last().expect("four modes");
    format!("{} or {last}", rest.join(", "))
}

/// Every `tls.mode` of the rule that Istio's schema does not accept, in document
/// order, whether or not a port the rule covers uses it.
pub fn invalid_modes(spec: &DestinationRuleSpec) -> Vec<InvalidMode> {
    let mut out = Vec::new();
    let scopes = std::iter::once((TlsScope::Top, spec.traffic_policy.as_deref())).chain(
        spec.subsets
            .iter()
            .enumerate()
            .map(|(i, s)| (TlsScope::Subset(i), s.traffic_policy.as_deref())),
    );
    for (scope, tp) in scopes {
        let Some(tp) = tp else { continue };
        let fields = std::iter::once((ClientSource::ScopeTls(scope), tp.tls.as_ref())).chain(
            tp.port_level_settings
                .iter()
                .enumerate()
                .map(|(j, e)| (ClientSource::PortEntry(scope, j), e.tls.as_ref())),
        );
        for (source, tls) in fields {
            if let Some(ClientMode::Invalid(mode)) = tls.map(ClientMode::of) {
                out.push(InvalidMode { source, mode });
            }
        }
    }
    out
}
