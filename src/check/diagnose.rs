//! Grouping: one verdict's findings become diagnostics, the lines `check` prints.
//! Findings that share a fix make one diagnostic listing every scope.

use crate::decision::{
    accepted_modes, ClientSource, Finding, HostTarget, InvalidMode, Outcome, Required, Verdict,
};
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
    /// MG104: a `tls.mode` Istio's schema refuses; the validating webhook would deny the rule.
    InvalidMode,
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
    /// The client mode the rule sets there (conflicts, fills, patches, invalid modes).
    pub client: Option<String>,
    /// The mode the server side calls for.
    pub required: Option<String>,
    /// The field that decides the client mode (`spec.trafficPolicy.tls`).
    pub location: Option<String>,
    pub message: String,
    /// What to change in the rule; for fills and patches, what the mutating webhook would do.
    pub fix: Option<String>,
}

/// The diagnostics of one verdict: its invalid TLS modes, then its findings grouped by
/// fix (in the order of the verdict's findings), then its warnings.
///
/// Findings that share a fix (same source field, same outcome, same reason) make one
/// diagnostic listing every scope ([`Verdict::groups`]), so a top-level `tls` that all
/// subsets inherit gives one line, not one per subset. `changes` are the patch
/// planner's for this verdict (empty when it has nothing to fill or patch).
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
    let denial = if mode.enforces() {
        Severity::Error
    } else {
        Severity::Warning
    };
    let mut out: Vec<Diagnostic> = verdict
        .invalid_modes
        .iter()
        .map(|invalid| invalid_mode(verdict, spec, invalid, denial, mode))
        .collect();
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
    let service = verdict.service_name();
    for group in verdict.groups() {
        let first = group.first;
        let location = verdict.location(first, spec);
        let scopes = group.members.iter().map(|f| scope(f)).collect();
        let mut message = verdict.group_message(&group, domain);
        let required = match &first.required {
            Required::Any => None,
            Required::Mode(m) => Some(m.to_string()),
        };
        let (severity, code, kind, fix) = match &first.outcome {
            Outcome::Ok | Outcome::InvalidMode => continue,
            Outcome::Conflict => {
                let fix = required
                    .as_ref()
                    .map(|m| format!("set {location}.mode to {m}"));
                (denial, "MG101", DiagnosticKind::Conflict, fix)
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
        message.push_str(warn_suffix(kind, mode));
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

/// In mode `warn`, what the webhook does instead.
fn warn_suffix(kind: DiagnosticKind, mode: Mode) -> &'static str {
    match kind {
        _ if mode.enforces() => "",
        DiagnosticKind::Conflict | DiagnosticKind::InvalidMode => {
            " [mode warn: allowed, not denied]"
        }
        _ => " [mode warn: not applied]",
    }
}

fn scope(f: &Finding) -> Scope {
    Scope {
        port: f.port.number(),
        subset: f.subset.as_ref().map(|(_, n)| n.clone()),
    }
}

/// MG104: a `tls.mode` Istio's schema refuses, with the scopes that use it. The fix
/// names the mode they require when they agree on one.
fn invalid_mode(
    verdict: &Verdict,
    spec: &DestinationRuleSpec,
    invalid: &InvalidMode,
    severity: Severity,
    mode: Mode,
) -> Diagnostic {
    let users: Vec<&Finding> = verdict
        .findings
        .iter()
        .filter(|f| f.client_source == invalid.source)
        .collect();
    let required = match users.first().map(|f| &f.required) {
        Some(Required::Mode(m)) if users.iter().all(|f| f.required == users[0].required) => {
            Some(m.to_string())
        }
        _ => None,
    };
    let location = invalid.source.describe(spec);
    let fix = format!(
        "set {location}.mode to {}",
        required.clone().unwrap_or_else(accepted_modes)
    );
    let mut message = invalid.message(spec);
    message.push_str(warn_suffix(DiagnosticKind::InvalidMode, mode));
    Diagnostic {
        severity,
        code: "MG104",
        kind: DiagnosticKind::InvalidMode,
        scopes: users.iter().map(|f| scope(f)).collect(),
        client: Some(invalid.mode.clone()),
        required,
        location: Some(location),
        message,
        fix: Some(fix),
    }
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
