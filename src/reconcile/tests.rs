//! The planning core on the Bookinfo examples (contract sections 7 and 9).

use super::*;
use crate::model::{MeshObject, ObjectKind, ObjectRef};
use crate::settings::{IngressGateway, Mode};
use serde_json::{json, Value};
use std::path::PathBuf;

fn load(dirs: &[&str]) -> Vec<MeshObject> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let paths: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    crate::loader::load_paths(&paths).unwrap().objects
}

fn obj(v: Value) -> MeshObject {
    MeshObject::from_value(v).unwrap().unwrap()
}

/// Objects as the cluster source has them: every DestinationRule with a resourceVersion.
fn from_cluster(mut objects: Vec<MeshObject>) -> Snapshot {
    for (i, o) in objects.iter_mut().enumerate() {
        if let MeshObject::DestinationRule(rule, _) = o {
            rule.metadata.resource_version = Some(format!("{}", 700 + i));
        }
    }
    Snapshot::from_objects(objects)
}

fn pa_api() -> ExemptionApi {
    ExemptionApi::peer_authentication("security.istio.io/v1")
}

fn policy_api() -> ExemptionApi {
    ExemptionApi::policy("authentication.istio.io/v1alpha1")
}

fn both(api: ExemptionApi) -> Reconcilers {
    Reconcilers {
        exemptions: Some(api),
        rules: true,
    }
}

fn service(ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Service,
        namespace: ns.into(),
        name: name.into(),
    }
}

/// A managed object as the API server returns it after a create of `manifest`.
fn stored(manifest: &Value, resource_version: &str) -> Managed {
    let mut object = manifest.clone();
    object["metadata"]["resourceVersion"] = json!(resource_version);
    object["metadata"]["uid"] = json!("0b1c6a8e-0000-4000-8000-000000000001");
    let kind = ObjectKind::named(object["kind"].as_str().unwrap()).unwrap();
    Managed::from_object(kind, object).expect("labelled")
}

fn creates(plan: &ExemptionPlan) -> Vec<&Value> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            ExemptionAction::Create(w) => Some(&w.manifest),
            _ => None,
        })
        .collect()
}

/// Section 7: Policy `default` STRICT, productpage behind a plain Ingress, no Istio
/// ingress gateway, a cluster without PeerAuthentication: the tutorial's own
/// exemption, a Policy targeting productpage without `peers`. Judged with it, the
/// productpage rule needs DISABLE (case (b)), patched after a test of its resourceVersion.
#[test]
fn s9_bookinfo_with_policies_only_gets_the_tutorials_policy_and_the_rule_patch() {
    let snapshot = from_cluster(load(&["bookinfo"]));
    let plan = plan(&snapshot, &Settings::default(), &both(policy_api()), &[]);
    assert_eq!(
        creates(&plan.exemptions),
        vec![&json!({
            "apiVersion": "authentication.istio.io/v1alpha1",
            "kind": "Policy",
            "metadata": {
                "name": "mtls-guard-exempt-productpage",
                "namespace": "bookinfo",
                "labels": {"app.kubernetes.io/managed-by": "mtls-guard"},
            },
            "spec": {"targets": [{"name": "productpage"}]},
        })]
    );
    assert_eq!(plan.exemptions.actions.len(), 1);
    assert!(plan.exemptions.notices.is_empty());
    let wanted = &plan.exemptions.wanted[0];
    assert_eq!(wanted.service, service("bookinfo", "productpage"));
    assert_eq!(wanted.ports, vec![9080]);
    assert!(
        wanted.reason.contains("non-mesh Ingress bookinfo/bookinfo"),
        "{}",
        wanted.reason
    );

    assert_eq!(plan.rules.patches.len(), 1, "{:?}", plan.rules);
    let patch = &plan.rules.patches[0];
    assert_eq!(patch.rule.name, "productpage");
    assert_eq!(
        serde_json::to_value(&patch.patch).unwrap(),
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": patch.resource_version},
            {"op": "add", "path": "/spec/trafficPolicy/tls/mode", "value": "DISABLE"},
        ])
    );
    assert!(
        patch.changes[0]
            .warning()
            .contains("Policy bookinfo/mtls-guard-exempt-productpage exempts productpage"),
        "{:?}",
        patch.changes
    );
}

