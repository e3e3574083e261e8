//! The `check` command: judge the DestinationRules in files against the policies
//! beside them, and print the findings like a linter.
//!
//! By role: `options` (what was asked), [`check`] here (loaded files -> a
//! [`Report`], judging each rule with [`judge_rule`], which the audit shares),
//! [`diagnose`] (one verdict -> its diagnostics, grouping findings that share a
//! fix), `render` (text and JSON), and [`run`], the only part that reads files or
//! the cluster ([`check_cluster`], `--cluster`: the audit of the listed cluster) and prints. The output format, the codes and the exit
//! codes are documented in docs/codes.md.
//!
//! Modes (contract section 6) are honoured as the webhook would: a rule's mode is its
//! namespace's `mtls-guard.io/mode` label (from a Namespace object in the files) over
//! `--mode`. In `enforce` a conflict is an error; in `warn` it is reported as a warning
//! and does not fail the check (the webhook would allow it); in `off` the rule is not
//! checked. So the exit code says whether the webhook would deny something.

mod diagnose;
mod options;
mod render;
mod run;

pub use diagnose::{diagnose, Diagnostic, DiagnosticKind, Scope, Severity};
pub use options::{CheckOptions, ClusterTarget, OutputFormat};
pub use render::{STORED_ORIGIN, STRICT_BACKEND_CODE};
pub use run::{check_cluster, run};

use crate::decision::{judge, StrictBackend};
use crate::enforcement::{self, Mode};
use crate::loader::{self, Loaded, Origin};
use crate::model::{DestinationRule, ObjectRef};
use crate::patch;
use crate::settings::Settings;
use crate::snapshot::Snapshot;

/// Exit code when no enforced conflict was found.
pub const EXIT_OK: u8 = 0;
/// Exit code when a rule in an `enforce` namespace has a conflict or an invalid TLS
/// mode (the webhook would deny it).
pub const EXIT_CONFLICT: u8 = 1;
/// Exit code for unusable input: an unreadable file, a YAML/JSON syntax error, a broken
/// object, no input file at all (unless `--allow-empty`).
pub const EXIT_INPUT: u8 = 2;

/// Everything found about one DestinationRule.
#[derive(Debug, Clone)]
pub struct RuleReport {
    /// Where the rule was read; `None` for a stored object (the cluster, the audit).
    pub origin: Option<Origin>,
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

/// The result of a check over loaded files, or of an audit.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub rules: Vec<RuleReport>,
    /// Loader and snapshot notes (skipped documents, redefinitions, ignored policies).
    pub notes: Vec<String>,
    /// The audit only: webhook and APIService backends already STRICT on the port
    /// the API server calls (MG210), in namespaces whose mode is not `off`.
    pub backends: Vec<StrictBackend>,
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
    /// `tls.mode` values Istio refuses (MG104), and those in `enforce` namespaces,
    /// which fail the check too.
    pub invalid_modes: usize,
    pub enforced_invalid_modes: usize,
    pub rules_warn: usize,
    pub rules_off: usize,
    /// MG210: webhook and APIService backends already STRICT (the audit only).
    pub strict_backends: usize,
}

/// Judges every DestinationRule of `loaded` against a snapshot of all its objects.
/// A rule without a namespace was put in the loader's default namespace (`default`).
pub fn check(loaded: &Loaded, settings: &Settings) -> Report {
    let snapshot = Snapshot::from_objects(loaded.objects.iter().cloned());
    let mut report = Report {
        rules: Vec::new(),
        notes: loaded.notes.clone(),
        backends: Vec::new(),
    };
    report.notes.extend(snapshot.notes().iter().cloned());
    for (rule, _raw, origin) in loaded.destination_rules() {
        let namespace = rule
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(loader::DEFAULT_NAMESPACE);
        report.rules.push(judge_rule(
            &snapshot,
            settings,
            rule,
            namespace,
            Some(origin.clone()),
        ));
    }
    report
}

/// One rule's findings, as `check` and the audit report them: judged in its
/// namespace, in that namespace's mode, grouped by fix, with the patch the mutating
/// webhook would send (`enforce` only).
pub fn judge_rule(
    snapshot: &Snapshot,
    settings: &Settings,
    rule: &DestinationRule,
    namespace: &str,
    origin: Option<Origin>,
) -> RuleReport {
    let verdict = judge(snapshot, settings, rule, namespace);
    let mode = enforcement::mode_for(snapshot, settings, &verdict.rule.namespace);
    let plan = patch::plan(&verdict, &rule.spec);
    let diagnostics = diagnose(&verdict, &rule.spec, &plan.changes, settings, mode);
    let patch = if mode.enforces() {
        plan.patch
    } else {
        json_patch::Patch(Vec::new())
    };
    RuleReport {
        origin,
        host: verdict.display_host(&settings.cluster_domain),
        rule: verdict.rule.clone(),
        mode,
        diagnostics,
        patch,
        scopes: verdict.findings.len(),
    }
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            rules: self.rules.len(),
            strict_backends: self.backends.len(),
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
                    DiagnosticKind::InvalidMode => {
                        c.invalid_modes += 1;
                        if r.mode.enforces() {
                            c.enforced_invalid_modes += 1;
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

    /// 1 when the webhook would deny a rule (a conflict or an invalid mode), else 0.
    pub fn exit_code(&self) -> u8 {
        let c = self.counts();
        if c.enforced_conflicts + c.enforced_invalid_modes > 0 {
            EXIT_CONFLICT
        } else {
            EXIT_OK
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn invalid_modes_are_reported_once_per_field_and_never_patched() {
        // A typo at the top (inherited by v1), a wrong case in v2's port entry.
        let r = run_check(
            &rule("  host: reviews\n  trafficPolicy: {tls: {mode: DISABL}}\n  subsets:\n  - name: v1\n  - name: v2\n    trafficPolicy:\n      portLevelSettings: [{port: {number: 9443}, tls: {mode: simple}}]\n"),
            &Settings::default(),
        );
        let d = &r.rules[0].diagnostics;
        let codes: Vec<&str> = d.iter().map(|d| d.code).collect();
        assert_eq!(codes, vec!["MG104", "MG104"], "{d:#?}");
        assert_eq!(d[0].severity, Severity::Error);
        assert_eq!(d[0].location.as_deref(), Some("spec.trafficPolicy.tls"));
        // The rule's ports and subset v1 use it; v2 on port 9080 too.
        assert_eq!(d[0].scopes.len(), 5, "{:#?}", d[0].scopes);
        assert_eq!(
            d[1].location.as_deref(),
            Some("spec.subsets[v2].trafficPolicy.portLevelSettings[0].tls")
        );
        assert_eq!(
            d[1].message,
            "spec.subsets[v2].trafficPolicy.portLevelSettings[0].tls.mode \"simple\" is not a TLS mode Istio accepts; use DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL"
        );
        assert!(r.rules[0].patch.0.is_empty());
        assert_eq!(r.exit_code(), EXIT_CONFLICT);
        assert_eq!(
            r.summary(),
            "1 rules, 0 conflicts, 0 fills, 0 patches; 2 invalid tls modes"
        );
    }
}
