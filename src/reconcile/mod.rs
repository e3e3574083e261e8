//! The opt-in reconcilers of contract section 9: what should change in the
//! cluster so that stored objects keep in step with the snapshot.
//!
//! Planning is pure (a snapshot, the settings and the objects mtls-guard already
//! manages in, a [`Plan`] out): [`exemption`] plans the server-side exemptions,
//! [`rules`] the patches of stored DestinationRules. The cluster I/O (Lease,
//! writes, Events, metrics) lives beside it and only carries a plan out.

pub mod cluster;
pub mod exemption;
pub mod rules;

pub use exemption::{
    plan_exemptions, ExemptionAction, ExemptionApi, ExemptionPlan, Managed, Notice, NoticeReason,
    WantedExemption, MANAGED_BY, MANAGED_BY_LABEL, NAME_PREFIX,
};
pub use rules::{plan_rules, PassReport, RulePasses, RulePatch, RulePlan};

use crate::model::MeshObject;
use crate::settings::Settings;
use crate::snapshot::Snapshot;

/// Which reconcilers run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconcilers {
    /// `--reconcile-exemptions`, with the API the cluster serves for them
    /// (`None`: off, or neither PeerAuthentication nor Policy is served).
    pub exemptions: Option<ExemptionApi>,
    /// `--reconcile-rules`.
    pub rules: bool,
}

/// Everything one pass would do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub exemptions: ExemptionPlan,
    pub rules: RulePlan,
}

/// Plans one pass of the reconcilers that are on, judging every stored rule.
/// `managed` holds the exemption objects mtls-guard manages in the cluster
/// (labelled [`MANAGED_BY_LABEL`]).
pub fn plan(
    snapshot: &Snapshot,
    settings: &Settings,
    reconcilers: &Reconcilers,
    managed: &[Managed],
) -> Plan {
    plan_pass(
        snapshot,
        settings,
        reconcilers,
        managed,
        &mut RulePasses::default(),
    )
    .0
}

/// [`plan`], with the stored rules judged only where the changes since the pass
/// `passes` remembers can reach ([`RulePasses`]); every rule when it remembers none.
///
/// Rules are judged against the snapshot as it will be once the exemptions are
/// in place: a rule towards a service whose PERMISSIVE exemption is about to be
/// written may keep `ISTIO_MUTUAL` (section 5), and must not be downgraded first.
/// That snapshot is built again on each pass: what changed is learnt from `snapshot`
/// and the exemptions taken out and put in ([`RulePasses`]).
pub fn plan_pass(
    snapshot: &Snapshot,
    settings: &Settings,
    reconcilers: &Reconcilers,
    managed: &[Managed],
    passes: &mut RulePasses,
) -> (Plan, PassReport) {
    let mut out = Plan::default();
    let mut after = None;
    if let Some(api) = &reconcilers.exemptions {
        let (exemptions, without_managed) = exemption::plan(snapshot, settings, api, managed);
        if reconcilers.rules {
            let mut next = without_managed;
            for wanted in &exemptions.wanted {
                if let Ok(Some(object)) = MeshObject::from_value(wanted.manifest.clone()) {
                    next.apply(object);
                }
            }
            after = Some(next);
        }
        out.exemptions = exemptions;
    }
    let mut report = PassReport::default();
    if reconcilers.rules {
        let (rules, r) = match &after {
            Some(judged) => {
                let mut overlay = rules::Overlay::new();
                for m in managed {
                    let entry = overlay.entry(m.namespace.clone()).or_default();
                    entry.0.push((m.kind, m.name.clone()));
                }
                for wanted in &out.exemptions.wanted {
                    let entry = overlay.entry(wanted.object.namespace.clone()).or_default();
                    entry.1.push(wanted.manifest.clone());
                }
                for (taken, _) in overlay.values_mut() {
                    taken.sort();
                }
                passes.plan_over(snapshot, judged, settings, overlay)
            }
            None => passes.plan(snapshot, settings),
        };
        out.rules = rules;
        report = r;
    }
    (out, report)
}
#[cfg(test)]
mod tests;
