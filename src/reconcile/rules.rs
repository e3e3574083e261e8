//! Stored rules (contract section 9): a stored DestinationRule whose verdict has a
//! fill or a patch ("left behind", section 8) gets the JSON Patch the mutating
//! webhook would send, after a `test` of its `metadata.resourceVersion`, so that
//! a concurrent writer wins and the rule is judged again on the next snapshot.

use crate::decision::{judge, reached_between, Reached};
use crate::enforcement;
use crate::model::{DestinationRule, ObjectKind, ObjectRef};
use crate::patch::{self, Change};
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch, PatchOperation, TestOperation};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The change of one stored rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RulePatch {
    pub rule: ObjectRef,
    /// The resourceVersion the patch was planned against (its first operation tests it).
    pub resource_version: String,
    pub patch: Patch,
    /// What each change does and why, as the mutating webhook's warnings say it.
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulePlan {
    /// By namespace, then name. Shared with the pass that keeps them
    /// ([`RulePasses`]), which hands out each pass's plan whole.
    pub patches: Vec<Arc<RulePatch>>,
    /// Rules with a fill or patch that are left alone: a conflict or an invalid
    /// mode remains, which the validating webhook would refuse in the same write.
    /// Conflicts are the author's to settle (section 9), reported by the audit.
    pub held: Vec<ObjectRef>,
}

/// What a pass makes of one stored rule that it does not leave alone.
#[derive(Debug, Clone, PartialEq)]
enum Planned {
    Patch(Arc<RulePatch>),
    Held(ObjectRef),
}

/// Plans the patch of every stored rule that has a fill or a patch, in a namespace
/// whose mode is `enforce` (in `warn` and `off` the mutating webhook changes nothing).
pub fn plan_rules(snapshot: &Snapshot, settings: &Settings) -> RulePlan {
    let planned = snapshot
        .rules()
        .filter_map(|rule| plan_rule(snapshot, settings, rule));
    collect(planned)
}

/// The plan, sorted, from what each rule needs.
fn collect(planned: impl IntoIterator<Item = Planned>) -> RulePlan {
    let mut out = RulePlan::default();
    for p in planned {
        match p {
            Planned::Patch(patch) => out.patches.push(patch),
            Planned::Held(object) => out.held.push(object),
        }
    }
    fn key(o: &ObjectRef) -> (&str, &str) {
        (&o.namespace, &o.name)
    }
    out.patches.sort_by(|a, b| key(&a.rule).cmp(&key(&b.rule)));
    out.held.sort_by(|a, b| key(a).cmp(&key(b)));
    debug_assert!(out
        .patches
        .iter()
        .all(|p| p.rule.kind == ObjectKind::DestinationRule));
    out
}

/// What one stored rule needs: `None` when it is left as it is.
fn plan_rule(snapshot: &Snapshot, settings: &Settings, rule: &DestinationRule) -> Option<Planned> {
    let namespace = rule.metadata.namespace.as_deref()?;
    if !enforcement::mode_for(snapshot, settings, namespace).enforces() {
        return None;
    }
    let verdict = judge(snapshot, settings, rule, namespace);
    if !verdict.has_change() {
        return None;
    }
    let object = verdict.rule.clone();
    if verdict.has_conflict() || !verdict.invalid_modes.is_empty() {
        return Some(Planned::Held(object));
    }
    // Only a rule read from the cluster has one, and nothing else can be tested.
    let resource_version = rule.metadata.resource_version.clone()?;
    let plan = patch::plan(&verdict, &rule.spec);
    if plan.is_empty() {
        return None;
    }
    let mut ops = Vec::with_capacity(plan.patch.0.len() + 1);
    ops.push(resource_version_test(&resource_version));
    ops.extend(plan.patch.0);
    Some(Planned::Patch(Arc::new(RulePatch {
        rule: object,
        resource_version,
        patch: Patch(ops),
        changes: plan.changes,
    })))
}

/// How a pass of [`RulePasses::plan`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassReport {
    /// Every rule was judged (the first pass, one after [`RulePasses::reset`], a mesh-level
    /// change, the settings changed, or most namespaces changed).
    pub full: bool,
    /// Rules judged in this pass.
    pub judged: usize,
}