/// Where the cluster serves PeerAuthentication: one selecting productpage's pods,
/// PERMISSIVE for the whole workload (its only port is exempt). With it the rule may
/// keep ISTIO_MUTUAL (section 5), so no rule is patched.
#[test]
fn s9_bookinfo_with_peer_authentication_gets_a_permissive_workload_and_no_rule_patch() {
    let snapshot = from_cluster(load(&["bookinfo"]));
    let plan = plan(&snapshot, &Settings::default(), &both(pa_api()), &[]);
    assert_eq!(
        creates(&plan.exemptions),
        vec![&json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {
                "name": "mtls-guard-exempt-productpage",
                "namespace": "bookinfo",
                "labels": {"app.kubernetes.io/managed-by": "mtls-guard"},
            },
            "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "mtls": {"mode": "PERMISSIVE"}},
        })]
    );
    assert_eq!(plan.rules, RulePlan::default());
    // Without the exemption reconciler, the rule is patched as the webhook would.
    let rules_only = Reconcilers {
        exemptions: None,
        rules: true,
    };
    let plan = super::plan(&snapshot, &Settings::default(), &rules_only, &[]);
    assert_eq!(plan.rules.patches.len(), 1);
    assert_eq!(plan.exemptions, ExemptionPlan::default());
}

/// Once created, the exemption is judged away (it makes its own port PERMISSIVE):
/// the next pass must keep it, not delete it.
#[test]
fn s9_an_exemption_in_place_is_kept_unchanged() {
    let objects = load(&["bookinfo"]);
    let first = plan_exemptions(
        &Snapshot::from_objects(objects.clone()),
        &Settings::default(),
        &pa_api(),
        &[],
    );
    let managed = stored(&first.wanted[0].manifest, "801");
    let mut with_it = objects;
    with_it.push(obj(managed.object.clone()));
    let again = plan_exemptions(
        &Snapshot::from_objects(with_it),
        &Settings::default(),
        &pa_api(),
        std::slice::from_ref(&managed),
    );
    assert_eq!(again.actions, vec![]);
    assert_eq!(again.wanted, first.wanted);
}

/// The Service's selector changed: the managed object is updated, keeping its
/// metadata (resourceVersion included, so a concurrent change makes the write fail).
#[test]
fn s9_a_changed_selector_updates_the_managed_exemption() {
    let mut objects = load(&["bookinfo"]);
    let first = plan_exemptions(
        &Snapshot::from_objects(objects.clone()),
        &Settings::default(),
        &pa_api(),
        &[],
    );
    let managed = stored(&first.wanted[0].manifest, "801");
    objects.push(obj(managed.object.clone()));
    objects.push(obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "productpage", "namespace": "bookinfo"},
        "spec": {"selector": {"app": "productpage", "version": "v1"}, "ports": [{"name": "http", "port": 9080}]},
    })));
    let plan = plan_exemptions(
        &Snapshot::from_objects(objects),
        &Settings::default(),
        &pa_api(),
        std::slice::from_ref(&managed),
    );
    let [ExemptionAction::Update { manifest, wanted }] = plan.actions.as_slice() else {
        panic!("{:?}", plan.actions);
    };
    assert_eq!(wanted.object.name, "mtls-guard-exempt-productpage");
    assert_eq!(manifest["metadata"]["resourceVersion"], "801");
    assert_eq!(
        manifest["metadata"]["uid"],
        managed.object["metadata"]["uid"]
    );
    assert_eq!(
        manifest["spec"]["selector"]["matchLabels"],
        json!({"app": "productpage", "version": "v1"})
    );
}

