//! Changes to the other side of the pair (contract section 8): a Policy, MeshPolicy,
//! PeerAuthentication, Service, Ingress, IngressClass or Gateway API object written or
//! deleted can break stored DestinationRules, or leave them behind (the mutating
//! webhook only acts when a rule itself is written).
//!
//! Pure: the snapshot before, the change and the settings in; the rules it breaks and
//! leaves behind out. The snapshot after the change is a clone of the one before
//! with the change applied (cheap: the snapshot is a persistent index).

use super::backend::{newly_strict, StrictBackend};
use super::client::{client_mode, ClientMode};
use super::host::{resolve_host, HostTarget};
use super::judge::{outcome, port_sides, required_mode, PortSide};
use super::reach::{root_wide, Reach};
use super::verdict::{Outcome, PortScope, Required};
use crate::enforcement::{self, Mode};
use crate::model::{DestinationRule, MeshObject, ObjectKind, ObjectRef, PeerMtlsMode, PolicyMode};
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use std::fmt::Write as _;
use std::sync::Arc;

/// At most this many rules are named in each list of a warning; a count follows.
pub const LISTED_RULES: usize = 10;

/// One change to review.
#[derive(Debug, Clone)]
pub enum Change {
    /// CREATE or UPDATE: the object as it will be stored.
    Apply(MeshObject),
    /// DELETE of the object of `kind` named `namespace/name` (cluster-scoped kinds: an
    /// empty namespace); `old` is the object removed, when the request carries it.
    Delete {
        kind: ObjectKind,
        namespace: String,
        name: String,
        old: Option<MeshObject>,
    },
}

impl Change {
    /// The object changed.
    pub fn object(&self) -> ObjectRef {
        match self {
            Change::Apply(obj) => ObjectRef {
                kind: obj.kind(),
                namespace: obj.namespace().to_string(),
                name: obj.name().to_string(),
            },
            Change::Delete {
                kind,
                namespace,
                name,
                ..
            } => ObjectRef {
                kind: *kind,
                namespace: namespace.clone(),
                name: name.clone(),
            },
        }
    }

    /// The object as it is written (CREATE, UPDATE) or was stored (DELETE).
    fn written(&self) -> Option<&MeshObject> {
        match self {
            Change::Apply(obj) => Some(obj),
            Change::Delete { old, .. } => old.as_ref(),
        }
    }

    /// How messages name the change: `PeerAuthentication bookinfo/default (STRICT)`,
    /// and for a delete `deleting Policy bookinfo/disable-mtls-productpage (PLAINTEXT)`.
    pub fn label(&self) -> String {
        let mode = match self.written() {
            Some(MeshObject::Policy(p) | MeshObject::MeshPolicy(p)) => Some(match p.spec.mode() {
                PolicyMode::Strict => "STRICT",
                PolicyMode::Permissive => "PERMISSIVE",
                PolicyMode::Plaintext => "PLAINTEXT",
            }),
            Some(MeshObject::PeerAuthentication(pa)) => Some(match pa.spec.mode() {
                PeerMtlsMode::Strict => "STRICT",
                PeerMtlsMode::Permissive => "PERMISSIVE",
                PeerMtlsMode::Disable => "DISABLE",
                PeerMtlsMode::Unset => "UNSET",
            }),
            _ => None,
        };
        let mut label = match self {
            Change::Apply(_) => self.object().to_string(),
            Change::Delete { .. } => format!("deleting {}", self.object()),
        };
        if let Some(mode) = mode {
            let _ = write!(label, " ({mode})");
        }
        label
    }

    /// The snapshot as it would be after the change.
    pub fn after(&self, before: &Snapshot) -> Snapshot {
        let mut after = before.clone();
        match self {
            Change::Apply(obj) => after.apply(obj.clone()),
            Change::Delete {
                kind,
                namespace,
                name,
                ..
            } => after.delete(*kind, namespace, name),
        }
        after
    }
}

/// One (port, subset) scope of a rule whose verdict the change moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeChange {
    pub port: PortScope,
    /// The subset's name; `None` for the rule itself.
    pub subset: Option<String>,
    pub client: ClientMode,
    pub before: Outcome,
    pub after: Outcome,
    /// The mode required after the change.
    pub required: Required,
}

impl ScopeChange {
    /// The mode the scope needs after the change (for a conflict, the required one; for
    /// a fill or patch, the one the mutating webhook would write).
    pub fn needs(&self) -> Option<&ClientMode> {
        match (&self.after, &self.required) {
            (Outcome::Fill(m) | Outcome::Patch(m), _) => Some(m),
            (_, Required::Mode(m)) => Some(m),
            (_, Required::Any) => None,
        }
    }
}