/// The stored-rules reconciler's passes, each judging only the rules the changes
/// since the last one can reach ([`reached_between`], the reach of section 8's
/// change review), and planning exactly what [`plan_rules`] would.
///
/// It keeps the snapshot and settings of the last pass (a clone: the index is shared)
/// and what each rule needed then. Pure, like the rest of the planning.
#[derive(Debug, Clone, Default)]
pub struct RulePasses {
    last: Option<Last>,
    /// Rules with a patch or held, by (namespace, name).
    planned: BTreeMap<(String, String), Planned>,
}

impl RulePasses {
    /// Forgets the last pass: the next one judges every rule (after a re-list or a
    /// new Lease holder, and now and then as a safety net).
    pub fn reset(&mut self) {
        *self = RulePasses::default();
    }

    /// Plans a pass over `snapshot`: the same plan as [`plan_rules`]'s.
    pub fn plan(&mut self, snapshot: &Snapshot, settings: &Settings) -> (RulePlan, PassReport) {
        self.plan_over(snapshot, snapshot, settings, Overlay::new())
    }

    /// Plans a pass over `judged`, which is `base` with `overlay` laid over it (the
    /// exemptions in place, [`super::plan_pass`]). `judged` is built again on each
    /// pass, so what changed is learnt from `base` and the overlay: a namespace whose
    /// index is the same in `base` and whose overlay is the same is the same in
    /// `judged`. An overlay that changes in the root namespace reaches every rule.
    pub(crate) fn plan_over(
        &mut self,
        base: &Snapshot,
        judged: &Snapshot,
        settings: &Settings,
        overlay: Overlay,
    ) -> (RulePlan, PassReport) {
        let reached = match &self.last {
            Some(last) if last.settings == *settings => {
                let mut reached = reached_between(&last.base, base, settings);
                let moved = last
                    .overlay
                    .keys()
                    .chain(overlay.keys())
                    .filter(|ns| last.overlay.get(*ns) != overlay.get(*ns));
                for ns in moved {
                    if *ns == settings.root_namespace {
                        reached = Reached::all();
                    }
                    if reached.all {
                        break;
                    }
                    reached.namespaces.insert(ns.clone());
                }
                reached
            }
            _ => Reached::all(),
        };
        let snapshot = judged;
        let mut report = PassReport::default();
        match reached.rules(snapshot) {
            None => {
                report.full = true;
                self.planned.clear();
                for rule in snapshot.rules() {
                    report.judged += 1;
                    if let Some(p) = plan_rule(snapshot, settings, rule) {
                        self.planned.insert(key_of(&p), p);
                    }
                }
            }
            Some(rules) => {
                // Rules of a changed namespace may be gone: its entries go, and its
                // stored rules are among those judged again.
                for ns in &reached.namespaces {
                    let from = (ns.clone(), String::new());
                    let gone: Vec<(String, String)> = self
                        .planned
                        .range(from..)
                        .take_while(|(k, _)| &k.0 == ns)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in gone {
                        self.planned.remove(&k);
                    }
                }
                for rule in rules {
                    report.judged += 1;
                    let key = (
                        rule.metadata.namespace.clone().unwrap_or_default(),
                        rule.metadata.name.clone().unwrap_or_default(),
                    );
                    match plan_rule(snapshot, settings, rule) {
                        Some(p) => {
                            self.planned.insert(key_of(&p), p);
                        }
                        None => {
                            self.planned.remove(&key);
                        }
                    }
                }
            }
        }
        self.last = Some(Last {
            base: base.clone(),
            settings: settings.clone(),
            overlay,
        });
        (collect(self.planned.values().cloned()), report)
    }
}

/// What a [`RulePasses`] keeps of its last pass.
#[derive(Debug, Clone)]
struct Last {
    base: Snapshot,
    settings: Settings,
    overlay: Overlay,
}

/// What is laid over a snapshot before its rules are judged, by namespace: the
/// objects taken out (kind and name, sorted) and those put in (their manifests).
pub(crate) type Overlay = BTreeMap<String, (Vec<(ObjectKind, String)>, Vec<Value>)>;

fn key_of(p: &Planned) -> (String, String) {
    let o = match p {
        Planned::Patch(patch) => &patch.rule,
        Planned::Held(o) => o,
    };
    (o.namespace.clone(), o.name.clone())
}

/// `{"op": "test", "path": "/metadata/resourceVersion", "value": RV}`.
fn resource_version_test(resource_version: &str) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
        value: Value::String(resource_version.to_string()),
    })
}