/// With an Istio ingress gateway, productpage is no longer exempt: the managed
/// exemption is deleted (with its resourceVersion as precondition).
#[test]
fn s9_a_service_no_longer_exempt_loses_its_exemption() {
    let mut objects = load(&["bookinfo"]);
    let first = plan_exemptions(
        &Snapshot::from_objects(objects.clone()),
        &Settings::default(),
        &pa_api(),
        &[],
    );
    let managed = stored(&first.wanted[0].manifest, "801");
    objects.push(obj(managed.object.clone()));
    let settings = Settings {
        ingress_gateway: IngressGateway::Present,
        ..Settings::default()
    };
    let plan = plan_exemptions(
        &Snapshot::from_objects(objects),
        &settings,
        &pa_api(),
        std::slice::from_ref(&managed),
    );
    assert_eq!(
        plan.actions,
        vec![ExemptionAction::Delete {
            object: managed.object_ref(),
            resource_version: Some("801".into()),
        }]
    );
    assert!(plan.wanted.is_empty());
}

/// The tutorial's own `disable-mtls-productpage` is in place: productpage's server
/// side no longer requires mutual TLS, nothing is written.
#[test]
fn s9_the_tutorials_own_exemption_needs_none_from_mtls_guard() {
    let snapshot = Snapshot::from_objects(load(&["bookinfo", "bookinfo-exemption"]));
    for api in [pa_api(), policy_api()] {
        let plan = plan_exemptions(&snapshot, &Settings::default(), &api, &[]);
        assert_eq!(plan, ExemptionPlan::default());
    }
}

/// An object named `mtls-guard-exempt-productpage` without the label is never
/// touched: no create (it would clash), no update, no delete; a notice names it.
#[test]
fn s9_an_object_without_the_label_is_left_alone() {
    let mut objects = load(&["bookinfo"]);
    objects.push(obj(json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "mtls-guard-exempt-productpage", "namespace": "bookinfo",
                     "labels": {"team": "shop"}},
        "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "mtls": {"mode": "STRICT"}},
    })));
    let snapshot = Snapshot::from_objects(objects);
    // Listed by label, it would not be among the managed objects either.
    let unlabelled = json!({"kind": "PeerAuthentication", "metadata": {"name": "x", "namespace": "bookinfo", "labels": {"team": "shop"}}});
    assert_eq!(
        Managed::from_object(ObjectKind::PeerAuthentication, unlabelled),
        None
    );
    let plan = plan_exemptions(&snapshot, &Settings::default(), &pa_api(), &[]);
    assert_eq!(plan.actions, vec![]);
    assert_eq!(plan.notices.len(), 1);
    assert_eq!(plan.notices[0].reason, NoticeReason::NotManaged);
    assert_eq!(
        plan.notices[0].object.to_string(),
        "PeerAuthentication bookinfo/mtls-guard-exempt-productpage"
    );
}

/// A Service without a selector gets no exemption and a warning notice.
#[test]
fn s9_a_service_without_a_selector_gets_a_notice_only() {
    let mut objects = load(&["bookinfo"]);
    objects.push(obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "productpage", "namespace": "bookinfo"},
        "spec": {"ports": [{"name": "http", "port": 9080}]},
    })));
    let plan = plan_exemptions(
        &Snapshot::from_objects(objects),
        &Settings::default(),
        &pa_api(),
        &[],
    );
    assert_eq!(plan.actions, vec![]);
    assert_eq!(
        plan.notices
            .iter()
            .map(|n| (&n.object, n.reason))
            .collect::<Vec<_>>(),
        vec![(
            &service("bookinfo", "productpage"),
            NoticeReason::NoSelector
        )]
    );
    assert!(plan.notices[0].message.contains("no selector"));
}