/// A stored rule the change affects, with the scopes it moves (of one kind: broken,
/// or left behind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedRule {
    pub rule: ObjectRef,
    /// The host as messages name it: `None` when the host is the Service of the
    /// rule's own name and namespace (the usual case), else the host (FQDN for a service).
    pub host: Option<String>,
    /// The mode of the rule's namespace (never `off`: those rules are left out).
    pub mode: Mode,
    pub scopes: Vec<ScopeChange>,
}

/// What a change does to the stored rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeReview {
    pub object: ObjectRef,
    /// How messages name the change ([`Change::label`]).
    pub label: String,
    /// Rules with a scope that goes from ok, fill or patch to conflict.
    pub broken: Vec<AffectedRule>,
    /// Rules with a scope that goes to fill or patch, or whose fill or patch now
    /// needs another mode.
    pub left_behind: Vec<AffectedRule>,
    /// Webhook and APIService backends the change puts under STRICT.
    pub backends: Vec<StrictBackend>,
}

impl ChangeReview {
    /// Whether `--deny-breaking-changes` denies the change: it breaks a rule in `enforce`.
    pub fn denied(&self, settings: &Settings) -> bool {
        settings.deny_breaking_changes && self.broken.iter().any(|r| r.mode == Mode::Enforce)
    }

    /// The one message of the change (contract section 8), or `None` when it breaks
    /// and leaves behind nothing.
    pub fn message(&self) -> Option<String> {
        let count = |n: usize| {
            if n == 1 {
                "1 DestinationRule".to_string()
            } else {
                format!("{n} DestinationRules")
            }
        };
        let mut parts = Vec::new();
        if !self.broken.is_empty() {
            parts.push(format!(
                "{} breaks {}: {}",
                self.label,
                count(self.broken.len()),
                listing(&self.broken)
            ));
        }
        if !self.left_behind.is_empty() {
            let who = if parts.is_empty() {
                self.label.as_str()
            } else {
                "It also"
            };
            parts.push(format!(
                "{who} leaves {} behind: {} (the mutating webhook changes a rule only when the rule is written: apply {} again)",
                count(self.left_behind.len()),
                listing(&self.left_behind),
                if self.left_behind.len() == 1 { "it" } else { "them" },
            ));
        }
        (!parts.is_empty()).then(|| parts.join(". "))
    }
}

/// `ns/name[ host H] <scopes> (tls C, needs M)`, at most [`LISTED_RULES`], then a count.
fn listing(rules: &[AffectedRule]) -> String {
    let mut out: Vec<String> = rules.iter().take(LISTED_RULES).map(entry).collect();
    if rules.len() > LISTED_RULES {
        out.push(format!("and {} more", rules.len() - LISTED_RULES));
    }
    out.join(", ")
}

fn entry(rule: &AffectedRule) -> String {
    let mut text = format!("{}/{}", rule.rule.namespace, rule.rule.name);
    if let Some(host) = &rule.host {
        let _ = write!(text, " host {host}");
    }
    // Scopes that share a client mode and a needed mode go together, in order.
    let mut groups: Vec<(&ClientMode, Option<&ClientMode>, Vec<&ScopeChange>)> = Vec::new();
    for s in &rule.scopes {
        match groups
            .iter_mut()
            .find(|(c, n, _)| *c == &s.client && *n == s.needs())
        {
            Some((_, _, members)) => members.push(s),
            None => groups.push((&s.client, s.needs(), vec![s])),
        }
    }
    let only_other = rule.scopes.iter().all(|s| s.port == PortScope::Other);
    let groups: Vec<String> = groups
        .into_iter()
        .map(|(client, needs, members)| {
            let client = match client {
                ClientMode::Unset => "no tls".to_string(),
                c => format!("tls {c}"),
            };
            let needs = needs.map_or_else(|| "any mode".to_string(), ToString::to_string);
            format!(
                "{} ({client}, needs {needs})",
                scopes_text(&members, only_other)
            )
        })
        .collect();
    let _ = write!(text, " {}", groups.join("; "));
    text
}

/// `port 9080 and subsets v1, v2`, `port 9080 subset v2`, one port after another.
fn scopes_text(members: &[&ScopeChange], only_other: bool) -> String {
    let mut ports: Vec<(&PortScope, bool, Vec<&str>)> = Vec::new();
    for s in members {
        let i = match ports.iter().position(|(p, _, _)| *p == &s.port) {
            Some(i) => i,
            None => {
                ports.push((&s.port, false, Vec::new()));
                ports.len() - 1
            }
        };
        match &s.subset {
            None => ports[i].1 = true,
            Some(name) => ports[i].2.push(name),
        }
    }
    let texts: Vec<String> = ports
        .into_iter()
        .map(|(port, itself, subsets)| {
            let port = if only_other {
                "every port".to_string()
            } else {
                port.to_string()
            };
            let word = if subsets.len() == 1 {
                "subset"
            } else {
                "subsets"
            };
            match (itself, subsets.is_empty()) {
                (_, true) => port,
                (true, false) => format!("{port} and {word} {}", subsets.join(", ")),
                (false, false) => format!("{port} {word} {}", subsets.join(", ")),
            }
        })
        .collect();
    texts.join("; ")
}

