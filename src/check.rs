//! The `check` command: judge the DestinationRules in files against the policies
//! beside them, and print the findings like a linter.
//!
//! The pure part is [`diagnose`] (one verdict -> its diagnostics) and [`check`]
//! (loaded files -> a [`Report`]); [`run`] only reads files and prints. The output
//! format, the codes and the exit codes are documented in docs/codes.md.
//!
//! Modes (contract section 6) are honoured as the webhook would: a rule's mode is its
//! namespace's `mtls-guard.io/mode` label (from a Namespace object in the files) over
//! `--mode`. In `enforce` a conflict is an error; in `warn` it is reported as a warning
//! and does not fail the check (the webhook would allow it); in `off` the rule is not
//! checked. So the exit code says whether the webhook would deny something.

use crate::decision::{
    judge, ClientSource, Finding, HostTarget, Outcome, PortScope, Required, Verdict,
};
use crate::enforcement::{self, Mode};
use crate::loader::{self, Loaded, Origin};
use crate::model::{DestinationRuleSpec, ObjectRef};
use crate::patch;
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when no enforced conflict was found.
pub const EXIT_OK: u8 = 0;
/// Exit code when a rule in an `enforce` namespace has a conflict (the webhook would deny it).
pub const EXIT_CONFLICT: u8 = 1;
/// Exit code for unusable input: an unreadable file, a YAML/JSON syntax error, a broken object.
pub const EXIT_INPUT: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One line per finding, then a summary line.
    #[default]
    Text,
    /// A JSON array of findings (fields documented in docs/codes.md).
    Json,
}

/// What `check` was asked to do (built by the CLI layer from its flags).
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Files and folders to read.
    pub paths: Vec<PathBuf>,
    /// The namespace of namespaced objects that have none.
    pub namespace: String,
    pub output: OutputFormat,
    /// Also a line for every rule without findings, and for rules not checked.
    pub verbose: bool,
    pub settings: Settings,
}

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

/// Everything found about one DestinationRule.
#[derive(Debug, Clone)]
pub struct RuleReport {
    pub origin: Origin,
    pub rule: ObjectRef,
    /// The host as messages name it (the FQDN for one service).
    pub host: String,
    /// The effective mode: the namespace's label over `--mode`.
    pub mode: Mode,
    pub diagnostics: Vec<Diagnostic>,
    /// The JSON Patch the mutating webhook would send (`enforce` only; empty otherwise).
    pub patch: json_patch::Patch,
    /// Number of (port, subset) scopes judged.
    pub scopes: usize,
}

/// The result of a check over loaded files.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub rules: Vec<RuleReport>,
    /// Loader and snapshot notes (skipped documents, redefinitions, ignored policies).
    pub notes: Vec<String>,
}

/// Counts of diagnostics by kind, as in the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub rules: usize,
    pub conflicts: usize,
    pub fills: usize,
    pub patches: usize,
    pub warnings: usize,
    /// Conflicts in `enforce` namespaces: the ones that fail the check.
    pub enforced_conflicts: usize,
    pub rules_warn: usize,
    pub rules_off: usize,
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

/// `spec.trafficPolicy` or `spec.subsets[NAME].trafficPolicy`: the scope a change is in.
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

