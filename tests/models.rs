//! Every object in every captured AdmissionReview (tests/fixtures/admission) reads
//! into the right typed model (contract section 1, "Inputs").

use mtls_guard::decision::ClientMode;
use mtls_guard::model::AuthPolicy;
use mtls_guard::model::{
    DestinationRule, MeshObject, ModelError, ObjectKind, PeerAuthentication, PeerMtlsMode,
    PolicyMode,
};
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/admission"
    ))
}

/// (file name, review) for every Istio fixture (01-38), in arrival order. 39-71 are
/// the Gateway API captures, kinds these models do not cover.
fn reviews() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixtures directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name[..2].parse::<u32>().is_ok_and(|n| n <= 38)
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let review = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, review)
        })
        .collect()
}

/// `request.object` / `request.oldObject` of the fixture whose name starts with `prefix`.
fn fixture(prefix: &str, field: &str) -> Value {
    let (_, review) = reviews()
        .into_iter()
        .find(|(n, _)| n.starts_with(&format!("{prefix}-")))
        .unwrap_or_else(|| panic!("no fixture {prefix}-*"));
    review["request"][field].clone()
}

fn read(v: Value) -> MeshObject {
    MeshObject::from_value(v)
        .expect("reads")
        .expect("a kind the contract reads")
}

fn policy(prefix: &str) -> AuthPolicy {
    match read(fixture(prefix, "object")) {
        MeshObject::Policy(p) => p,
        other => panic!("{prefix}: not a Policy: {other:?}"),
    }
}

fn peer_auth(prefix: &str) -> PeerAuthentication {
    match read(fixture(prefix, "object")) {
        MeshObject::PeerAuthentication(p) => p,
        other => panic!("{prefix}: not a PeerAuthentication: {other:?}"),
    }
}

fn rule(prefix: &str, field: &str) -> (DestinationRule, Value) {
    match read(fixture(prefix, field)) {
        MeshObject::DestinationRule(dr, raw) => (*dr, raw),
        other => panic!("{prefix}: not a DestinationRule: {other:?}"),
    }
}

fn mode_of(tls: &Option<mtls_guard::model::ClientTls>) -> Option<ClientMode> {
    tls.as_ref().map(ClientMode::of)
}

