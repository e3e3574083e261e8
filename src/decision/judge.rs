//! Required client mode and verdicts (contract section 5): the one entry point.

use super::client::{client_mode, invalid_modes, ClientMode};
use super::exemption::{exemption, ingress_gateway_present, Exemption};
use super::host::{resolve_host, HostTarget};
use super::server::{server_mode, ServerDecision, ServerMode, Subject};
use super::verdict::{Finding, Outcome, PortScope, Required, Verdict, Warning, WarningCode};
use crate::model::{DestinationRule, ObjectKind, ObjectRef};
use crate::settings::Settings;
use crate::snapshot::{Snapshot, TargetPort};

/// Judges `rule` as admitted in `namespace` (the rule's own namespace when it has one).
pub fn judge(
    snapshot: &Snapshot,
    settings: &Settings,
    rule: &DestinationRule,
    namespace: &str,
) -> Verdict {
    let namespace = rule.metadata.namespace.as_deref().unwrap_or(namespace);
    let spec = &rule.spec;
    let target = resolve_host(snapshot, &spec.host, namespace, &settings.cluster_domain);
    let mut verdict = Verdict {
        rule: ObjectRef {
            kind: ObjectKind::DestinationRule,
            namespace: namespace.to_string(),
            name: rule.metadata.name.clone().unwrap_or_default(),
        },
        host: spec.host.clone(),
        target: HostTarget::OutOfScope,
        findings: Vec::new(),
        warnings: Vec::new(),
        invalid_modes: invalid_modes(spec),
    };
    let mut warnings = Vec::new();
    warnings.extend(super::shadow::older_rule_warning(
        snapshot,
        rule,
        namespace,
        &target,
        &settings.cluster_domain,
    ));

    if target == HostTarget::OutOfScope {
        verdict.warnings = warnings;
        return verdict;
    }
    let ports = port_sides(snapshot, settings, rule, &target, &mut warnings);

    // One finding per (port, subset): the rule itself, then each subset. The last one of a
    // port takes its port, server side and exemption instead of a copy (a decision is on the
    // admission path: it allocates as little as the owned `Finding` allows).
    let last = spec.subsets.len();
    verdict.findings.reserve_exact(ports.len() * (last + 1));
    for (port, server, ex) in ports {
        let required = required_mode(&server, ex.as_ref());
        let number = port.number();
        let exempt = ex.is_some();
        let mut owned = Some((port, server, ex, required));
        for k in 0..=last {
            let subset = k.checked_sub(1);
            let (client, client_source) = client_mode(spec, number, subset);
            let (port, server, exemption, required) = if k == last {
                owned.take().expect("taken once, by the last scope")
            } else {
                let (p, s, e, r) = owned.as_ref().expect("taken only by the last scope");
                (p.clone(), s.clone(), e.clone(), r.clone())
            };
            let outcome = outcome(&client, &required, exempt, settings.auto_mtls);
            verdict.findings.push(Finding {
                port,
                subset: subset.map(|i| (i, spec.subsets[i].name.clone())),
                client,
                client_source,
                server,
                exemption,
                required,
                outcome,
            });
        }
    }
    verdict.target = target;
    for w in warnings {
        if !verdict.warnings.contains(&w) {
            verdict.warnings.push(w);
        }
    }
    verdict
}

/// One port a rule covers, with its server side and exemption.
pub(crate) type PortSide = (PortScope, ServerDecision, Option<Exemption>);

/// Each port's server side and exemption for `rule`, whose host resolved to `target`,
/// computed once for all subsets (with the warnings they call for). The verdict of
/// every scope follows from these and the rule's own client modes, so two snapshots
/// that give the same sides give the same outcomes (section 8 compares them first).
pub(crate) fn port_sides(
    snapshot: &Snapshot,
    settings: &Settings,
    rule: &DestinationRule,
    target: &HostTarget,
    warnings: &mut Vec<Warning>,
) -> Vec<PortSide> {
    let spec = &rule.spec;
    let root = settings.root_namespace.as_str();
    let mut ports: Vec<PortSide> = Vec::new();
    match target {
        HostTarget::OutOfScope => {}
        HostTarget::Service {
            namespace: ns,
            name,
            known,
        } => {
            let entry = snapshot.service(ns, name);
            let scopes = match entry {
                Some(svc) => svc
                    .ports
                    .iter()
                    .map(|p| PortScope::Port {
                        number: p.port,
                        name: p.name.clone(),
                    })
                    .collect(),
                None => named_ports(rule),
            };
            if !known {
                warnings.push(Warning {
                    code: WarningCode::UnknownService,
                    message: format!(
                        "host {} names service {ns}/{name}, which is not known; judged at namespace and mesh level (and by name for Policy targets) over the ports the rule names",
                        spec.host
                    ),
                });
            }
            let gateway = ingress_gateway_present(snapshot, settings);
            let subject = Subject::Service {
                namespace: ns,
                name,
                entry,
            };
            ports.reserve_exact(scopes.len());
            for port in scopes {
                let server = server_mode(snapshot, root, subject, &port, warnings);
                let ex = exemption(
                    snapshot,
                    settings,
                    gateway,
                    ns,
                    name,
                    port.number(),
                    &server,
                );
                let ingress = matches!(ex, Some(Exemption::Ingress(_) | Exemption::Gateway { .. }));
                if ingress && server.mode == ServerMode::Strict {
                    // (a) is the same for every port, (c) names its port: warn once per
                    // exemption and deciding object.
                    let warned = ports.iter().any(|(_, s, e)| {
                        *e == ex && s.mode == ServerMode::Strict && s.decider == server.decider
                    });
                    if !warned {
                        let target = entry
                            .and_then(|svc| svc.port(port.number()?))
                            .and_then(|p| match p.target_port {
                                TargetPort::Number(n) => Some(n),
                                TargetPort::Name(_) => None,
                            });
                        warnings.push(missing_server_exemption(ns, name, &server, &ex, target));
                    }
                }
                ports.push((port, server, ex));
            }
        }
        HostTarget::NamespaceWide { namespace: ns } => {
            for port in named_ports(rule) {
                let server = server_mode(snapshot, root, Subject::Namespace(ns), &port, warnings);
                ports.push((port, server, None));
            }
        }
        HostTarget::MeshWide => {
            for port in named_ports(rule) {
                let server = server_mode(snapshot, root, Subject::Mesh, &port, warnings);
                ports.push((port, server, None));
            }
        }
    }
    ports
}

