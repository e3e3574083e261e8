//! Which stored DestinationRules a change can reach (contract section 8): the one
//! place that knows it, for the change review at admission ([`super::review_change`],
//! which knows the object written) and for the stored-rules reconciler's pass
//! (section 9), which only sees the snapshot before and after ([`reached_between`]).
//!
//! A rule's verdict reads its own namespace (its mode label; the rules beside it, for
//! a warning only), the namespace its host resolves to (whether it is known, its
//! services, policies, PeerAuthentications and ingress backends), the root namespace's
//! PeerAuthentications without a selector and its ingress gateway, the MeshPolicies,
//! the gateway index and the settings. Nothing else: so a change reaches the rules
//! whose host can name a service of the namespace it changed (with every wildcard
//! rule: a superset kept simple), the rules naming a service whose Gateway API
//! backends changed, and every rule at the mesh level. The reconciler also judges again
//! the rules stored in a changed namespace (a rule written, the namespace's mode
//! label), which admission reviews as they are written.

use super::change::Change;
use super::exemption::ingress_gateway_present;
use crate::model::{DestinationRule, MeshObject, ObjectKind};
use crate::settings::Settings;
use crate::snapshot::{NamespaceIndex, Snapshot};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// The stored rules a change can reach (a superset: each is judged or compared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    None,
    /// Rules that can name some service of the namespace, and every wildcard rule.
    Namespace(String),
    /// Rules that can name one of these services.
    Services(Vec<(String, String)>),
    /// Every stored rule (a mesh-level change).
    All,
}

impl Reach {
    /// Visits each rule of `snapshot` the reach holds, once.
    pub fn for_each_rule<'a>(
        &self,
        snapshot: &'a Snapshot,
        mut visit: impl FnMut(&'a Arc<DestinationRule>),
    ) {
        match self {
            Reach::None => {}
            Reach::All => snapshot.rules().for_each(visit),
            Reach::Namespace(ns) => snapshot.rules_for_namespace(ns).for_each(visit),
            Reach::Services(services) => {
                let mut seen = HashSet::new();
                for (ns, name) in services {
                    for rule in snapshot.rules_for_service(ns, name) {
                        if seen.insert(Arc::as_ptr(rule)) {
                            visit(rule);
                        }
                    }
                }
            }
        }
    }

    /// The stored rules `change` can reach, knowing its kind (the change review):
    /// a DestinationRule, a Namespace or a webhook backend reaches none, as they
    /// move no other rule's verdict.
    pub(crate) fn of_change(
        before: &Snapshot,
        after: &Snapshot,
        settings: &Settings,
        change: &Change,
    ) -> Reach {
        let object = change.object();
        let ns = object.namespace.clone();
        let root = settings.root_namespace.as_str();
        match object.kind {
            ObjectKind::Policy => Reach::Namespace(ns),
            ObjectKind::MeshPolicy | ObjectKind::IngressClass => Reach::All,
            // The root namespace's PeerAuthentications without a selector are the mesh level.
            ObjectKind::PeerAuthentication if ns == root && root_wide(before, change) => Reach::All,
            ObjectKind::PeerAuthentication => Reach::Namespace(ns),
            ObjectKind::Service => {
                // A Service labelled `istio: ingressgateway` in the root namespace decides
                // whether the Istio ingress gateway is present, for every exemption (a).
                if ns == root && gateway_presence_changed(before, after, settings) {
                    Reach::All
                } else {
                    Reach::Services(vec![(ns, object.name)])
                }
            }
            // The services whose non-mesh Ingress changed.
            ObjectKind::Ingress => Reach::Services(ingress_services(before, after, &ns)),
            ObjectKind::HTTPRoute
            | ObjectKind::GRPCRoute
            | ObjectKind::TLSRoute
            | ObjectKind::TCPRoute
            | ObjectKind::Gateway
            | ObjectKind::GatewayClass
            | ObjectKind::ReferenceGrant => Reach::Services(gateway_services(before, after)),
            ObjectKind::DestinationRule
            | ObjectKind::Namespace
            | ObjectKind::MutatingWebhookConfiguration
            | ObjectKind::ValidatingWebhookConfiguration
            | ObjectKind::APIService => Reach::None,
        }
    }
}

/// Whether a change to a root-namespace PeerAuthentication touches one without a
/// selector (the mesh level), before or after.
pub(crate) fn root_wide(before: &Snapshot, change: &Change) -> bool {
    let object = change.object();
    let was = before.namespace(&object.namespace).is_some_and(|n| {
        n.wide_peer_auths
            .iter()
            .any(|p| p.object.name == object.name)
    });
    let is = match change {
        Change::Apply(MeshObject::PeerAuthentication(pa)) => pa.spec.match_labels().is_none(),
        _ => false,
    };
    was || is
}

