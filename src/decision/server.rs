//! Server side: the effective inbound mode of a service port (contract section 2).

use super::verdict::{PortScope, Warning, WarningCode};
use crate::model::{ObjectRef, PeerMtlsMode, PolicyMode};
use crate::snapshot::{PeerAuthEntry, PolicyEntry, ServiceEntry, Snapshot, TargetPort};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerMode {
    Strict,
    Permissive,
    Plaintext,
    /// Nothing applies at any level.
    None,
}

impl fmt::Display for ServerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerMode::Strict => "STRICT",
            ServerMode::Permissive => "PERMISSIVE",
            ServerMode::Plaintext => "PLAINTEXT",
            ServerMode::None => "NONE",
        })
    }
}

/// Where the deciding object sits, least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Mesh,
    Namespace,
    Service,
    ServicePort,
    Workload,
    WorkloadPort,
}

impl Level {
    /// Service, service-port, workload or workload-port: a targeted setting.
    pub fn is_targeted(self) -> bool {
        self >= Level::Service
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Mesh => "mesh",
            Level::Namespace => "namespace",
            Level::Service => "service",
            Level::ServicePort => "service-port",
            Level::Workload => "workload",
            Level::WorkloadPort => "workload-port",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decider {
    pub object: ObjectRef,
    pub level: Level,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerDecision {
    pub mode: ServerMode,
    /// `None` when nothing applies, or every PeerAuthentication that applies inherits.
    pub decider: Option<Decider>,
}

impl ServerDecision {
    const NONE: ServerDecision = ServerDecision {
        mode: ServerMode::None,
        decider: None,
    };

    fn new(mode: ServerMode, object: &ObjectRef, level: Level) -> ServerDecision {
        ServerDecision {
            mode,
            decider: Some(Decider {
                object: object.clone(),
                level,
            }),
        }
    }
}

/// Whose server mode is asked for.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// One service; `entry` is `None` when the snapshot does not have it.
    Service {
        namespace: &'a str,
        name: &'a str,
        entry: Option<&'a ServiceEntry>,
    },
    /// The namespace level of a namespace (a namespace-wide rule).
    Namespace(&'a str),
    /// The mesh level (a mesh-wide rule).
    Mesh,
}

fn peer_mode(mode: PeerMtlsMode) -> Option<ServerMode> {
    match mode {
        PeerMtlsMode::Unset => None,
        PeerMtlsMode::Disable => Some(ServerMode::Plaintext),
        PeerMtlsMode::Permissive => Some(ServerMode::Permissive),
        PeerMtlsMode::Strict => Some(ServerMode::Strict),
    }
}

fn policy_mode(mode: PolicyMode) -> ServerMode {
    match mode {
        PolicyMode::Strict => ServerMode::Strict,
        PolicyMode::Permissive => ServerMode::Permissive,
        PolicyMode::Plaintext => ServerMode::Plaintext,
    }
}

/// Warns when several objects apply at one level. `objects` is sorted oldest first; the
/// same object met twice in a row (a Policy naming a service in two targets) counts once.
/// Nothing is formatted unless there is a tie: this runs for every port of every decision.
fn tie<'a, I>(warnings: &mut Vec<Warning>, level: Level, subject: Subject<'_>, objects: I)
where
    I: Iterator<Item = &'a ObjectRef> + Clone,
{
    let mut distinct = objects.clone();
    let Some(first) = distinct.next() else {
        return;
    };
    if distinct.all(|o| o == first) {
        return;
    }
    let mut names: Vec<String> = Vec::new();
    let mut last: Option<&ObjectRef> = None;
    for o in objects {
        if last != Some(o) {
            names.push(o.to_string());
        }
        last = Some(o);
    }
    warnings.push(Warning {
        code: WarningCode::Tie,
        message: format!(
            "{} apply to {} at {level} level; the oldest, {}, decides",
            names.join(", "),
            subject_name(subject),
            names[0]
        ),
    });
}

/// The server mode of `subject` at `port`, most specific level first.
/// PeerAuthentication decides alone when any applies (as in Istio 1.5).
pub fn server_mode(
    snapshot: &Snapshot,
    root_namespace: &str,
    subject: Subject<'_>,
    port: &PortScope,
    warnings: &mut Vec<Warning>,
) -> ServerDecision {
    if let Some(d) = by_peer_authentication(snapshot, root_namespace, subject, port, warnings) {
        return d;
    }
    by_policy(snapshot, subject, port, warnings)
}

fn subject_name(subject: Subject<'_>) -> String {
    match subject {
        Subject::Service {
            namespace, name, ..
        } => format!("{namespace}/{name}"),
        Subject::Namespace(ns) => format!("namespace {ns}"),
        Subject::Mesh => "the mesh".to_string(),
    }
}

fn by_peer_authentication(
    snapshot: &Snapshot,
    root_namespace: &str,
    subject: Subject<'_>,
    port: &PortScope,
    warnings: &mut Vec<Warning>,
) -> Option<ServerDecision> {
    let namespace = match subject {
        Subject::Service { namespace, .. } | Subject::Namespace(namespace) => Some(namespace),
        Subject::Mesh => None,
    };
    let mut applied = false;

    if let Subject::Service {
        entry: Some(svc), ..
    } = subject
    {
        for (pa, label) in &svc.partial_peer_auths {
            warnings.push(Warning {
                code: WarningCode::PartialPeerAuthentication,
                message: format!(
                    "{} selects only some pods of service {} ({label} is not in its selector), so it does not decide the service's mode",
                    pa.object, svc.name
                ),
            });
        }
        if let Some(d) = workload_level(svc, port, subject, warnings, &mut applied) {
            return Some(d);
        }
    }

    let levels = [
        (
            namespace.filter(|ns| *ns != root_namespace),
            Level::Namespace,
        ),
        (Some(root_namespace), Level::Mesh),
    ];
    for (ns, level) in levels {
        let Some(idx) = ns.and_then(|ns| snapshot.namespace(ns)) else {
            continue;
        };
        let Some(first) = idx.wide_peer_auths.first() else {
            continue;
        };
        applied = true;
        tie(
            warnings,
            level,
            subject,
            idx.wide_peer_auths.iter().map(|p| &p.object),
        );
        if let Some(mode) = peer_mode(first.mode) {
            return Some(ServerDecision::new(mode, &first.object, level));
        }
    }
    applied.then_some(ServerDecision::NONE)
}

fn workload_level(
    svc: &ServiceEntry,
    port: &PortScope,
    subject: Subject<'_>,
    warnings: &mut Vec<Warning>,
    applied: &mut bool,
) -> Option<ServerDecision> {
    let pas = || svc.workload_peer_auths.iter().map(|pa| &**pa);
    let first: &PeerAuthEntry = pas().next()?;
    *applied = true;

    // Workload-port level, the most specific: every PeerAuthentication with a
    // port-level mode (not UNSET) for the port's target port, the oldest first.
    if let Some(number) = port.number() {
        match svc.port(number).map(|p| &p.target_port) {
            Some(TargetPort::Number(target)) => {
                let port_mode =
                    |pa: &PeerAuthEntry| pa.port_level.get(target).and_then(|m| peer_mode(*m));
                let at_port = pas().filter(|pa| port_mode(pa).is_some());
                if let Some(pa) = at_port.clone().next() {
                    tie(
                        warnings,
                        Level::WorkloadPort,
                        subject,
                        at_port.map(|p| &p.object),
                    );
                    let mode = port_mode(pa).expect("filtered on a port-level mode");
                    return Some(ServerDecision::new(mode, &pa.object, Level::WorkloadPort));
                }
            }
            Some(TargetPort::Name(target)) => {
                for pa in pas().filter(|pa| !pa.port_level.is_empty()) {
                    warnings.push(Warning {
                        code: WarningCode::NamedTargetPort,
                        message: format!(
                            "{}: portLevelMtls cannot be applied to {} port {number}, whose targetPort {target:?} is a name (it needs the pods); the PeerAuthentication's own mode is used",
                            pa.object, svc.name
                        ),
                    });
                }
            }
            None => {}
        }
    }
    tie(warnings, Level::Workload, subject, pas().map(|p| &p.object));
    peer_mode(first.mode).map(|mode| ServerDecision::new(mode, &first.object, Level::Workload))
}

fn by_policy(
    snapshot: &Snapshot,
    subject: Subject<'_>,
    port: &PortScope,
    warnings: &mut Vec<Warning>,
) -> ServerDecision {
    // The policies that apply at one level, oldest first; the first decides.
    fn decide<'a, I>(
        warnings: &mut Vec<Warning>,
        subject: Subject<'_>,
        policies: I,
        level: Level,
    ) -> Option<ServerDecision>
    where
        I: Iterator<Item = &'a PolicyEntry> + Clone,
    {
        let first = policies.clone().next()?;
        tie(warnings, level, subject, policies.map(|p| &p.object));
        if first.peer_without_mtls {
            warnings.push(Warning {
                code: WarningCode::PeerWithoutMtls,
                message: crate::model::peer_without_mtls_message(&first.object, first.mode),
            });
        }
        Some(ServerDecision::new(
            policy_mode(first.mode),
            &first.object,
            level,
        ))
    }

    let namespace = match subject {
        Subject::Service { namespace, .. } | Subject::Namespace(namespace) => Some(namespace),
        Subject::Mesh => None,
    };
    let ns_index = namespace.and_then(|ns| snapshot.namespace(ns));

    if let (Subject::Service { name, entry, .. }, Some(ns)) = (subject, ns_index) {
        if let Some(targets) = ns.policy_targets.get(name) {
            let number = port.number();
            let port_name = number
                .and_then(|n| entry.and_then(|s| s.port(n)))
                .and_then(|p| p.name.as_deref());
            // A Policy may name the service in several targets: it is still one object
            // (targets are sorted by age, so its entries are adjacent; `tie` counts it once).
            let by_port = targets
                .iter()
                .filter(move |t| {
                    number.is_some_and(|n| t.port_numbers.contains(&n))
                        || port_name.is_some_and(|pn| t.port_names.iter().any(|n| n == pn))
                })
                .map(|t| &*t.policy);
            if let Some(d) = decide(warnings, subject, by_port, Level::ServicePort) {
                return d;
            }
            let whole = targets
                .iter()
                .filter(|t| t.port_numbers.is_empty() && t.port_names.is_empty())
                .map(|t| &*t.policy);
            if let Some(d) = decide(warnings, subject, whole, Level::Service) {
                return d;
            }
        }
    }
    if let Some(ns) = ns_index {
        let defaults = ns.default_policies.iter().map(|p| &**p);
        if let Some(d) = decide(warnings, subject, defaults, Level::Namespace) {
            return d;
        }
    }
    let mesh = snapshot.mesh_policies().iter().map(|p| &**p);
    decide(warnings, subject, mesh, Level::Mesh).unwrap_or(ServerDecision::NONE)
}
