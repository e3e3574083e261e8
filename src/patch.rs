//! Patch planning (contract section 6, mutating): the RFC 6902 JSON Patch that
//! performs every fill and patch of a verdict and touches nothing else.
//!
//! A change goes where the decision came from. When every port a scope's `tls`
//! covers wants the same mode, that `tls` changes; when only some do, each of
//! them gets its own `portLevelSettings` entry (with a copy of the scope's other
//! settings), and ports the change must not move are pinned to what they had.

use crate::decision::{ClientMode, ClientSource, Finding, Outcome, PortScope, TlsScope, Verdict};
use crate::model::{DestinationRuleSpec, TrafficPolicy, PORT_SETTINGS};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A planned patch and what each of its changes does, for admission warnings
/// and `check`'s fixes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub patch: Patch,
    pub changes: Vec<Change>,
}

/// One change of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The `trafficPolicy` it is made in.
    pub scope: TlsScope,
    /// What was done and where: "set spec.trafficPolicy.tls.mode to DISABLE (was ISTIO_MUTUAL)".
    pub action: String,
    /// Why (which policy or exemption); `None` for a port pinned to its old mode
    /// so that another change does not move it.
    pub reason: Option<String>,
}

impl Change {
    /// The admission warning: what was set, where, and why.
    pub fn warning(&self) -> String {
        match &self.reason {
            Some(reason) => format!("mtls-guard: {} because {reason}", self.action),
            None => format!("mtls-guard: {}", self.action),
        }
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.patch.0.is_empty()
    }
}

/// What one port of a group needs.
struct PortNeed<'a> {
    finding: &'a Finding,
    /// The mode a fill or patch sets; `None` when the port is left as it is.
    set: Option<&'a ClientMode>,
}

/// Plans the patch for `verdict` of the rule whose spec is `spec`.
pub fn plan(verdict: &Verdict, spec: &DestinationRuleSpec) -> Plan {
    let mut plan = Plan::default();
    if !verdict.has_change() {
        return plan;
    }
    let raw = &skeleton(spec);
    // One entry per port and source: subsets that inherit a scope's mode repeat it.
    let mut groups: BTreeMap<ClientSource, BTreeMap<PortScope, PortNeed>> = BTreeMap::new();
    for f in &verdict.findings {
        let set = match &f.outcome {
            Outcome::Fill(m) | Outcome::Patch(m) => Some(m),
            Outcome::Ok | Outcome::Conflict | Outcome::InvalidMode => None,
        };
        groups
            .entry(f.client_source)
            .or_default()
            .entry(f.port.clone())
            .or_insert(PortNeed { finding: f, set });
    }
    let mut builder = Builder {
        raw,
        ops: Vec::new(),
        created: Vec::new(),
    };
    for (source, ports) in &groups {
        if ports.values().all(|p| p.set.is_none()) {
            continue;
        }
        match *source {
            ClientSource::PortEntry(scope, j) => {
                for need in ports.values().filter(|p| p.set.is_some()) {
                    let tls = format!("{}/portLevelSettings/{j}/tls", tp_pointer(scope));
                    builder.set_mode(&tls, need.set.unwrap_or(&ClientMode::Unset));
                    let place = format!("{}.mode", source.describe(spec));
                    plan.changes
                        .push(change(verdict, scope, need, set_action(&place, need)));
                }
            }
            ClientSource::ScopeTls(scope) => plan_scope(
                verdict,
                spec,
                &mut builder,
                &mut plan.changes,
                *source,
                scope,
                ports,
            ),
        }
    }
    plan.patch = Patch(builder.ops);
    plan
}