/// A change at the mesh level: a MeshPolicy, or a root-namespace PeerAuthentication
/// without a selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MeshLevel {
    PeerAuthentication,
    MeshPolicy,
}

impl MeshLevel {
    fn of(before: &Snapshot, settings: &Settings, change: &Change) -> Option<MeshLevel> {
        let object = change.object();
        match object.kind {
            ObjectKind::MeshPolicy => Some(MeshLevel::MeshPolicy),
            ObjectKind::PeerAuthentication
                if object.namespace == settings.root_namespace && root_wide(before, change) =>
            {
                Some(MeshLevel::PeerAuthentication)
            }
            _ => None,
        }
    }

    /// Whether the mesh level can decide a server mode in namespace `ns` (other than
    /// the root namespace, which the change leaves as it was). When it cannot, no rule
    /// aimed at `ns` can move, and none is compared: this is what keeps a mesh-level
    /// change fast (section 2: the most specific level decides).
    fn reaches(self, before: &Snapshot, settings: &Settings, ns: &str) -> bool {
        let root = settings.root_namespace.as_str();
        if ns == root {
            return true;
        }
        let index = before.namespace(ns);
        match self {
            // A namespace-wide PeerAuthentication that sets a mode decides first.
            MeshLevel::PeerAuthentication => !index.is_some_and(|n| {
                n.wide_peer_auths
                    .first()
                    .is_some_and(|p| p.mode != PeerMtlsMode::Unset)
            }),
            // PeerAuthentication decides alone wherever one applies; then a namespace's
            // Policy `default` decides before the MeshPolicy.
            MeshLevel::MeshPolicy => {
                let root_pa = before
                    .namespace(root)
                    .is_some_and(|n| !n.wide_peer_auths.is_empty());
                !root_pa
                    && !index.is_some_and(|n| {
                        !n.wide_peer_auths.is_empty() || !n.default_policies.is_empty()
                    })
            }
        }
    }
}

/// Reviews `change` against the snapshot `before` it (contract section 8).
pub fn review_change(before: &Snapshot, settings: &Settings, change: &Change) -> ChangeReview {
    let after = change.after(before);
    let mut review = ChangeReview {
        object: change.object(),
        label: change.label(),
        broken: Vec::new(),
        left_behind: Vec::new(),
        backends: Vec::new(),
    };
    // Only these kinds decide server modes.
    if matches!(
        review.object.kind,
        ObjectKind::Policy
            | ObjectKind::MeshPolicy
            | ObjectKind::PeerAuthentication
            | ObjectKind::Service
    ) {
        review.backends = newly_strict(before, &after, settings);
    }
    let level = MeshLevel::of(before, settings, change);
    let reaches = |ns: &str| level.is_none_or(|l| l.reaches(before, settings, ns));
    let mut visit = |rule: &Arc<DestinationRule>| {
        let ns = rule.metadata.namespace.as_deref().unwrap_or_default();
        let mode = enforcement::mode_for(before, settings, ns);
        if !mode.judges() {
            return;
        }
        if let Some((broken, left)) = compare(before, &after, settings, rule, &reaches) {
            let host = own_host(before, settings, rule);
            let affected = |scopes| AffectedRule {
                rule: ObjectRef {
                    kind: ObjectKind::DestinationRule,
                    namespace: ns.to_string(),
                    name: rule.metadata.name.clone().unwrap_or_default(),
                },
                host: host.clone(),
                mode,
                scopes,
            };
            if !broken.is_empty() {
                review.broken.push(affected(broken));
            }
            if !left.is_empty() {
                review.left_behind.push(affected(left));
            }
        }
    };
    Reach::of_change(before, &after, settings, change).for_each_rule(before, &mut visit);
    // Namespaces come in no particular order from the index: name order.
    let order = |r: &AffectedRule| (r.rule.namespace.clone(), r.rule.name.clone());
    review.broken.sort_by_key(order);
    review.left_behind.sort_by_key(order);
    review
}