/// Section 4 (c): the Bookinfo gateway example exempts productpage's only port.
/// With a second, unrouted port, only the routed port's target port is PERMISSIVE
/// (or, as a Policy, only that port is listed).
#[test]
fn s9_a_gateway_route_exempts_only_its_port() {
    let snapshot = Snapshot::from_objects(load(&["bookinfo-gateway"]));
    let plan = plan_exemptions(&snapshot, &Settings::default(), &pa_api(), &[]);
    assert_eq!(
        creates(&plan)
            .iter()
            .map(|m| (&m["metadata"]["name"], &m["spec"]))
            .collect::<Vec<_>>(),
        vec![(
            &json!("mtls-guard-exempt-productpage"),
            &json!({"selector": {"matchLabels": {"app": "productpage"}}, "mtls": {"mode": "PERMISSIVE"}})
        )]
    );
    assert!(plan.wanted[0]
        .reason
        .contains("HTTPRoute bookinfo-gw/productpage"));

    let mut objects = load(&["bookinfo-gateway"]);
    objects.push(obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "productpage", "namespace": "bookinfo-gw"},
        "spec": {"selector": {"app": "productpage"}, "ports": [
            {"name": "http", "port": 9080, "targetPort": 8080},
            {"name": "admin", "port": 9443}]},
    })));
    let snapshot = Snapshot::from_objects(objects);
    let plan = plan_exemptions(&snapshot, &Settings::default(), &pa_api(), &[]);
    assert_eq!(
        creates(&plan)[0]["spec"],
        json!({"selector": {"matchLabels": {"app": "productpage"}},
               "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}})
    );
    assert_eq!(plan.wanted[0].ports, vec![9080]);
    let plan = plan_exemptions(&snapshot, &Settings::default(), &policy_api(), &[]);
    assert_eq!(
        creates(&plan)[0]["spec"],
        json!({"targets": [{"name": "productpage", "ports": [{"number": 9080}]}]})
    );
    // Its own exemption in place (examples/bookinfo-gateway-exemption): nothing to do.
    let snapshot =
        Snapshot::from_objects(load(&["bookinfo-gateway", "bookinfo-gateway-exemption"]));
    assert_eq!(
        plan_exemptions(&snapshot, &Settings::default(), &pa_api(), &[]),
        ExemptionPlan::default()
    );
}

/// A named targetPort cannot be keyed in portLevelMtls: that port is left out, with a notice.
#[test]
fn s9_a_named_target_port_is_left_out_of_port_level_mtls() {
    let mut objects = load(&["bookinfo-gateway"]);
    objects.push(obj(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "productpage", "namespace": "bookinfo-gw"},
        "spec": {"selector": {"app": "productpage"}, "ports": [
            {"name": "http", "port": 9080, "targetPort": "http-web"},
            {"name": "admin", "port": 9443}]},
    })));
    let plan = plan_exemptions(
        &Snapshot::from_objects(objects),
        &Settings::default(),
        &pa_api(),
        &[],
    );
    assert_eq!(plan.actions, vec![]);
    assert_eq!(plan.notices[0].reason, NoticeReason::NamedTargetPort);
}