fn plan_scope(
    verdict: &Verdict,
    spec: &DestinationRuleSpec,
    b: &mut Builder,
    changes: &mut Vec<Change>,
    source: ClientSource,
    scope: TlsScope,
    ports: &BTreeMap<PortScope, PortNeed>,
) {
    let tp = tp_pointer(scope);
    // The scope's `tls` decides for every port of the group, so changing it moves them
    // all: it changes only when every port needs the same mode, or when "every other
    // port" needs one (no port entry can name those). Otherwise each port that needs a
    // change gets its own entry.
    let other = ports.get(&PortScope::Other).and_then(|p| p.set);
    let single = ports
        .values()
        .next()
        .and_then(|p| p.set)
        .filter(|m| ports.values().all(|p| p.set == Some(*m)));
    let scope_mode = other.or(single);
    // What the scope gave before the change, for the ports that must keep it.
    let before = scope_traffic_policy(spec, scope)
        .and_then(|tp| tp.tls.as_ref())
        .map(|tls| tls.raw.value());
    if let Some(mode) = scope_mode {
        b.ensure_object(&tp);
        b.set_mode(&format!("{tp}/tls"), mode);
        let need = ports
            .values()
            .find(|p| p.set == Some(mode))
            .expect("the scope mode comes from a port that needs it");
        let place = format!("{}.mode", source.describe(spec));
        changes.push(change(verdict, scope, need, set_action(&place, need)));
    }
    for (port, need) in ports {
        let Some(number) = port.number() else {
            continue;
        };
        let entry_tls = match (need.set, scope_mode) {
            // Already served by the scope's new mode.
            (Some(m), Some(s)) if m == s => continue,
            (Some(m), _) => Some(json!({ "mode": m.as_str() })),
            (None, None) => continue,
            // The scope's change would move this port: pin what it had (no `tls`: UNSET).
            (None, Some(_)) => before.clone(),
        };
        let mut entry = Map::new();
        entry.insert("port".into(), json!({ "number": number }));
        entry.extend(inherited_settings(spec, scope, number));
        if let Some(tls) = entry_tls {
            entry.insert("tls".into(), tls);
        }
        b.ensure_object(&tp);
        b.ensure_array(&format!("{tp}/portLevelSettings"));
        b.add(&format!("{tp}/portLevelSettings/-"), Value::Object(entry));
        let what = match need.set {
            Some(m) => format!("a portLevelSettings entry for port {number} with tls mode {m}"),
            None => format!(
                "a portLevelSettings entry for port {number} keeping tls mode {}",
                need.finding.client
            ),
        };
        let scope_desc = ClientSource::describe_scope(spec, scope);
        changes.push(match need.set {
            Some(_) => change(verdict, scope, need, format!("added {what} in {scope_desc}")),
            None => Change {
                scope,
                action: format!("added {what} in {scope_desc}, so that the change of {scope_desc}.tls does not move it"),
                reason: None,
            },
        });
    }
}

fn scope_traffic_policy(spec: &DestinationRuleSpec, scope: TlsScope) -> Option<&TrafficPolicy> {
    match scope {
        TlsScope::Top => spec.traffic_policy.as_deref(),
        TlsScope::Subset(i) => spec.subsets.get(i)?.traffic_policy.as_deref(),
    }
}

/// The settings besides TLS that `scope` gives `port` now. A port entry replaces
/// them wholesale (as Istio merges), so a new entry must carry them: a subset's
/// own value, else what the top level gives that port (its port entry, wholesale,
/// or its own value).
fn inherited_settings(
    spec: &DestinationRuleSpec,
    scope: TlsScope,
    port: u32,
) -> Map<String, Value> {
    let top = spec.traffic_policy.as_deref();
    let top_settings = top.map(|tp| match tp.port_entry(port) {
        Some(j) => tp.port_level_settings[j].settings(),
        None => tp.settings(),
    });
    let own = match scope {
        TlsScope::Top => None,
        TlsScope::Subset(_) => scope_traffic_policy(spec, scope).map(TrafficPolicy::settings),
    };
    let mut out = Map::new();
    for (k, key) in PORT_SETTINGS.iter().enumerate() {
        let value = own
            .and_then(|o| o[k])
            .or_else(|| top_settings.and_then(|t| t[k]));
        if let Some(v) = value.filter(|v| !v.is_null()) {
            out.insert(key.to_string(), v.value());
        }
    }
    out
}

