//! Grouping: one verdict's findings become diagnostics, the lines `check` prints.
//! Findings that share a fix make one diagnostic listing every scope.

use crate::decision::{ClientSource, Finding, HostTarget, Outcome, PortScope, Required, Verdict};
use crate::enforcement::Mode;
use crate::model::DestinationRuleSpec;
use crate::patch;
use crate::settings::Settings;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// What a diagnostic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiagnosticKind {
    /// MG100: the host is not a service of the mesh; nothing to check.
    OutOfScope,
    /// MG101: the validating webhook would deny the rule.
    Conflict,
    /// MG102: the mutating webhook would add the required mode.
    Fill,
    /// MG103: the mutating webhook would change ISTIO_MUTUAL to DISABLE.
    Patch,
    /// MG201..MG206: a warning of the decision.
    Warning,
}

/// One (port, subset) a diagnostic covers; `port` is `None` for "every other port"
/// of a wildcard or unknown-service rule, `subset` is `None` for the rule itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Scope {
    pub port: Option<u32>,
    pub subset: Option<String>,
}

/// One line of `check`'s output, before it is tied to a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub kind: DiagnosticKind,
    /// Every (port, subset) with this problem; they share one fix.
    pub scopes: Vec<Scope>,
    /// The client mode the rule sets there (conflicts, fills, patches).
    pub client: Option<String>,
    /// The mode the server side calls for.
    pub required: Option<String>,
    /// The field that decides the client mode (`spec.trafficPolicy.tls`).
    pub location: Option<String>,
    pub message: String,
    /// What to change in the rule; for fills and patches, what the mutating webhook would do.
    pub fix: Option<String>,
}

