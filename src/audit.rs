//! The audit (contract section 8, issue 10): every DestinationRule stored in a
//! snapshot judged as `check` judges a file's, so that rules broken or left behind
//! by changes to other objects are seen without waiting for the rule to be written.
//!
//! Pure: `check --cluster` runs it over the snapshot listed from the cluster, and
//! `serve` over the snapshot its reviews use (`GET /audit`, the findings gauge).
//! The judging and the grouping by fix are `check`'s ([`check::judge_rule`]), so
//! the codes, the messages and the modes are the same.

use crate::check::{self, Counts, Report, RuleReport, STRICT_BACKEND_CODE};
use crate::decision::{strict_backends, StrictBackend};
use crate::enforcement;
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Judges the stored DestinationRules of `namespace` (every namespace when `None`)
/// against the whole snapshot, in (namespace, name) order. The report's notes are the
/// snapshot's (what it could not use).
pub fn audit(snapshot: &Snapshot, settings: &Settings, namespace: Option<&str>) -> Report {
    let mut rules: Vec<_> = match namespace {
        Some(ns) => snapshot.rules_in(ns).collect(),
        None => snapshot.rules().collect(),
    };
    rules.sort_unstable_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let rules = rules
        .into_iter()
        .map(|rule| {
            let ns = rule.metadata.namespace.as_deref().unwrap_or_default();
            check::judge_rule(snapshot, settings, rule, ns, None)
        })
        .collect();
    // Section 8: the audit also lists every webhook or APIService backend already
    // STRICT, in the mode of the Service's namespace.
    let backends = strict_backends(snapshot, settings)
        .into_iter()
        .filter(|b| namespace.is_none_or(|ns| b.backend.namespace == ns))
        .filter(|b| enforcement::mode_for(snapshot, settings, &b.backend.namespace).judges())
        .collect();
    Report {
        rules,
        notes: snapshot.notes(),
        backends,
    }
}

/// An audit as the server keeps it: the counts of the whole report and only the
/// rules that have findings (a clean rule costs nothing to keep).
#[derive(Debug, Clone)]
pub struct Findings {
    pub counts: Counts,
    pub summary: String,
    /// The rules with findings, in (namespace, name) order.
    pub report: Arc<Report>,
}

impl Findings {
    pub fn new(mut report: Report) -> Findings {
        let counts = report.counts();
        let summary = report.summary();
        report.rules.retain(|r| !r.diagnostics.is_empty());
        report.rules.shrink_to_fit();
        Findings {
            counts,
            summary,
            report: Arc::new(report),
        }
    }

    /// Findings by the rule's namespace and code (the gauge's series).
    pub fn by_namespace_and_code(&self) -> BTreeMap<(&str, &'static str), usize> {
        count_by_namespace_and_code(&self.report.rules, &self.report.backends)
    }

    /// The JSON body of `GET /audit`: every finding in `check --output json`'s
    /// shape (the rule is the object; no file) of `namespace` (all when `None`), the
    /// counts of the whole audit, the snapshot's notes, and when it was computed.
    pub fn to_json(
        &self,
        computed_at_unix: f64,
        duration_seconds: f64,
        namespace: Option<&str>,
    ) -> Value {
        let c = &self.counts;
        let findings = match namespace {
            None => self.report.render_json(),
            Some(ns) => Report {
                rules: self
                    .report
                    .rules
                    .iter()
                    .filter(|r| r.rule.namespace == ns)
                    .cloned()
                    .collect(),
                notes: Vec::new(),
                backends: self
                    .report
                    .backends
                    .iter()
                    .filter(|b| b.backend.namespace == ns)
                    .cloned()
                    .collect(),
            }
            .render_json(),
        };
        let at = time::OffsetDateTime::from_unix_timestamp_nanos((computed_at_unix * 1e9) as i128)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        json!({
            "computed_at": at,
            "computed_at_unix": computed_at_unix,
            "duration_seconds": duration_seconds,
            "summary": self.summary,
            "counts": {
                "rules": c.rules,
                "conflicts": c.conflicts,
                "fills": c.fills,
                "patches": c.patches,
                "warnings": c.warnings,
                "invalid_modes": c.invalid_modes,
                "rules_warn": c.rules_warn,
                "rules_off": c.rules_off,
                "strict_backends": c.strict_backends,
            },
            "findings": findings,
            "notes": self.report.notes,
        })
    }
}