/// Stored rules: a fill (ratings without TLS, auto mTLS off) is patched after a
/// test of its resourceVersion; a rule that also has a conflict is held; a
/// namespace in `warn` mode is left alone; rules without a resourceVersion
/// (files) cannot be tested and are not patched.
#[test]
fn s9_stored_rules_fill_hold_and_follow_the_mode() {
    let mut objects = load(&["bookinfo", "bookinfo-exemption"]);
    objects.extend(load(&["scenarios/ratings-no-tls.yaml"]));
    let snapshot = from_cluster(objects.clone());
    let settings = Settings::default();
    let plan = plan_rules(&snapshot, &settings);
    let names: Vec<&str> = plan.patches.iter().map(|p| p.rule.name.as_str()).collect();
    // productpage: ISTIO_MUTUAL towards the tutorial's own PLAINTEXT exemption (b).
    assert_eq!(names, vec!["productpage", "ratings"]);
    let ratings = &plan.patches[1];
    let ops = serde_json::to_value(&ratings.patch).unwrap();
    assert_eq!(
        ops[0],
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": ratings.resource_version})
    );
    assert_eq!(
        ops.as_array().unwrap()[1..],
        [
            json!({"op": "add", "path": "/spec/trafficPolicy", "value": {}}),
            json!({"op": "add", "path": "/spec/trafficPolicy/tls", "value": {"mode": "ISTIO_MUTUAL"}}),
        ]
    );
    assert!(plan.held.is_empty());

    // A conflict elsewhere in the rule: held, never changed.
    let mut conflicting = objects.clone();
    conflicting.push(obj(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "ratings", "namespace": "bookinfo"},
        "spec": {"host": "ratings", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]},
    })));
    let plan = plan_rules(&from_cluster(conflicting), &settings);
    assert_eq!(
        plan.held
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        vec!["ratings"]
    );
    assert!(plan.patches.iter().all(|p| p.rule.name != "ratings"));

    // warn mode (the flag, or the namespace's label): nothing is patched.
    let warn = Settings {
        mode: Mode::Warn,
        ..Settings::default()
    };
    assert_eq!(plan_rules(&snapshot, &warn), RulePlan::default());
    let mut labelled = objects.clone();
    labelled.push(obj(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "bookinfo", "labels": {"mtls-guard.io/mode": "warn"}}})));
    assert_eq!(
        plan_rules(&from_cluster(labelled), &settings),
        RulePlan::default()
    );

    // From files: no resourceVersion to test.
    assert_eq!(
        plan_rules(&Snapshot::from_objects(objects), &settings).patches,
        vec![]
    );
}

#[test]
fn s9_a_rule_pass_judges_only_what_changed_since_the_last() {
    let objects = load(&["bookinfo", "bookinfo-exemption"]);
    let mut snapshot = from_cluster(objects);
    snapshot.apply(obj(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}})));
    let rule = |version: &str, spec: Value| {
        obj(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": version},
            "spec": spec}),
        )
    };
    snapshot.apply(rule("9", json!({"host": "web"})));
    let settings = Settings::default();
    let mut passes = RulePasses::default();
    let all = snapshot.rules().count();

    let (first, report) = passes.plan(&snapshot, &settings);
    assert_eq!((report.full, report.judged), (true, all));
    assert_eq!(first, plan_rules(&snapshot, &settings));

    // Nothing changed: nothing is judged, and the plan is the same.
    let (again, report) = passes.plan(&snapshot.clone(), &settings);
    assert_eq!((report.full, report.judged), (false, 0));
    assert_eq!(again, first);

    // A STRICT PeerAuthentication in shop: only shop's rule is judged, and filled.
    snapshot.apply(obj(json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "shop"}, "spec": {"mtls": {"mode": "STRICT"}}})));
    let (plan, report) = passes.plan(&snapshot, &settings);
    assert_eq!((report.full, report.judged), (false, 1));
    assert_eq!(plan, plan_rules(&snapshot, &settings));
    assert!(plan.patches.iter().any(|p| p.rule.name == "web"));

    // The rule written with its tls: judged again, no longer patched.
    snapshot.apply(rule(
        "10",
        json!({"host": "web", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}),
    ));
    let (plan, report) = passes.plan(&snapshot, &settings);
    assert_eq!((report.full, report.judged), (false, 1));
    assert_eq!(plan, plan_rules(&snapshot, &settings));
    assert!(plan.patches.iter().all(|p| p.rule.name != "web"));

    // Other settings, a MeshPolicy, or a reset: every rule.
    let auto = Settings {
        auto_mtls: true,
        ..Settings::default()
    };
    assert!(passes.plan(&snapshot, &auto).1.full);
    snapshot.apply(obj(
        json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "MeshPolicy",
        "metadata": {"name": "default"}, "spec": {"peers": [{"mtls": {}}]}}),
    ));
    let (plan, report) = passes.plan(&snapshot, &auto);
    assert!(report.full);
    assert_eq!(plan, plan_rules(&snapshot, &auto));
    passes.reset();
    assert!(passes.plan(&snapshot, &auto).1.full);
}
