//! Stored rules (contract section 9): a stored DestinationRule whose verdict has a
//! fill or a patch ("left behind", section 8) gets the JSON Patch the mutating
//! webhook would send, after a `test` of its `metadata.resourceVersion`, so that
//! a concurrent writer wins and the rule is judged again on the next snapshot.

use crate::decision::judge;
use crate::enforcement;
use crate::model::{ObjectKind, ObjectRef};
use crate::patch::{self, Change};
use crate::settings::Settings;
use crate::snapshot::Snapshot;
use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch, PatchOperation, TestOperation};
use serde_json::Value;

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
    /// By namespace, then name.
    pub patches: Vec<RulePatch>,
    /// Rules with a fill or patch that are left alone: a conflict or an invalid
    /// mode remains, which the validating webhook would refuse in the same write.
    /// Conflicts are the author's to settle (section 9), reported by the audit.
    pub held: Vec<ObjectRef>,
}

/// Plans the patch of every stored rule that has a fill or a patch, in a namespace
/// whose mode is `enforce` (in `warn` and `off` the mutating webhook changes nothing).
pub fn plan_rules(snapshot: &Snapshot, settings: &Settings) -> RulePlan {
    let mut out = RulePlan::default();
    for rule in snapshot.rules() {
        let Some(namespace) = rule.metadata.namespace.as_deref() else {
            continue;
        };
        if !enforcement::mode_for(snapshot, settings, namespace).enforces() {
            continue;
        }
        let verdict = judge(snapshot, settings, rule, namespace);
        if !verdict.has_change() {
            continue;
        }
        let object = verdict.rule.clone();
        if verdict.has_conflict() || !verdict.invalid_modes.is_empty() {
            out.held.push(object);
            continue;
        }
        let Some(resource_version) = rule.metadata.resource_version.clone() else {
            // Only a rule read from the cluster has one, and nothing else can be tested.
            continue;
        };
        let plan = patch::plan(&verdict, &rule.spec);
        if plan.is_empty() {
            continue;
        }
        let mut ops = Vec::with_capacity(plan.patch.0.len() + 1);
        ops.push(resource_version_test(&resource_version));
        ops.extend(plan.patch.0);
        out.patches.push(RulePatch {
            rule: object,
            resource_version,
            patch: Patch(ops),
            changes: plan.changes,
        });
    }
    let key = |o: &ObjectRef| (o.namespace.clone(), o.name.clone());
    out.patches.sort_by_key(|p| key(&p.rule));
    out.held.sort_by_key(key);
    debug_assert!(out
        .patches
        .iter()
        .all(|p| p.rule.kind == ObjectKind::DestinationRule));
    out
}

/// `{"op": "test", "path": "/metadata/resourceVersion", "value": RV}`.
fn resource_version_test(resource_version: &str) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
        value: Value::String(resource_version.to_string()),
    })
}