/// Findings (diagnostics) by the rule's namespace and code; STRICT backends by
/// their Service's namespace.
pub fn count_by_namespace_and_code<'a>(
    rules: &'a [RuleReport],
    backends: &'a [StrictBackend],
) -> BTreeMap<(&'a str, &'static str), usize> {
    let mut out = BTreeMap::new();
    for r in rules {
        for d in &r.diagnostics {
            *out.entry((r.rule.namespace.as_str(), d.code)).or_default() += 1;
        }
    }
    for b in backends {
        *out.entry((b.backend.namespace.as_str(), STRICT_BACKEND_CODE))
            .or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforcement::Mode;
    use crate::loader;
    use crate::model::MeshObject;

    const MESH: &str = "\
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: bookinfo}
spec:
  peers: [{mtls: {}}]
---
apiVersion: v1
kind: Namespace
metadata: {name: quiet, labels: {mtls-guard.io/mode: 'off'}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b-ok, namespace: bookinfo}
spec:
  host: ratings
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a-fill, namespace: bookinfo}
spec:
  host: details
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ignored, namespace: quiet}
spec:
  host: reviews.bookinfo.svc.cluster.local
  trafficPolicy: {tls: {mode: DISABLE}}
";

    fn objects() -> Vec<MeshObject> {
        loader::parse_str(MESH, "mesh.yaml")
            .expect("parses")
            .objects
    }

    #[test]
    fn every_stored_rule_is_judged_as_check_judges_it() {
        let loaded = loader::parse_str(MESH, "mesh.yaml").unwrap();
        let settings = Settings::default();
        let from_files = check::check(&loaded, &settings);
        let stored = audit(&Snapshot::from_objects(objects()), &settings, None);
        // Same rules (in namespace, name order), same findings; no file.
        let names = |r: &Report| -> Vec<String> {
            r.rules
                .iter()
                .map(|r| format!("{}/{}", r.rule.namespace, r.rule.name))
                .collect()
        };
        assert_eq!(
            names(&stored),
            [
                "bookinfo/a-fill",
                "bookinfo/b-ok",
                "bookinfo/reviews",
                "quiet/ignored"
            ]
        );
        for r in &stored.rules {
            let same = from_files.rules.iter().find(|f| f.rule == r.rule).unwrap();
            assert_eq!(r.diagnostics, same.diagnostics, "{}", r.rule);
            assert_eq!(r.patch, same.patch);
            assert!(r.origin.is_none());
        }
        assert_eq!(stored.counts(), from_files.counts());
        assert_eq!(stored.exit_code(), check::EXIT_CONFLICT);
        // The rule in mode off is counted, not judged.
        assert_eq!(stored.rules[3].mode, Mode::Off);
        assert!(stored.rules[3].diagnostics.is_empty());
        let text = stored.render_text(false);
        assert!(
            text.starts_with(
                "cluster: warning MG102 DestinationRule bookinfo/a-fill: would fill: "
            ),
            "{text}"
        );
        assert!(
            text.contains("cluster: error MG101 DestinationRule bookinfo/reviews: reviews.bookinfo.svc.cluster.local port 9080: tls mode DISABLE, but Policy bookinfo/default requires mutual TLS (STRICT)"),
            "{text}"
        );
        let json = stored.render_json();
        assert_eq!(json[0]["file"], Value::Null);
        assert_eq!(json[0]["document"], Value::Null);
    }

    #[test]
    fn one_namespace_is_judged_against_the_whole_snapshot() {
        let snapshot = Snapshot::from_objects(objects());
        let r = audit(&snapshot, &Settings::default(), Some("quiet"));
        assert_eq!(r.rules.len(), 1);
        let warn = Settings {
            mode: Mode::Warn,
            ..Settings::default()
        };
        let r = audit(&snapshot, &warn, Some("bookinfo"));
        assert_eq!(r.rules.len(), 3);
        // Mode warn: reported, not failing.
        assert_eq!(r.exit_code(), check::EXIT_OK);
        assert_eq!(r.counts().conflicts, 1);
        assert!(audit(&snapshot, &warn, Some("nowhere")).rules.is_empty());
    }

    #[test]
    fn findings_keep_the_counts_and_only_rules_with_findings() {
        let snapshot = Snapshot::from_objects(objects());
        let full = audit(&snapshot, &Settings::default(), None);
        let findings = Findings::new(full.clone());
        assert_eq!(findings.counts, full.counts());
        assert_eq!(findings.summary, full.summary());
        let kept: Vec<&str> = findings
            .report
            .rules
            .iter()
            .map(|r| r.rule.name.as_str())
            .collect();
        let by_code = findings.by_namespace_and_code();
        let mut expected: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for r in &full.rules {
            for d in &r.diagnostics {
                *expected.entry(("bookinfo", d.code)).or_default() += 1;
            }
        }
        assert_eq!(by_code, expected);
        assert!(by_code[&("bookinfo", "MG101")] == 1, "{by_code:?}");
        assert!(
            !kept.contains(&"b-ok") && kept.contains(&"reviews"),
            "{kept:?}"
        );
        let body = findings.to_json(1.5, 0.25, None);
        assert_eq!(body["computed_at"], "1970-01-01T00:00:01.5Z");
        assert_eq!(body["computed_at_unix"], 1.5);
        assert!(findings.to_json(1.5, 0.25, Some("other"))["findings"]
            .as_array()
            .unwrap()
            .is_empty());
        assert_eq!(body["counts"]["rules"], 4);
        assert_eq!(
            body["findings"].as_array().unwrap().len(),
            by_code.values().sum::<usize>()
        );
        let conflict = body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "MG101")
            .unwrap();
        assert_eq!(
            conflict["rule"],
            json!({"namespace": "bookinfo", "name": "reviews"})
        );
        assert_eq!(conflict["required"], "ISTIO_MUTUAL");
        assert_eq!(conflict["scopes"], json!([{"port": 9080, "subset": null}]));
        assert_eq!(
            conflict["fix"],
            "set spec.trafficPolicy.tls.mode to ISTIO_MUTUAL"
        );
    }

    #[test]
    fn webhook_and_apiservice_backends_already_strict_are_listed() {
        let callers = "\
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: policy-engine}
webhooks:
- name: validate.policy-engine.io
  clientConfig:
    service: {namespace: bookinfo, name: reviews, port: 9080}
  admissionReviewVersions: [v1]
  sideEffects: None
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.quiet.example.com}
spec:
  service: {namespace: quiet, name: api, port: 443}