/// Judges every DestinationRule of `loaded` against a snapshot of all its objects.
/// A rule without a namespace was put in the loader's default namespace (`default`).
pub fn check(loaded: &Loaded, settings: &Settings) -> Report {
    let snapshot = Snapshot::from_objects(loaded.objects.iter().cloned());
    let mut report = Report {
        rules: Vec::new(),
        notes: loaded.notes.clone(),
    };
    report.notes.extend(snapshot.notes().iter().cloned());
    for (rule, _raw, origin) in loaded.destination_rules() {
        let namespace = rule
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(loader::DEFAULT_NAMESPACE);
        let verdict = judge(&snapshot, settings, rule, namespace);
        let mode = enforcement::mode_for(&snapshot, settings, &verdict.rule.namespace);
        let plan = patch::plan(&verdict, &rule.spec);
        let diagnostics = diagnose(&verdict, &rule.spec, &plan.changes, settings, mode);
        let patch = if mode.enforces() {
            plan.patch
        } else {
            json_patch::Patch(Vec::new())
        };
        report.rules.push(RuleReport {
            origin: origin.clone(),
            host: verdict.display_host(&settings.cluster_domain),
            rule: verdict.rule.clone(),
            mode,
            diagnostics,
            patch,
            scopes: verdict.findings.len(),
        });
    }
    report
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            rules: self.rules.len(),
            ..Counts::default()
        };
        for r in &self.rules {
            match r.mode {
                Mode::Warn => c.rules_warn += 1,
                Mode::Off => c.rules_off += 1,
                Mode::Enforce => {}
            }
            for d in &r.diagnostics {
                match d.kind {
                    DiagnosticKind::Conflict => {
                        c.conflicts += 1;
                        if r.mode.enforces() {
                            c.enforced_conflicts += 1;
                        }
                    }
                    DiagnosticKind::Fill => c.fills += 1,
                    DiagnosticKind::Patch => c.patches += 1,
                    DiagnosticKind::Warning => c.warnings += 1,
                    DiagnosticKind::OutOfScope => {}
                }
            }
        }
        c
    }

    /// 1 when the webhook would deny a rule, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.counts().enforced_conflicts > 0 {
            EXIT_CONFLICT
        } else {
            EXIT_OK
        }
    }

    /// `4 rules, 0 conflicts, 0 fills, 1 patches`, and the rules not enforced, if any.
    pub fn summary(&self) -> String {
        let c = self.counts();
        let mut s = format!(
            "{} rules, {} conflicts, {} fills, {} patches",
            c.rules, c.conflicts, c.fills, c.patches
        );
        if c.rules_warn > 0 {
            let _ = write!(
                s,
                "; {} rules in mode warn (reported, not enforced)",
                c.rules_warn
            );
        }
        if c.rules_off > 0 {
            let _ = write!(s, "; {} rules in mode off (not checked)", c.rules_off);
        }
        s
    }

    /// The text output: one line per diagnostic, then the summary line.
    pub fn render_text(&self, verbose: bool) -> String {
        let mut out = String::new();
        for r in &self.rules {
            let subject = format!("DestinationRule {}/{}", r.rule.namespace, r.rule.name);
            if verbose && r.mode == Mode::Off {
                let _ = writeln!(out, "{}: note {subject}: not checked: mode off", r.origin);
            } else if verbose && r.diagnostics.is_empty() {
                let _ = writeln!(
                    out,
                    "{}: ok {subject}: {}: {} scopes consistent",
                    r.origin, r.host, r.scopes
                );
            }
            for d in &r.diagnostics {
                let _ = write!(
                    out,
                    "{}: {} {} {subject}: {}",
                    r.origin, d.severity, d.code, d.message
                );
                if let Some(fix) = &d.fix {
                    let _ = write!(out, " (fix: {fix})");
                }
                out.push('\n');
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// The JSON output: an array with one object per diagnostic (docs/codes.md, "JSON output").
    pub fn render_json(&self) -> Value {
        let mut out = Vec::new();
        for r in &self.rules {
            for d in &r.diagnostics {
                let patch = match d.kind {
                    DiagnosticKind::Fill | DiagnosticKind::Patch if !r.patch.0.is_empty() => {
                        serde_json::to_value(&r.patch).unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
                out.push(json!({
                    "file": r.origin.path.display().to_string(),
                    "line": r.origin.line,
                    "document": r.origin.document + 1,
                    "item": r.origin.item,
                    "severity": d.severity,
                    "code": d.code,
                    "kind": d.kind,
                    "mode": r.mode.to_string(),
                    "rule": { "namespace": r.rule.namespace, "name": r.rule.name },
                    "host": r.host,
                    "scopes": d.scopes,
                    "client": d.client,
                    "required": d.required,
                    "location": d.location,
                    "message": d.message,
                    "fix": d.fix,
                    "patch": patch,
                }));
            }
        }
        Value::Array(out)
    }
}

/// `mtls-guard check PATH...`: exit 0 (no enforced conflict), 1 (a conflict), 2 (unusable input).
pub fn run(args: CheckOptions) -> ExitCode {
    let settings = args.settings;
    let loaded = match loader::load_paths_in(&args.paths, &args.namespace) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mtls-guard check: error: {e}");
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let report = check(&loaded, &settings);
    let mut stderr = std::io::stderr().lock();
    for note in &report.notes {
        let _ = writeln!(stderr, "note: {note}");
    }
    if report.rules.is_empty() {
        let _ = writeln!(
            stderr,
            "note: no DestinationRule found in {} file(s)",
            loaded.files.len()
        );
    }
    let text = match args.output {
        OutputFormat::Text => report.render_text(args.verbose),
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&report.render_json()).unwrap_or_default();
            s.push('\n');
            s
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) does not change the verdict.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    ExitCode::from(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::TlsScope;

    const BOOKINFO: &str = "\
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: bookinfo}
spec:
  peers: [{mtls: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: admin, port: 9443}]
";

    fn run_check(rules: &str, settings: &Settings) -> Report {
        let text = format!("{BOOKINFO}---\n{rules}");
        let loaded = loader::parse_str(&text, "t.yaml").expect("parses");
        check(&loaded, settings)
    }

    fn rule(body: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: bookinfo}}\nspec:\n{body}"
        )
    }

    #[test]
    fn findings_sharing_a_fix_make_one_diagnostic() {
        let r = run_check(
            &rule("  host: reviews\n  trafficPolicy: {tls: {mode: DISABLE}}\n  subsets: [{name: v1}, {name: v2}]\n"),
            &Settings::default(),
        );
        let d = &r.rules[0].diagnostics;
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].code, "MG101");
        assert_eq!(d[0].severity, Severity::Error);
        assert_eq!(d[0].scopes.len(), 6);
        assert_eq!(
            d[0].scopes[0],
            Scope {
                port: Some(9080),
                subset: None
            }
        );
        assert!(
            d[0].message.ends_with(
                "; also port 9080 subset v1, port 9080 subset v2, port 9443, port 9443 subset v1, port 9443 subset v2"
            ),
            "{}",
            d[0].message
        );
        assert_eq!(
            d[0].fix.as_deref(),
            Some("set spec.trafficPolicy.tls.mode to ISTIO_MUTUAL")
        );
        assert_eq!(r.exit_code(), EXIT_CONFLICT);
        assert_eq!(r.summary(), "1 rules, 1 conflicts, 0 fills, 0 patches");
    }

    #[test]
    fn separate_sources_make_separate_diagnostics() {
        let r = run_check(
            &rule("  host: reviews\n  subsets:\n  - name: v1\n    trafficPolicy: {tls: {mode: SIMPLE}}\n"),
            &Settings::default(),
        );
        let d = &r.rules[0].diagnostics;
        let codes: Vec<&str> = d.iter().map(|d| d.code).collect();
        assert_eq!(codes, vec!["MG102", "MG101"], "{d:#?}");
        assert!(d[0].message.starts_with("would fill: "));
        assert_eq!(d[0].client.as_deref(), Some("UNSET"));
        assert_eq!(
            d[1].location.as_deref(),
            Some("spec.subsets[v1].trafficPolicy.tls")
        );
        assert_eq!(
            d[1].fix.as_deref(),
            Some("set spec.subsets[v1].trafficPolicy.tls.mode to ISTIO_MUTUAL")
        );
        assert_eq!(r.counts().fills, 1);
        assert_eq!(r.counts().conflicts, 1);
    }

    #[test]
    fn warn_mode_downgrades_and_off_mode_silences() {
        let body = rule("  host: reviews\n  trafficPolicy: {tls: {mode: DISABLE}}\n");
        let warn = Settings {
            mode: Mode::Warn,
            ..Settings::default()
        };
        let r = run_check(&body, &warn);
        let d = &r.rules[0].diagnostics[0];
        assert_eq!(d.severity, Severity::Warning);
        assert!(
            d.message.ends_with(" [mode warn: allowed, not denied]"),
            "{}",
            d.message
        );
        assert_eq!(r.exit_code(), EXIT_OK);
        assert_eq!(r.counts().conflicts, 1);
        assert_eq!(r.counts().enforced_conflicts, 0);

        let off = Settings {
            mode: Mode::Off,
            ..Settings::default()
        };
        let r = run_check(&body, &off);
        assert!(r.rules[0].diagnostics.is_empty());
        assert_eq!(
            r.render_text(false),
            "1 rules, 0 conflicts, 0 fills, 0 patches; 1 rules in mode off (not checked)\n"
        );
    }

    #[test]
    fn out_of_scope_is_a_note_and_clean_rules_are_quiet() {
        let r = run_check(
            &format!(
                "{}---\n{}",
                rule("  host: api.example.com\n  trafficPolicy: {tls: {mode: SIMPLE}}\n")
                    .replace("name: reviews", "name: ext"),
                rule("  host: reviews\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n")
            ),
            &Settings::default(),
        );
        assert_eq!(r.rules[0].diagnostics[0].code, "MG100");
        assert_eq!(r.rules[0].diagnostics[0].severity, Severity::Note);
        assert!(r.rules[1].diagnostics.is_empty());
        let text = r.render_text(true);
        assert!(
            text.contains("t.yaml:21: ok DestinationRule bookinfo/reviews: reviews.bookinfo.svc.cluster.local: 2 scopes consistent"),
            "{text}"
        );
        assert_eq!(r.exit_code(), EXIT_OK);
    }

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