/// The parts of the object a plan reads, rebuilt from the typed view: which
/// `trafficPolicy`, `tls` and `portLevelSettings` exist, and each `tls` as
/// written. Patch paths index into the same arrays as the object, so a plan
/// made against this applies to the object.
pub fn skeleton(spec: &DestinationRuleSpec) -> Value {
    fn traffic_policy(tp: &TrafficPolicy) -> Value {
        let mut out = Map::new();
        if let Some(tls) = &tp.tls {
            out.insert("tls".into(), tls.raw.value());
        }
        if !tp.port_level_settings.is_empty() {
            let entries = tp
                .port_level_settings
                .iter()
                .map(|e| match &e.tls {
                    Some(tls) => json!({ "tls": tls.raw.value() }),
                    None => json!({}),
                })
                .collect();
            out.insert("portLevelSettings".into(), Value::Array(entries));
        }
        Value::Object(out)
    }
    let mut out = Map::new();
    if let Some(tp) = &spec.traffic_policy {
        out.insert("trafficPolicy".into(), traffic_policy(tp));
    }
    if !spec.subsets.is_empty() {
        let subsets = spec
            .subsets
            .iter()
            .map(|s| match &s.traffic_policy {
                Some(tp) => json!({ "trafficPolicy": traffic_policy(tp) }),
                None => json!({}),
            })
            .collect();
        out.insert("subsets".into(), Value::Array(subsets));
    }
    json!({ "spec": out })
}

fn tp_pointer(scope: TlsScope) -> String {
    ClientSource::traffic_policy_pointer(scope)
}

/// A change made for `need`, with the reason its finding gives.
fn change(verdict: &Verdict, scope: TlsScope, need: &PortNeed, action: String) -> Change {
    let service = match &verdict.target {
        crate::decision::HostTarget::Service { name, .. } => name.as_str(),
        _ => "the service",
    };
    Change {
        scope,
        action,
        reason: Some(need.finding.reason(service)),
    }
}

/// "set X to M (was N)".
fn set_action(place: &str, need: &PortNeed) -> String {
    let mode = need.set.map_or("", |m| m.as_str());
    match &need.finding.client {
        ClientMode::Unset => format!("set {place} to {mode}"),
        was => format!("set {place} to {mode} (was {was})"),
    }
}

/// Accumulates operations, remembering which parents it has created so that
/// later operations see them (the API server rejects an `add` whose parent is missing).
struct Builder<'a> {
    raw: &'a Value,
    ops: Vec<PatchOperation>,
    created: Vec<(String, Value)>,
}

impl Builder<'_> {
    fn get(&self, pointer: &str) -> Option<&Value> {
        if let Some((_, v)) = self.created.iter().rev().find(|(p, _)| p == pointer) {
            return Some(v);
        }
        if self
            .created
            .iter()
            .any(|(p, _)| pointer.starts_with(&format!("{p}/")))
        {
            // Inside something this plan created empty.
            return None;
        }
        self.raw.pointer(pointer)
    }

    fn add(&mut self, pointer: &str, value: Value) {
        let path = PointerBuf::from_tokens(pointer.trim_start_matches('/').split('/'));
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    fn ensure_object(&mut self, pointer: &str) {
        if !matches!(self.get(pointer), Some(Value::Object(_))) {
            self.add(pointer, json!({}));
            self.created.push((pointer.to_string(), json!({})));
        }
    }

    fn ensure_array(&mut self, pointer: &str) {
        if !matches!(self.get(pointer), Some(Value::Array(_))) {
            self.add(pointer, json!([]));
            self.created.push((pointer.to_string(), json!([])));
        }
    }

    /// Sets `<tls>.mode`, keeping the `tls` object's other fields when it has one.
    fn set_mode(&mut self, tls: &str, mode: &ClientMode) {
        if matches!(self.get(tls), Some(Value::Object(_))) {
            self.add(&format!("{tls}/mode"), json!(mode.as_str()));
        } else {
            self.add(tls, json!({ "mode": mode.as_str() }));
            self.created
                .push((tls.to_string(), json!({ "mode": mode.as_str() })));
        }
    }
}