#[test]
fn every_fixture_object_reads_into_its_kind() {
    let mut walked = 0;
    let mut by_kind: BTreeMap<ObjectKind, usize> = BTreeMap::new();
    let mut by_version: BTreeMap<String, usize> = BTreeMap::new();
    let reviews = reviews();
    assert_eq!(reviews.len(), 38, "fixture files");
    for (name, review) in &reviews {
        for field in ["object", "oldObject"] {
            let v = &review["request"][field];
            if v.is_null() {
                continue;
            }
            let api_version = v["apiVersion"].as_str().unwrap();
            let kind = v["kind"].as_str().unwrap();
            let obj = MeshObject::from_value(v.clone())
                .unwrap_or_else(|e| panic!("{name} {field}: {e}"))
                .unwrap_or_else(|| panic!("{name} {field}: {api_version} {kind} not read"));
            assert_eq!(obj.kind().to_string(), kind, "{name} {field}");
            assert_eq!(
                ObjectKind::of(api_version, kind),
                Some(obj.kind()),
                "{name} {field}"
            );
            // The typed view is the right variant and keeps identity.
            let (name_read, namespace_read, created) = match &obj {
                MeshObject::Policy(p) | MeshObject::MeshPolicy(p) => {
                    let m = &p.metadata;
                    (&m.name, &m.namespace, m.creation_timestamp.is_some())
                }
                MeshObject::PeerAuthentication(p) => {
                    let m = &p.metadata;
                    (&m.name, &m.namespace, m.creation_timestamp.is_some())
                }
                MeshObject::DestinationRule(dr, raw) => {
                    assert_eq!(raw, v, "{name}: the raw object is kept unchanged");
                    let m = &dr.metadata;
                    (&m.name, &m.namespace, m.created().is_some())
                }
                other => panic!("{name}: unexpected {other:?}"),
            };
            assert_eq!(
                name_read.as_deref(),
                v["metadata"]["name"].as_str(),
                "{name}"
            );
            assert_eq!(obj.name(), v["metadata"]["name"].as_str().unwrap_or(""));
            assert_eq!(
                namespace_read.as_deref(),
                v["metadata"]["namespace"].as_str(),
                "{name}"
            );
            assert_eq!(
                obj.namespace(),
                v["metadata"]["namespace"].as_str().unwrap_or("")
            );
            assert_eq!(
                created,
                v["metadata"]["creationTimestamp"].is_string(),
                "{name}"
            );
            walked += 1;
            *by_kind.entry(obj.kind()).or_default() += 1;
            *by_version
                .entry(format!("{api_version} {kind}"))
                .or_default() += 1;
        }
    }
    // 38 reviews: 36 with an object (all but the two DELETEs), 8 with an oldObject
    // (the six UPDATEs and the two DELETEs).
    assert_eq!(walked, 44);
    assert_eq!(
        by_kind,
        BTreeMap::from([
            (ObjectKind::Policy, 8),
            (ObjectKind::MeshPolicy, 2),
            (ObjectKind::PeerAuthentication, 4),
            (ObjectKind::DestinationRule, 30),
        ])
    );
    assert_eq!(
        by_version,
        BTreeMap::from([
            ("authentication.istio.io/v1alpha1 MeshPolicy".to_string(), 2),
            ("authentication.istio.io/v1alpha1 Policy".to_string(), 8),
            ("networking.istio.io/v1 DestinationRule".to_string(), 4),
            (
                "networking.istio.io/v1alpha3 DestinationRule".to_string(),
                24
            ),
            ("networking.istio.io/v1beta1 DestinationRule".to_string(), 2),
            ("security.istio.io/v1 PeerAuthentication".to_string(), 2),
            (
                "security.istio.io/v1beta1 PeerAuthentication".to_string(),
                2
            ),
        ])
    );
}

