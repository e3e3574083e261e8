//! Several DestinationRules for one host (contract section 8, the multi-rule warning):
//! Istio applies the traffic policy of the oldest rule in the namespace and ignores
//! the others'. The newer rule is still judged as written: the older one may go.

use super::host::{resolve_host, HostTarget};
use super::verdict::{Warning, WarningCode};
use crate::model::DestinationRule;
use crate::snapshot::{age_cmp, Snapshot};
use std::cmp::Ordering;

/// What "the same host after resolution" compares: one service, one namespace-wide
/// wildcard, or else the host as written (the same FQDN or the same wildcard).
#[derive(Debug, PartialEq, Eq)]
enum Covered {
    Service(String, String),
    Namespace(String),
    Written(String),
}

fn covered(target: HostTarget, host: &str) -> Covered {
    match target {
        HostTarget::Service {
            namespace, name, ..
        } => Covered::Service(namespace, name),
        HostTarget::NamespaceWide { namespace } => Covered::Namespace(namespace),
        HostTarget::MeshWide | HostTarget::OutOfScope => {
            Covered::Written(host.trim().trim_end_matches('.').to_ascii_lowercase())
        }
    }
}

/// False when `host` cannot resolve to `key`: a service's host starts with its name, a
/// namespace-wide one with `*.`; a host kept as written must be written the same.
fn may_cover(key: &Covered, host: &str) -> bool {
    let host = host.trim();
    match key {
        Covered::Service(_, name) => host
            .split('.')
            .next()
            .is_some_and(|first| first.eq_ignore_ascii_case(name)),
        Covered::Namespace(_) => host.starts_with("*."),
        Covered::Written(written) => host.trim_end_matches('.').eq_ignore_ascii_case(written),
    }
}

/// The warning for `rule` (admitted in `namespace`, its host resolved to `target`) when
/// an older rule of that namespace covers the same host and sets a `trafficPolicy`.
///
/// Only the rules of the rule's own namespace are read, and only those whose host may
/// name the same thing are resolved again.
pub(super) fn older_rule_warning(
    snapshot: &Snapshot,
    rule: &DestinationRule,
    namespace: &str,
    target: &HostTarget,
    cluster_domain: &str,
) -> Option<Warning> {
    let name = rule.metadata.name.as_deref().unwrap_or_default();
    let age = (rule.metadata.created(), name);
    let key = covered(target.clone(), &rule.spec.host);
    let older = snapshot
        .rules_in(namespace)
        .filter(|r| r.spec.traffic_policy.is_some())
        .filter(|r| r.metadata.name.as_deref() != Some(name))
        .map(|r| {
            (
                r,
                (
                    r.metadata.created(),
                    r.metadata.name.as_deref().unwrap_or_default(),
                ),
            )
        })
        .filter(|(_, a)| age_cmp(*a, age) == Ordering::Less)
        .filter(|(r, _)| {
            // A string test first: most rules of a namespace name other hosts.
            may_cover(&key, &r.spec.host) && {
                let t = resolve_host(snapshot, &r.spec.host, namespace, cluster_domain);
                covered(t, &r.spec.host) == key
            }
        })
        .min_by(|(_, a), (_, b)| age_cmp(*a, *b))?;
    let (older, _) = older;
    let older_name = older.metadata.name.as_deref().unwrap_or_default();
    Some(Warning {
        code: WarningCode::OlderRuleForHost,
        message: format!(
            "DestinationRule {namespace}/{older_name} is older and also sets a trafficPolicy for host {}: Istio applies that rule's traffic policy and ignores this one's (this rule is still judged as written, since the older one may go)",
            older.spec.host
        ),
    })
}
