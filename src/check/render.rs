//! Rendering a [`Report`]: the text lines with their summary, and the JSON array
//! (both documented in docs/codes.md).

use super::{DiagnosticKind, Report, RuleReport, Severity};
use crate::decision::StrictBackend;
use crate::enforcement::Mode;
use serde_json::{json, Value};
use std::fmt::Write as _;

impl Report {
    /// `4 rules, 0 conflicts, 0 fills, 1 patches`, and the rules not enforced, if any.
    pub fn summary(&self) -> String {
        let c = self.counts();
        let mut s = format!(
            "{} rules, {} conflicts, {} fills, {} patches",
            c.rules, c.conflicts, c.fills, c.patches
        );
        if c.invalid_modes > 0 {
            let _ = write!(s, "; {} invalid tls modes", c.invalid_modes);
        }
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
        if c.strict_backends > 0 {
            let _ = write!(s, "; {} webhook backends STRICT", c.strict_backends);
        }
        s
    }

    /// The text output: one line per diagnostic, then the summary line.
    pub fn render_text(&self, verbose: bool) -> String {
        let mut out = String::new();
        for r in &self.rules {
            let origin = r.place();
            let subject = format!("DestinationRule {}/{}", r.rule.namespace, r.rule.name);
            if verbose && r.mode == Mode::Off {
                let _ = writeln!(out, "{origin}: note {subject}: not checked: mode off");
            } else if verbose && r.diagnostics.is_empty() {
                let _ = writeln!(
                    out,
                    "{origin}: ok {subject}: {}: {} scopes consistent",
                    r.host, r.scopes
                );
            }
            for d in &r.diagnostics {
                let _ = write!(
                    out,
                    "{origin}: {} {} {subject}: {}",
                    d.severity, d.code, d.message
                );
                if let Some(fix) = &d.fix {
                    let _ = write!(out, " (fix: {fix})");
                }
                out.push('\n');
            }
        }
        for b in &self.backends {
            let _ = writeln!(
                out,
                "{STORED_ORIGIN}: warning {STRICT_BACKEND_CODE} {}: {} (fix: {})",
                b.backend.caller,
                b.message(),
                backend_fix(b)
            );
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
                    "file": r.origin.as_ref().map(|o| o.path.display().to_string()),
                    "line": r.origin.as_ref().and_then(|o| o.line),
                    "document": r.origin.as_ref().map(|o| o.document + 1),
                    "item": r.origin.as_ref().and_then(|o| o.item),
                    "severity": d.severity,
                    "code": d.code,
                    "kind": d.kind,
                    "mode": r.mode.to_string(),
                    "object": { "kind": r.rule.kind.name(), "namespace": r.rule.namespace, "name": r.rule.name },
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
        for b in &self.backends {
            let caller = &b.backend.caller;
            out.push(json!({
                "file": null,
                "line": null,
                "document": null,
                "item": null,
                "severity": Severity::Warning,
                "code": STRICT_BACKEND_CODE,
                "kind": "strict-backend",
                "mode": null,
                "object": { "kind": caller.kind.name(), "namespace": caller.namespace, "name": caller.name },
                "rule": null,
                "host": null,
                "service": { "namespace": b.backend.namespace, "name": b.backend.service, "port": b.backend.port },
                "webhooks": b.backend.webhooks,
                "scopes": [{ "port": b.backend.port, "subset": null }],
                "client": null,
                "required": null,
                "location": null,
                "message": b.message(),
                "fix": backend_fix(b),
                "patch": null,
            }));
        }
        Value::Array(out)
    }
}

/// The code of a webhook or APIService backend already STRICT (docs/codes.md).
pub const STRICT_BACKEND_CODE: &str = "MG210";

fn backend_fix(b: &StrictBackend) -> String {
    format!(
        "make port {} of Service {}/{} accept plaintext (PERMISSIVE) on the server side",
        b.backend.port, b.backend.namespace, b.backend.service
    )
}

/// What a text line starts with for a rule that was not read from a file.
pub const STORED_ORIGIN: &str = "cluster";

impl RuleReport {
    /// `FILE:LINE` of a rule read from a file; [`STORED_ORIGIN`] for a stored one.
    fn place(&self) -> String {
        match &self.origin {
            Some(origin) => origin.to_string(),
            None => STORED_ORIGIN.to_string(),
        }
    }
}