#[test]
fn policy_default_peers_mtls_empty_is_strict() {
    // 01/02: `peers: [{mtls: {}}]`.
    for prefix in ["01", "02"] {
        let p = policy(prefix);
        assert_eq!(p.metadata.name.as_deref(), Some("default"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("bookinfo"));
        let peers = p.spec.peers.as_ref().unwrap();
        assert_eq!(peers.len(), 1);
        let mtls = peers[0].mtls.as_ref().expect("mtls key present");
        let mtls = mtls.as_ref().expect("mtls is an object");
        assert_eq!((mtls.mode.as_deref(), mtls.allow_tls), (None, false));
        assert!(p.spec.targets.is_empty());
        assert!(!p.spec.peer_is_optional);
        assert_eq!(p.spec.mode(), PolicyMode::Strict);
        assert!(!p.spec.has_peer_without_mtls());
    }
    assert!(
        policy("01").metadata.creation_timestamp.is_none(),
        "mutating CREATE: no time"
    );
    assert!(policy("02").metadata.creation_timestamp.is_some());
}

#[test]
fn policy_null_trap_apply_is_peers_empty_element() {
    // 03/04: client-side apply dropped the YAML null: `peers: [{}]` -> PLAINTEXT, warned.
    for prefix in ["03", "04"] {
        let p = policy(prefix);
        assert_eq!(p.metadata.name.as_deref(), Some("null-trap"));
        let peers = p.spec.peers.as_ref().unwrap();
        assert_eq!(peers.len(), 1);
        assert!(peers[0].mtls.is_none(), "no mtls key");
        assert_eq!(p.spec.mode(), PolicyMode::Plaintext);
        assert!(p.spec.has_peer_without_mtls());
    }
    // The last-applied annotation still has the null the user wrote.
    let raw = fixture("04", "object");
    let last = raw["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(last.contains(r#""mtls":null"#), "{last}");
}

#[test]
fn policy_peers_null_element_reads_as_element_without_mtls() {
    // Not captured: YAML `peers:` / `-` (a null element), which the Policy stand-in CRD
    // (x-kubernetes-preserve-unknown-fields) stores as is. It must not reject the Policy.
    let v = json!({
        "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
        "metadata": {"name": "default", "namespace": "bookinfo"},
        "spec": {"peers": [null]},
    });
    let MeshObject::Policy(p) = read(v) else {
        panic!("not a Policy")
    };
    assert_eq!(p.spec.peers.as_ref().map(Vec::len), Some(1));
    assert!(p.spec.peers.as_ref().unwrap()[0].mtls.is_none());
    assert_eq!(p.spec.mode(), PolicyMode::Plaintext);
    assert!(p.spec.has_peer_without_mtls());
    // `peers: null` is still "absent".
    let v = json!({
        "apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
        "metadata": {"name": "default", "namespace": "bookinfo"},
        "spec": {"peers": null},
    });
    let MeshObject::Policy(p) = read(v) else {
        panic!("not a Policy")
    };
    assert!(p.spec.peers.is_none());
    assert!(!p.spec.has_peer_without_mtls());
}

#[test]
fn policy_null_trap_create_is_mtls_null_strict() {
    // 05/06: `kubectl create` kept the null: `peers: [{"mtls": null}]` -> STRICT.
    for prefix in ["05", "06"] {
        let p = policy(prefix);
        assert_eq!(p.metadata.name.as_deref(), Some("null-trap-create"));
        let peers = p.spec.peers.as_ref().unwrap();
        assert_eq!(peers.len(), 1);
        assert!(matches!(peers[0].mtls, Some(None)), "{:?}", peers[0].mtls);
        assert_eq!(p.spec.mode(), PolicyMode::Strict);
        assert!(!p.spec.has_peer_without_mtls());
    }
}

#[test]
fn policy_disable_mtls_productpage_targets_and_empty_peers() {
    for prefix in ["15", "16"] {
        let p = policy(prefix);
        assert_eq!(p.metadata.name.as_deref(), Some("disable-mtls-productpage"));
        assert_eq!(p.spec.targets.len(), 1);
        assert_eq!(p.spec.targets[0].name, "productpage");
        assert!(p.spec.targets[0].ports.is_empty());
        assert_eq!(p.spec.peers.as_ref().map(Vec::len), Some(0));
        assert_eq!(p.spec.mode(), PolicyMode::Plaintext);
        assert!(!p.spec.has_peer_without_mtls());
    }
}

#[test]
fn meshpolicy_default_is_cluster_scoped_and_strict() {
    for prefix in ["34", "35"] {
        match read(fixture(prefix, "object")) {
            MeshObject::MeshPolicy(p) => {
                assert_eq!(p.metadata.name.as_deref(), Some("default"));
                assert_eq!(p.metadata.namespace, None);
                assert_eq!(p.spec.mode(), PolicyMode::Strict);
            }
            other => panic!("{prefix}: {other:?}"),
        }
    }
}

#[test]
fn peer_authentication_v1beta1_namespace_default() {
    for prefix in ["30", "31"] {
        let pa = peer_auth(prefix);
        assert_eq!(pa.metadata.name.as_deref(), Some("default"));
        assert_eq!(pa.metadata.namespace.as_deref(), Some("bookinfo"));
        assert_eq!(pa.spec.mode(), PeerMtlsMode::Strict);
        assert!(pa.spec.match_labels().is_none(), "namespace-wide");
        assert!(pa.spec.port_level_mtls.is_empty());
    }
    assert_eq!(
        fixture("31", "object")["apiVersion"],
        "security.istio.io/v1beta1"
    );
}

#[test]
fn peer_authentication_v1_port_level_string_key() {
    for prefix in ["32", "33"] {
        let pa = peer_auth(prefix);
        assert_eq!(pa.metadata.name.as_deref(), Some("productpage"));
        assert_eq!(pa.spec.mode(), PeerMtlsMode::Strict);
        assert_eq!(
            pa.spec.match_labels(),
            Some(&BTreeMap::from([(
                "app".to_string(),
                "productpage".to_string()
            )]))
        );
        assert_eq!(pa.spec.port_level_mtls.len(), 1);
        assert_eq!(
            pa.spec.port_level_mtls["9080"].mode(),
            PeerMtlsMode::Disable
        );
    }
    let raw = fixture("33", "object");
    assert_eq!(raw["apiVersion"], "security.istio.io/v1");
    assert_eq!(
        raw["spec"]["portLevelMtls"],
        json!({"9080": {"mode": "DISABLE"}})
    );
}

#[test]
fn destination_rules_all_api_versions() {
    // 07/08: v1alpha3 productpage, ISTIO_MUTUAL, subset v1.
    let (dr, raw) = rule("08", "object");
    assert_eq!(raw["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(dr.spec.host, "productpage");
    assert_eq!(
        mode_of(&dr.spec.traffic_policy.as_ref().unwrap().tls),
        Some(ClientMode::IstioMutual)
    );
    assert_eq!(
        dr.spec
            .subsets
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["v1"]
    );
    assert!(dr.spec.subsets[0].traffic_policy.is_none());

    // The "all mTLS" rules: subsets as in the tutorial.
    for (prefix, host, subsets) in [
        ("10", "reviews", &["v1", "v2", "v3"][..]),
        (
            "12",
            "ratings",
            &["v1", "v2", "v2-mysql", "v2-mysql-vm"][..],
        ),
        ("14", "details", &["v1", "v2"][..]),
    ] {
        let (dr, _) = rule(prefix, "object");
        assert_eq!(dr.spec.host, host);
        let names: Vec<&str> = dr.spec.subsets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, subsets);
        assert_eq!(
            mode_of(&dr.spec.traffic_policy.as_ref().unwrap().tls),
            Some(ClientMode::IstioMutual)
        );
    }

    // 17/18: UPDATE to DISABLE; the oldObject still ISTIO_MUTUAL.
    let (new, _) = rule("18", "object");
    let (old, _) = rule("18", "oldObject");
    assert_eq!(
        mode_of(&new.spec.traffic_policy.as_ref().unwrap().tls),
        Some(ClientMode::Disable)
    );
    assert_eq!(
        mode_of(&old.spec.traffic_policy.as_ref().unwrap().tls),
        Some(ClientMode::IstioMutual)
    );

    // 19/20 through v1, 21 the same object converted to v1alpha3 for a v1beta1 review.
    for (prefix, version) in [
        ("19", "networking.istio.io/v1"),
        ("20", "networking.istio.io/v1"),
        ("21", "networking.istio.io/v1alpha3"),
    ] {
        let (dr, raw) = rule(prefix, "object");
        assert_eq!(raw["apiVersion"], version);
        assert_eq!(dr.spec.host, "*.bookinfo.svc.cluster.local");
        assert!(dr.spec.subsets.is_empty());
    }

    // 22/23 through v1beta1: exportTo, portLevelSettings, a subset's own tls.
    let (dr, raw) = rule("23", "object");
    assert_eq!(raw["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(dr.spec.host, "reviews.bookinfo.svc.cluster.local");
    assert_eq!(dr.spec.export_to, ["."]);
    let tp = dr.spec.traffic_policy.as_ref().unwrap();
    assert!(tp.tls.is_none());
    assert_eq!(tp.port_level_settings.len(), 1);
    assert_eq!(
        tp.port_level_settings[0].port.as_ref().unwrap().number,
        Some(9080)
    );
    assert_eq!(
        mode_of(&tp.port_level_settings[0].tls),
        Some(ClientMode::IstioMutual)
    );
    assert_eq!(tp.port_entry(9080), Some(0));
    assert_eq!(tp.port_entry(9090), None);
    assert_eq!(dr.spec.subsets[0].name, "v2");
    assert_eq!(
        mode_of(&dr.spec.subsets[0].traffic_policy.as_ref().unwrap().tls),
        Some(ClientMode::Disable)
    );

    // 24/25: the dry-run UPDATE (DISABLE).
    let (dr, _) = rule("24", "object");
    assert_eq!(
        mode_of(&dr.spec.traffic_policy.as_ref().unwrap().tls),
        Some(ClientMode::Disable)
    );

    // 26/27: subset v3 gets its own ISTIO_MUTUAL; loadBalancer is not modelled but kept raw.
    let (dr, raw) = rule("27", "object");
    assert_eq!(
        mode_of(&dr.spec.subsets[2].traffic_policy.as_ref().unwrap().tls),
        Some(ClientMode::IstioMutual)
    );
    assert_eq!(
        raw["spec"]["trafficPolicy"]["loadBalancer"]["simple"],
        "RANDOM"
    );

    // 28/29 DELETE: no object, the oldObject is the stored details rule (read back as v1).
    assert!(fixture("28", "object").is_null());
    let (dr, raw) = rule("29", "oldObject");
    assert_eq!(raw["apiVersion"], "networking.istio.io/v1");
    assert_eq!(dr.spec.host, "details");
    assert_eq!(dr.spec.subsets.len(), 2);

    // 36/37: no trafficPolicy at all; 38 after the patch.
    for prefix in ["36", "37"] {
        let (dr, _) = rule(prefix, "object");
        assert_eq!(dr.spec.host, "ratings");
        assert!(dr.spec.traffic_policy.is_none());
    }
    let (dr, _) = rule("38", "object");
    assert_eq!(
        mode_of(&dr.spec.traffic_policy.as_ref().unwrap().tls),
        Some(ClientMode::IstioMutual)
    );
}

#[test]
fn other_kinds_are_skipped_and_untyped_objects_rejected() {
    // An AdmissionReview itself is not a kind the contract reads.
    let review = &reviews()[0].1;
    assert!(MeshObject::from_value(review.clone()).unwrap().is_none());
    assert!(
        MeshObject::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment"}))
            .unwrap()
            .is_none()
    );
    // Removed or unknown versions are not read either.
    assert!(MeshObject::from_value(
        json!({"apiVersion": "networking.istio.io/v2", "kind": "DestinationRule"})
    )
    .unwrap()
    .is_none());
    assert!(matches!(
        MeshObject::from_value(json!({"kind": "Policy"})),
        Err(ModelError::MissingType)
    ));
    assert!(matches!(
        MeshObject::from_value(json!({"apiVersion": 1, "kind": "Policy"})),
        Err(ModelError::MissingType)
    ));
    // A wrongly typed field is an error that names the object, not a panic.
    let err = MeshObject::from_value(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "bad"}, "spec": {"host": 42}
    }))
    .unwrap_err();
    assert!(err.to_string().starts_with("DestinationRule bad:"), "{err}");
}

#[test]
fn snapshot_of_every_validated_object() {
    // The objects of the validating reviews (what the API server stored), in order.
    let objects: Vec<MeshObject> = reviews()
        .into_iter()
        .filter(|(n, _)| n.contains("-validating"))
        .filter_map(|(_, r)| {
            let v = r["request"]["object"].clone();
            (!v.is_null()).then(|| read(v))
        })
        .collect();
    let s = Snapshot::from_objects(objects);
    let counts: Vec<(ObjectKind, usize)> = s.counts().iter().map(|(k, n)| (*k, *n)).collect();
    assert_eq!(
        counts,
        [
            (ObjectKind::Policy, 4),
            (ObjectKind::MeshPolicy, 1),
            (ObjectKind::PeerAuthentication, 2),
            (ObjectKind::DestinationRule, 11),
        ]
    );
    // null-trap and null-trap-create have no targets and are not named `default`.
    assert_eq!(s.notes().len(), 2, "{:?}", s.notes());
    assert_eq!(s.mesh_policies().len(), 1);
    let ns = s.namespace("bookinfo").unwrap();
    assert_eq!(ns.default_policies.len(), 1);
    assert_eq!(ns.wide_peer_auths.len(), 1);
    assert_eq!(ns.workload_peer_auths.len(), 1);
    assert_eq!(
        ns.workload_peer_auths[0].port_level,
        BTreeMap::from([(9080, PeerMtlsMode::Disable)])
    );
    assert_eq!(ns.policy_targets["productpage"].len(), 1);
}