/// `None` when the rule's host is the Service of its own name and namespace.
fn own_host(snapshot: &Snapshot, settings: &Settings, rule: &DestinationRule) -> Option<String> {
    let ns = rule.metadata.namespace.as_deref().unwrap_or_default();
    let name = rule.metadata.name.as_deref().unwrap_or_default();
    match resolve_host(snapshot, &rule.spec.host, ns, &settings.cluster_domain) {
        HostTarget::Service {
            namespace,
            name: service,
            ..
        } if namespace == ns && service == name => None,
        HostTarget::Service {
            namespace,
            name: service,
            ..
        } => Some(format!(
            "{service}.{namespace}.svc.{}",
            settings.cluster_domain
        )),
        _ => Some(rule.spec.host.clone()),
    }
}

/// What decides each scope's outcome: per port, the required mode and whether the
/// port is exempt (the client modes are the rule's own, the same before and after).
fn decisive(sides: &[PortSide]) -> impl Iterator<Item = (Option<u32>, Required, bool)> + '_ {
    sides.iter().map(|(port, server, ex)| {
        (
            port.number(),
            required_mode(server, ex.as_ref()),
            ex.is_some(),
        )
    })
}

/// One scope's verdict.
struct Scope {
    port: PortScope,
    subset: Option<usize>,
    client: ClientMode,
    required: Required,
    outcome: Outcome,
}

/// Every scope's verdict, as [`super::judge`] gives it, from the ports' sides.
fn scopes(rule: &DestinationRule, sides: Vec<PortSide>, auto_mtls: bool) -> Vec<Scope> {
    let spec = &rule.spec;
    let mut out = Vec::with_capacity(sides.len() * (spec.subsets.len() + 1));
    for (port, server, ex) in sides {
        let required = required_mode(&server, ex.as_ref());
        for k in 0..=spec.subsets.len() {
            let subset = k.checked_sub(1);
            let (client, _) = client_mode(spec, port.number(), subset);
            let outcome = outcome(&client, &required, ex.is_some(), auto_mtls);
            out.push(Scope {
                port: port.clone(),
                subset,
                client,
                required: required.clone(),
                outcome,
            });
        }
    }
    out
}

/// The scopes of `rule` the change breaks and leaves behind; `None` when the change
/// cannot move any of its verdicts.
fn compare(
    before: &Snapshot,
    after: &Snapshot,
    settings: &Settings,
    rule: &DestinationRule,
    reaches: &dyn Fn(&str) -> bool,
) -> Option<(Vec<ScopeChange>, Vec<ScopeChange>)> {
    let ns = rule.metadata.namespace.as_deref().unwrap_or_default();
    let domain = &settings.cluster_domain;
    let t0 = resolve_host(before, &rule.spec.host, ns, domain);
    let t1 = resolve_host(after, &rule.spec.host, ns, domain);
    if t0 == HostTarget::OutOfScope && t1 == HostTarget::OutOfScope {
        return None;
    }
    // A namespace the change cannot reach (a mesh-level change under a namespace's own policy).
    let aimed_at = match &t0 {
        HostTarget::Service { namespace, .. } | HostTarget::NamespaceWide { namespace } => {
            Some(namespace.as_str())
        }
        HostTarget::MeshWide | HostTarget::OutOfScope => None,
    };
    if t0 == t1 && aimed_at.is_some_and(|n| !reaches(n)) {
        return None;
    }
    let mut scratch = Vec::new();
    let s0 = port_sides(before, settings, rule, &t0, &mut scratch);
    scratch.clear();
    let s1 = port_sides(after, settings, rule, &t1, &mut scratch);
    if t0 == t1 && s0.len() == s1.len() && decisive(&s0).eq(decisive(&s1)) {
        return None;
    }
    let old = scopes(rule, s0, settings.auto_mtls);
    let new = scopes(rule, s1, settings.auto_mtls);
    let spec = &rule.spec;
    let (mut broken, mut left) = (Vec::new(), Vec::new());
    for s in new {
        // The same port and subset before; else what the rule had for "every other port".
        let was = old
            .iter()
            .find(|o| o.subset == s.subset && o.port.number() == s.port.number())
            .or_else(|| {
                old.iter()
                    .find(|o| o.subset == s.subset && o.port == PortScope::Other)
            })
            .map_or(Outcome::Ok, |o| o.outcome.clone());
        let is_broken = s.outcome == Outcome::Conflict
            && matches!(was, Outcome::Ok | Outcome::Fill(_) | Outcome::Patch(_));
        let is_left = matches!(s.outcome, Outcome::Fill(_) | Outcome::Patch(_)) && was != s.outcome;
        if !(is_broken || is_left) {
            continue;
        }
        let change = ScopeChange {
            subset: s.subset.map(|i| spec.subsets[i].name.clone()),
            port: s.port,
            client: s.client,
            before: was,
            after: s.outcome,
            required: s.required,
        };
        if is_broken {
            broken.push(change);
        } else {
            left.push(change);
        }
    }
    Some((broken, left))
}