/// The services of `namespace` whose non-mesh Ingress backends differ between the
/// two snapshots, sorted.
pub(crate) fn ingress_services(
    before: &Snapshot,
    after: &Snapshot,
    namespace: &str,
) -> Vec<(String, String)> {
    let backends = |s: &Snapshot| s.namespace(namespace).map(|n| n.ingress_backends.clone());
    let (b0, b1) = (
        backends(before).unwrap_or_default(),
        backends(after).unwrap_or_default(),
    );
    let mut services: Vec<(String, String)> = b0
        .iter()
        .filter(|(k, v)| b1.get(*k) != Some(*v))
        .chain(b1.iter().filter(|(k, _)| !b0.contains_key(*k)))
        .map(|(k, _)| (namespace.to_string(), k.to_string()))
        .collect();
    services.sort();
    services.dedup();
    services
}

/// The services whose Gateway API routes and Gateways differ between the snapshots.
pub(crate) fn gateway_services(before: &Snapshot, after: &Snapshot) -> Vec<(String, String)> {
    if std::ptr::eq(before.gateway(), after.gateway()) {
        return Vec::new();
    }
    before.gateway().changed_services(after.gateway())
}

/// Whether the Istio ingress gateway's presence differs: it decides exemption (a)
/// for every service, so such a change reaches every rule.
pub(crate) fn gateway_presence_changed(
    before: &Snapshot,
    after: &Snapshot,
    settings: &Settings,
) -> bool {
    ingress_gateway_present(before, settings) != ingress_gateway_present(after, settings)
}

/// `a` and `b` hold the same entries (the same `Arc`s, in order).
fn same_arcs<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

/// What the changes from one snapshot to another can reach, as the stored-rules
/// reconciler judges them again: every rule, or the rules stored in or aimed at
/// the changed namespaces and those naming the changed services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reached {
    /// Every rule: a mesh-level change, or too many namespaces changed to be worth
    /// picking out.
    pub all: bool,
    /// Namespaces whose index changed, appeared or went away: their own rules (a rule
    /// written, its namespace's mode label) and [`Reach::Namespace`].
    pub namespaces: BTreeSet<String>,
    /// [`Reach::Services`]: services whose Gateway API backends changed.
    pub services: BTreeSet<(String, String)>,
}

impl Reached {
    /// Every rule.
    pub fn all() -> Reached {
        Reached {
            all: true,
            ..Reached::default()
        }
    }

    /// The rules of `snapshot` reached, once each (`None`: every rule).
    pub fn rules<'a>(&self, snapshot: &'a Snapshot) -> Option<Vec<&'a Arc<DestinationRule>>> {
        if self.all {
            return None;
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut visit = |rule: &'a Arc<DestinationRule>| {
            if seen.insert(Arc::as_ptr(rule)) {
                out.push(rule);
            }
        };
        for ns in &self.namespaces {
            snapshot.rules_in(ns).for_each(&mut visit);
            Reach::Namespace(ns.clone()).for_each_rule(snapshot, &mut visit);
        }
        if !self.services.is_empty() {
            Reach::Services(self.services.iter().cloned().collect())
                .for_each_rule(snapshot, &mut visit);
        }
        Some(out)
    }
}

/// When more than this share of the namespaces changed (a re-list, files loaded
/// again), picking the rules out costs more than judging them all.
const MOST_NAMESPACES: f64 = 0.25;

/// What the changes from `before` to `after` can reach.
///
/// Learnt from the snapshots themselves, which keep no change log: each namespace's
/// index is an `Arc` copied on write ([`Snapshot`]), so a namespace whose `Arc` is
/// the same in both holds the same objects. This is sound as long as `before` is
/// kept alive until the comparison: its `Arc`s are then shared, any write makes a
/// new one, and an address cannot be reused. The mesh level is compared by part: the
/// MeshPolicies and the root namespace's PeerAuthentications without a selector (by
/// `Arc`), the ingress gateway's presence, and the gateway index (by `Arc`, then the
/// services whose backends differ). The settings are the caller's to compare (a
/// change reaches every rule). Webhook backends, IngressClasses (a change derives the
/// namespaces with Ingresses again) and notes are read by no verdict.
pub fn reached_between(before: &Snapshot, after: &Snapshot, settings: &Settings) -> Reached {
    if !same_arcs(before.mesh_policies(), after.mesh_policies())
        || gateway_presence_changed(before, after, settings)
    {
        return Reached::all();
    }
    let root = settings.root_namespace.as_str();
    fn wide<'a>(s: &'a Snapshot, root: &str) -> &'a [Arc<crate::snapshot::PeerAuthEntry>] {
        s.namespace(root)
            .map_or(&[][..], |n| n.wide_peer_auths.as_slice())
    }
    if !same_arcs(wide(before, root), wide(after, root)) {
        return Reached::all();
    }
    let mut out = Reached::default();
    let same =
        |a: Option<&NamespaceIndex>, b: &NamespaceIndex| a.is_some_and(|a| std::ptr::eq(a, b));
    let mut known = 0usize;
    for (name, index) in after.namespaces() {
        known += 1;
        if !same(before.namespace(name), index) {
            out.namespaces.insert(name.to_string());
        }
    }
    for (name, _) in before.namespaces() {
        if !after.knows_namespace(name) {
            known += 1;
            out.namespaces.insert(name.to_string());
        }
    }
    let changed = out.namespaces.len();
    if changed > 64 && changed as f64 > known as f64 * MOST_NAMESPACES {
        return Reached::all();
    }
    out.services = gateway_services(before, after).into_iter().collect();
    out
}