";
        let objects = loader::parse_str(&format!("{MESH}{callers}"), "mesh.yaml")
            .unwrap()
            .objects;
        let snapshot = Snapshot::from_objects(objects);
        let report = audit(&snapshot, &Settings::default(), None);
        // bookinfo's Policy default is STRICT; quiet is in mode off.
        assert_eq!(report.backends.len(), 1, "{:?}", report.backends);
        let text = report.render_text(false);
        assert!(
            text.contains("cluster: warning MG210 ValidatingWebhookConfiguration policy-engine: Service bookinfo/reviews port 9080 requires mutual TLS (STRICT) by Policy bookinfo/default"),
            "{text}"
        );
        assert!(
            text.ends_with("; 1 rules in mode off (not checked); 1 webhook backends STRICT\n"),
            "{text}"
        );
        let json = report.render_json();
        let backend = json.as_array().unwrap().last().unwrap();
        assert_eq!(backend["code"], "MG210");
        assert_eq!(
            backend["object"],
            json!({"kind": "ValidatingWebhookConfiguration", "namespace": "", "name": "policy-engine"})
        );
        assert_eq!(
            backend["service"],
            json!({"namespace": "bookinfo", "name": "reviews", "port": 9080})
        );
        assert_eq!(backend["webhooks"], json!(["validate.policy-engine.io"]));
        let findings = Findings::new(report);
        assert_eq!(findings.by_namespace_and_code()[&("bookinfo", "MG210")], 1);
        assert_eq!(findings.counts.strict_backends, 1);
        assert!(audit(&snapshot, &Settings::default(), Some("quiet"))
            .backends
            .is_empty());
        assert_eq!(
            findings.to_json(0.0, 0.0, Some("bookinfo"))["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["code"] == "MG210")
                .count(),
            1
        );
    }
}