/// The diagnostics of one verdict, in the order of the verdict's findings, then its warnings.
///
/// Findings that share a fix (same source field, same outcome, same reason) make one
/// diagnostic listing every scope, so a top-level `tls` that all subsets inherit gives one
/// line, not one per subset. `changes` are the patch planner's for this verdict
/// (empty when it has nothing to fill or patch).
pub fn diagnose(
    verdict: &Verdict,
    spec: &DestinationRuleSpec,
    changes: &[patch::Change],
    settings: &Settings,
    mode: Mode,
) -> Vec<Diagnostic> {
    if !mode.judges() {
        return Vec::new();
    }
    let domain = settings.cluster_domain.as_str();
    let mut out = Vec::new();
    if verdict.target == HostTarget::OutOfScope {
        out.push(Diagnostic {
            severity: Severity::Note,
            code: "MG100",
            kind: DiagnosticKind::OutOfScope,
            scopes: Vec::new(),
            client: None,
            required: None,
            location: None,
            message: format!(
                "host {:?} is not a service of the mesh (an external name or another wildcard): allowed, never patched",
                verdict.host
            ),
            fix: None,
        });
        return out;
    }
    let service = match &verdict.target {
        HostTarget::Service { name, .. } => name.as_str(),
        _ => "the service",
    };

    // Group the findings that are not ok by (source field, outcome, reason).
    let mut groups: Vec<(&Finding, Vec<&Finding>)> = Vec::new();
    for f in verdict.findings.iter().filter(|f| f.outcome != Outcome::Ok) {
        let reason = f.reason(service);
        match groups.iter_mut().find(|(first, _)| {
            first.client_source == f.client_source
                && first.outcome == f.outcome
                && first.reason(service) == reason
        }) {
            Some((_, members)) => members.push(f),
            None => groups.push((f, vec![f])),
        }
    }
    for (first, members) in groups {
        let location = verdict.location(first, spec);
        let scopes: Vec<Scope> = members
            .iter()
            .map(|f| Scope {
                port: f.port.number(),
                subset: f.subset.as_ref().map(|(_, n)| n.clone()),
            })
            .collect();
        let mut message = verdict.message(first, domain);
        message.push_str(&also(first, &members[1..]));
        let required = match &first.required {
            Required::Any => None,
            Required::Mode(m) => Some(m.to_string()),
        };
        let (severity, code, kind, fix) = match &first.outcome {
            Outcome::Ok => continue,
            Outcome::Conflict => {
                let fix = required
                    .as_ref()
                    .map(|m| format!("set {location}.mode to {m}"));
                let severity = if mode.enforces() {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                (severity, "MG101", DiagnosticKind::Conflict, fix)
            }
            Outcome::Fill(m) | Outcome::Patch(m) => {
                let (code, kind, verb) = if matches!(first.outcome, Outcome::Fill(_)) {
                    ("MG102", DiagnosticKind::Fill, "would fill")
                } else {
                    ("MG103", DiagnosticKind::Patch, "would patch")
                };
                message = format!("{verb}: {message}");
                let planned = planned_changes(changes, first.client_source, &first.reason(service));
                let fix = if planned.is_empty() {
                    format!("set {location}.mode to {m}")
                } else {
                    planned.join("; ")
                };
                (Severity::Warning, code, kind, Some(fix))
            }
        };
        if !mode.enforces() {
            message.push_str(match kind {
                DiagnosticKind::Conflict => " [mode warn: allowed, not denied]",
                _ => " [mode warn: not applied]",
            });
        }
        out.push(Diagnostic {
            severity,
            code,
            kind,
            scopes,
            client: Some(first.client.to_string()),
            required,
            location: Some(location),
            message,
            fix,
        });
    }
    for w in &verdict.warnings {
        out.push(Diagnostic {
            severity: Severity::Warning,
            code: w.code.code(),
            kind: DiagnosticKind::Warning,
            scopes: Vec::new(),
            client: None,
            required: None,
            location: None,
            message: w.message.clone(),
            fix: None,
        });
    }
    out
}

/// "; also subsets v1, v2" (same port as the first), or "; also port 9090 subset v1, ...".
fn also(first: &Finding, rest: &[&Finding]) -> String {
    if rest.is_empty() {
        return String::new();
    }
    let same_port = rest
        .iter()
        .all(|f| f.port == first.port && f.subset.is_some());
    let names: Vec<String> = if same_port {
        rest.iter()
            .filter_map(|f| f.subset.as_ref().map(|(_, n)| n.clone()))
            .collect()
    } else {
        rest.iter()
            .map(|f| match (&f.port, &f.subset) {
                (p, Some((_, n))) => format!("{} subset {n}", port_text(p)),
                (p, None) => port_text(p),
            })
            .collect()
    };
    if same_port {
        let word = if names.len() == 1 {
            "subset"
        } else {
            "subsets"
        };
        format!("; also {word} {}", names.join(", "))
    } else {
        format!("; also {}", names.join(", "))
    }
}

fn port_text(p: &PortScope) -> String {
    p.to_string()
}

/// The planner's actions for the scope of `source` and for `reason`, and the
/// ports it pinned there so that they keep their mode.
fn planned_changes(changes: &[patch::Change], source: ClientSource, reason: &str) -> Vec<String> {
    let scope = match source {
        ClientSource::ScopeTls(s) | ClientSource::PortEntry(s, _) => s,
    };
    changes
        .iter()
        .filter(|c| c.scope == scope && c.reason.as_deref().is_none_or(|r| r == reason))
        .map(|c| c.action.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::TlsScope;

    #[test]
    fn planned_changes_match_scope_and_reason() {
        let change = |scope, action: &str, reason: Option<&str>| patch::Change {
            scope,
            action: action.to_string(),
            reason: reason.map(str::to_string),
        };
        let changes = vec![
            change(
                TlsScope::Top,
                "set spec.trafficPolicy.tls.mode to DISABLE",
                Some("X exempts s"),
            ),
            change(
                TlsScope::Subset(0),
                "set spec.subsets[v1].trafficPolicy.tls.mode to ISTIO_MUTUAL",
                Some("Y requires"),
            ),
            change(
                TlsScope::Top,
                "added a portLevelSettings entry for port 80 keeping tls mode SIMPLE",
                None,
            ),
        ];
        let top = ClientSource::ScopeTls(TlsScope::Top);
        assert_eq!(
            planned_changes(&changes, top, "X exempts s"),
            vec![
                "set spec.trafficPolicy.tls.mode to DISABLE".to_string(),
                "added a portLevelSettings entry for port 80 keeping tls mode SIMPLE".to_string(),
            ]
        );
        assert_eq!(
            planned_changes(
                &changes,
                ClientSource::PortEntry(TlsScope::Subset(0), 1),
                "Y requires"
            ),
            vec!["set spec.subsets[v1].trafficPolicy.tls.mode to ISTIO_MUTUAL".to_string()]
        );
        assert_eq!(planned_changes(&changes, top, "Z").len(), 1);
    }
}