/// The ports a wildcard or unknown-service rule covers: those it names, then every other.
fn named_ports(rule: &DestinationRule) -> Vec<PortScope> {
    let spec = &rule.spec;
    let policies = spec.traffic_policy.iter().chain(
        spec.subsets
            .iter()
            .filter_map(|s| s.traffic_policy.as_ref()),
    );
    let mut numbers: Vec<u32> = policies
        .flat_map(|tp| tp.port_level_settings.iter())
        .filter_map(|e| e.port.as_ref().and_then(|p| p.number))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
        .into_iter()
        .map(|number| PortScope::Port { number, name: None })
        .chain(std::iter::once(PortScope::Other))
        .collect()
}

/// The first table of section 5, first matching row. An exempt port needs DISABLE only
/// where the server refuses one of its callers (STRICT: the ingress; PLAINTEXT: mTLS); a
/// PERMISSIVE or unpoliced server takes both, and DISABLE would only downgrade the
/// mesh's own callers.
pub(crate) fn required_mode(server: &ServerDecision, ex: Option<&Exemption>) -> Required {
    match (ex.is_some(), server.mode) {
        (true, ServerMode::Strict | ServerMode::Plaintext) => Required::Mode(ClientMode::Disable),
        (_, ServerMode::Permissive | ServerMode::None) => Required::Any,
        (false, ServerMode::Strict) => Required::Mode(ClientMode::IstioMutual),
        (false, ServerMode::Plaintext) => Required::Mode(ClientMode::Disable),
    }
}

/// The second table of section 5: the first matching row decides.
pub(crate) fn outcome(
    client: &ClientMode,
    required: &Required,
    exempt: bool,
    auto_mtls: bool,
) -> Outcome {
    // Before the table: Istio's schema refuses the value whatever the server side needs.
    if let ClientMode::Invalid(_) = client {
        return Outcome::InvalidMode;
    }
    match required {
        r if r.accepts(client) => Outcome::Ok,
        _ if *client == ClientMode::Unset && auto_mtls => Outcome::Ok,
        Required::Mode(m) if *client == ClientMode::Unset => Outcome::Fill(m.clone()),
        _ if *client == ClientMode::IstioMutual && exempt => Outcome::Patch(ClientMode::Disable),
        _ => Outcome::Conflict,
    }
}

/// The warning for an exempt port (case (a) or (c)) whose server side is still STRICT;
/// `target` is the port's numeric targetPort, when known (a PeerAuthentication's
/// `portLevelMtls` is keyed by it).
fn missing_server_exemption(
    namespace: &str,
    name: &str,
    server: &ServerDecision,
    ex: &Option<Exemption>,
    target: Option<u32>,
) -> Warning {
    let decider = server
        .decider
        .as_ref()
        .map_or_else(|| "a policy".to_string(), |d| d.object.to_string());
    // (c) exempts one port: the server-side exemption should cover that port only.
    let gateway_port = match ex {
        Some(Exemption::Gateway { port, .. }) => Some(*port),
        _ => None,
    };
    let how = match (server.decider.as_ref().map(|d| (d.object.kind, d.level)), gateway_port) {
        // A targeted STRICT setting would still win over a newer exemption.
        (Some((_, level)), _) if level.is_targeted() => format!(
            "change {decider}, which requires mutual TLS for {name} at {level} level"
        ),
        (Some((ObjectKind::PeerAuthentication, _)), None) => format!(
            "add a PeerAuthentication in {namespace} whose selector matches {name}'s pods with mtls mode DISABLE"
        ),
        (Some((ObjectKind::PeerAuthentication, _)), Some(port)) => {
            let entry = target.map_or_else(
                || format!("`portLevelMtls` mode PERMISSIVE on the target port of {name} port {port}"),
                |t| format!("`portLevelMtls: {{{t}: {{mode: PERMISSIVE}}}}`"),
            );
            format!(
                "add a PeerAuthentication in {namespace} whose selector matches {name}'s pods with {entry}"
            )
        }
        (_, None) => format!(
            "apply a Policy such as `disable-mtls-productpage` in {namespace} with `targets: [{{name: {name}}}]` and `peers: []`"
        ),
        (_, Some(port)) => format!(
            "apply a Policy in {namespace} with `targets: [{{name: {name}, ports: [{{number: {port}}}]}}]` and `peers: []`"
        ),
    };
    let reason = ex.as_ref().map(|e| e.reason(name)).unwrap_or_default();
    Warning {
        code: WarningCode::MissingServerExemption,
        message: format!(
            "{reason}, but {decider} still requires mutual TLS (STRICT) on the server side, so plaintext calls from the ingress will fail until a service-specific exemption exists: {how}"
        ),
    }
}
