//! The contract suite: walks the behaviour contract (docs/behaviour.md) rule by rule.
//!
//! Each test is named after the section and rule it checks (`s2_*` is section 2,
//! ...); `open_*` tests pin the choices docs/architecture.md makes where the
//! contract leaves something open. Inputs are YAML literals (and, where the
//! contract points at them, the captured AdmissionReviews in tests/fixtures).

use mtls_guard::decision::{
    judge, resolve_host, server_mode, ClientMode, ClientSource, Exemption, Finding, HostTarget,
    IngressVia, Level, Outcome, PortScope, Required, ServerMode, Subject, TlsScope, Verdict,
    WarningCode,
};
use mtls_guard::model::{DestinationRule, MeshObject, ObjectKind, ObjectRef};
use mtls_guard::settings::{IngressGateway, Settings};
use mtls_guard::snapshot::Snapshot;
use serde::Deserialize;
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Every document of a multi-document YAML string, as JSON (empty documents dropped).
/// `portLevelMtls` keys must be quoted in test YAML: JSON object keys are strings.
fn values(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("test YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn object(v: Value) -> MeshObject {
    MeshObject::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{e}: {v}"))
        .unwrap_or_else(|| panic!("not a kind the contract reads: {v}"))
}

fn snapshot_of(values: Vec<Value>) -> Snapshot {
    Snapshot::from_objects(values.into_iter().map(object))
}

fn snap(yaml: &str) -> Snapshot {
    snapshot_of(values(yaml))
}

fn rule_of(v: Value) -> DestinationRule {
    match object(v) {
        MeshObject::DestinationRule(dr, _) => *dr,
        other => panic!("not a DestinationRule: {other:?}"),
    }
}

fn rule(yaml: &str) -> DestinationRule {
    let mut docs = values(yaml);
    assert_eq!(docs.len(), 1, "one DestinationRule expected");
    rule_of(docs.remove(0))
}

/// `request.object` of the captured AdmissionReview whose file name starts with `prefix`.
fn fixture(prefix: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission");
    let entry = std::fs::read_dir(dir)
        .expect("fixtures directory")
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
        })
        .unwrap_or_else(|| panic!("no fixture {prefix}-*"));
    let review: Value = serde_json::from_str(&std::fs::read_to_string(&entry).unwrap()).unwrap();
    let obj = review["request"]["object"].clone();
    assert!(!obj.is_null(), "{} has no object", entry.display());
    obj
}

fn settings() -> Settings {
    Settings::default()
}

fn auto_mtls() -> Settings {
    Settings {
        auto_mtls: true,
        ..Settings::default()
    }
}

fn judge_in(snapshot: &Snapshot, settings: &Settings, rule_yaml: &str) -> Verdict {
    judge(snapshot, settings, &rule(rule_yaml), "bookinfo")
}

fn policy(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
    )
}

fn policy_at(ns: &str, name: &str, created: &str, spec: &str) -> String {
    format!(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec: {spec}\n---\n"
    )
}

fn mesh_policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n"
    )
}

fn pa(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
    )
}

fn pa_at(ns: &str, name: &str, created: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec: {spec}\n---\n"
    )
}

/// A Service selecting `app: <name>` with the given ports (flow YAML).
fn svc(ns: &str, name: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nspec: {{selector: {{app: {name}}}, ports: {ports}}}\n---\n"
    )
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n---\n")
}

fn dr(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

/// Namespace `ns` with the four Bookinfo services on port 9080 (named `http`).
fn bookinfo_in(ns: &str) -> String {
    let mut y = namespace(ns);
    for s in ["productpage", "reviews", "ratings", "details"] {
        y.push_str(&svc(ns, s, "[{name: http, port: 9080}]"));
    }
    y
}

fn bookinfo() -> String {
    bookinfo_in("bookinfo")
}

const STRICT: &str = "{peers: [{mtls: {}}]}";
const PLAINTEXT: &str = "{peers: []}";
const PERMISSIVE: &str = "{peers: [{mtls: {mode: PERMISSIVE}}]}";

/// Bookinfo with the namespace `default` Policy STRICT.
fn bookinfo_strict() -> String {
    bookinfo() + &policy("bookinfo", "default", STRICT)
}

/// reviews with two ports, 9080 (`http`) and 9090 (`grpc`).
fn reviews_two_ports() -> String {
    namespace("bookinfo")
        + &svc(
            "bookinfo",
            "reviews",
            "[{name: http, port: 9080}, {name: grpc, port: 9090}]",
        )
}

fn ingress(
    ns: &str,
    name: &str,
    class: Option<&str>,
    annotation: Option<&str>,
    backend: &str,
) -> String {
    let class = class.map_or(String::new(), |c| format!("  ingressClassName: {c}\n"));
    let annotations = annotation.map_or(String::new(), |a| {
        format!("  annotations: {{kubernetes.io/ingress.class: {a}}}\n")
    });
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: {ns}
{annotations}spec:
{class}  rules:
  - host: istio.tutorial.bookinfo.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: {backend}, port: {{number: 9080}}}}}}
---
"
    )
}

fn ingress_class(name: &str, controller: &str, default: bool) -> String {
    let ann = if default {
        "\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {name}{ann}\nspec: {{controller: {controller}}}\n---\n"
    )
}

fn gateway_service(ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: istio-ingressgateway, namespace: {ns}, labels: {{istio: ingressgateway}}}}\nspec: {{selector: {{istio: ingressgateway}}, ports: [{{name: http2, port: 80, targetPort: 8080}}]}}\n---\n"
    )
}

fn port_scope(port: Option<u32>) -> impl Fn(&PortScope) -> bool {
    move |p| p.number() == port
}

/// The finding for `port` (`None`: the "every other port" scope) and `subset` (`None`: the rule).
fn find<'a>(v: &'a Verdict, port: Option<u32>, subset: Option<&str>) -> &'a Finding {
    let matches = port_scope(port);
    v.findings
        .iter()
        .find(|f| matches(&f.port) && f.subset.as_ref().map(|(_, n)| n.as_str()) == subset)
        .unwrap_or_else(|| panic!("no finding for port {port:?} subset {subset:?} in {v:#?}"))
}

fn at(v: &Verdict, port: u32) -> &Finding {
    find(v, Some(port), None)
}

fn codes(v: &Verdict) -> Vec<WarningCode> {
    v.warnings.iter().map(|w| w.code).collect()
}

fn warning(v: &Verdict, code: WarningCode) -> &str {
    v.warnings
        .iter()
        .find(|w| w.code == code)
        .map(|w| w.message.as_str())
        .unwrap_or_else(|| panic!("no {} warning in {:#?}", code.code(), v.warnings))
}

/// (port number or None for "other", subset name or None, outcome) for every finding, in order.
fn outcomes(v: &Verdict) -> Vec<(Option<u32>, Option<&str>, Outcome)> {
    v.findings
        .iter()
        .map(|f| {
            (
                f.port.number(),
                f.subset.as_ref().map(|(_, n)| n.as_str()),
                f.outcome.clone(),
            )
        })
        .collect()
}

type By<'a> = Option<(ObjectKind, &'a str, &'a str, Level)>;

#[track_caller]
fn assert_server(f: &Finding, mode: ServerMode, by: By<'_>) {
    assert_eq!(f.server.mode, mode, "server mode of {f:#?}");
    let got = f.server.decider.as_ref().map(|d| {
        (
            d.object.kind,
            d.object.namespace.as_str(),
            d.object.name.as_str(),
            d.level,
        )
    });
    assert_eq!(got, by, "decider of {f:#?}");
}

fn oref(kind: ObjectKind, ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

const IM: ClientMode = ClientMode::IstioMutual;
const DISABLE: ClientMode = ClientMode::Disable;

fn rule_with_tls(host: &str, mode: &str) -> String {
    dr(
        "bookinfo",
        "r",
        &format!("{{host: {host}, trafficPolicy: {{tls: {{mode: {mode}}}}}}}"),
    )
}

fn rule_without_tls(host: &str) -> String {
    dr("bookinfo", "r", &format!("{{host: {host}}}"))
}

// ---------------------------------------------------------------------------
// Section 2: server side
// ---------------------------------------------------------------------------

/// Namespace-level `default` Policy with `spec`, judged for `reviews:9080`.
fn policy_mode_case(spec: &str, client: &str) -> Verdict {
    let s = snap(&(bookinfo() + &policy("bookinfo", "default", spec)));
    judge_in(&s, &settings(), &rule_with_tls("reviews", client))
}

#[test]
fn s2_policy_peers_empty_is_plaintext() {
    // "`peers` absent, `peers: []` ... give PLAINTEXT."
    for spec in ["{}", "{peers: []}", "{peers: null}", "{targets: []}"] {
        let v = policy_mode_case(spec, "DISABLE");
        let f = at(&v, 9080);
        assert_server(
            f,
            ServerMode::Plaintext,
            Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
        );
        assert_eq!(f.required, Required::Mode(DISABLE), "{spec}");
        assert_eq!(f.outcome, Outcome::Ok, "{spec}");
        assert!(
            codes(&v).is_empty(),
            "{spec}: no element lacks `mtls`: {:?}",
            v.warnings
        );
    }
}

#[test]
fn s2_mtls_null_is_strict() {
    // "Its mode is STRICT (`mtls: {}`, `mtls:` null, `mode: STRICT`, no mode)".
    let specs = [
        "{peers: [{mtls: null}]}",
        "{peers: [{mtls: ~}]}",
        "{peers: [{mtls: {}}]}",
        "{peers: [{mtls: {mode: STRICT}}]}",
        "{peers: [{mtls: {allowTls: false}}]}",
        "{peers: [{mtls: {}}], peerIsOptional: false}",
    ];
    for spec in specs {
        let v = policy_mode_case(spec, "ISTIO_MUTUAL");
        let f = at(&v, 9080);
        assert_server(
            f,
            ServerMode::Strict,
            Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
        );
        assert_eq!(f.required, Required::Mode(IM), "{spec}");
        assert_eq!(f.outcome, Outcome::Ok, "{spec}");
        assert!(codes(&v).is_empty(), "{spec}: {:?}", v.warnings);
    }

    // The tutorial's block YAML `- mtls:` (a YAML null), as `kubectl create` sends it.
    let block = "apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: default
  namespace: bookinfo
spec:
  peers:
  - mtls:
---
";
    let s = snap(&(bookinfo() + block));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_eq!(at(&v, 9080).server.mode, ServerMode::Strict);

    // The captured `kubectl create` (fixture 06: `peers: [{"mtls": null}]`), as namespace default.
    let mut created = fixture("06");
    assert_eq!(
        created["spec"]["peers"],
        serde_json::json!([{ "mtls": null }])
    );
    created["metadata"]["name"] = "default".into();
    let mut vals = values(&bookinfo());
    vals.push(created);
    let s = snapshot_of(vals);
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    let f = at(&v, 9080);
    assert_eq!(f.server.mode, ServerMode::Strict);
    assert_eq!(f.outcome, Outcome::Conflict);
    assert!(codes(&v).is_empty());
}

#[test]
fn s2_peers_with_empty_element_is_plaintext_and_warns() {
    // "no element with an `mtls` key (for example `peers: [{}]`, `peers: [{jwt: ...}]`) give
    // PLAINTEXT" and "Every verdict that rests on a policy with an element that has no `mtls`
    // key carries a warning saying what was probably meant (`mtls: {}`)".
    let cases = [
        ("{peers: [{}]}", ServerMode::Plaintext),
        (
            "{peers: [{jwt: {issuer: https://example.com}}]}",
            ServerMode::Plaintext,
        ),
        ("{peers: [{}, {}]}", ServerMode::Plaintext),
        // YAML `peers:` / `-`: a null element has no `mtls` key either.
        ("{peers: [null]}", ServerMode::Plaintext),
        ("{peers: [~, {mtls: {}}]}", ServerMode::Strict),
        // The first element *with* an `mtls` key decides; the warning still applies.
        ("{peers: [{}, {mtls: {}}]}", ServerMode::Strict),
    ];
    for (spec, mode) in cases {
        let v = policy_mode_case(spec, "ISTIO_MUTUAL");
        let f = at(&v, 9080);
        assert_server(
            f,
            mode,
            Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
        );
        assert_eq!(codes(&v), vec![WarningCode::PeerWithoutMtls], "{spec}");
        let msg = warning(&v, WarningCode::PeerWithoutMtls);
        assert!(msg.contains("Policy bookinfo/default"), "{msg}");
        assert!(msg.contains("`mtls: {}`"), "{msg}");
    }

    // The captured client-side apply of the YAML-null spec (fixture 04: `peers: [{}]`).
    let mut applied = fixture("04");
    assert_eq!(applied["spec"]["peers"], serde_json::json!([{}]));
    applied["metadata"]["name"] = "default".into();
    let mut vals = values(&bookinfo());
    vals.push(applied);
    let s = snapshot_of(vals);
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    let f = at(&v, 9080);
    assert_eq!(f.server.mode, ServerMode::Plaintext);
    // Namespace-level PLAINTEXT against ISTIO_MUTUAL: the author must resolve it.
    assert_eq!(f.outcome, Outcome::Conflict);
    assert_eq!(codes(&v), vec![WarningCode::PeerWithoutMtls]);

    // A policy with such an element that does not decide gives no warning.
    let s = snap(
        &(bookinfo()
            + &policy("bookinfo", "default", "{peers: [{}]}")
            + &policy(
                "bookinfo",
                "reviews-strict",
                "{targets: [{name: reviews}], peers: [{mtls: {}}]}",
            )),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::Policy,
            "bookinfo",
            "reviews-strict",
            Level::Service,
        )),
    );
    assert!(codes(&v).is_empty(), "{:?}", v.warnings);
}

#[test]
fn s2_peer_is_optional_is_permissive() {
    // "`peerIsOptional: true` turns STRICT into PERMISSIVE".
    let cases = [
        (
            "{peers: [{mtls: {}}], peerIsOptional: true}",
            ServerMode::Permissive,
        ),
        (
            "{peers: [{mtls: null}], peerIsOptional: true}",
            ServerMode::Permissive,
        ),
        // It turns STRICT into PERMISSIVE, nothing else: PLAINTEXT stays PLAINTEXT.
        ("{peers: [], peerIsOptional: true}", ServerMode::Plaintext),
    ];
    for (spec, mode) in cases {
        let v = policy_mode_case(spec, "DISABLE");
        let f = at(&v, 9080);
        assert_eq!(f.server.mode, mode, "{spec}");
        assert_eq!(f.outcome, Outcome::Ok, "{spec}");
    }
    let v = policy_mode_case(
        "{peers: [{mtls: {}}], peerIsOptional: true}",
        "ISTIO_MUTUAL",
    );
    assert_eq!(at(&v, 9080).required, Required::Any);
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
}

#[test]
fn s2_allow_tls_is_permissive() {
    // "unless `mode: PERMISSIVE` or `allowTls: true`, which give PERMISSIVE".
    for spec in [
        "{peers: [{mtls: {allowTls: true}}]}",
        "{peers: [{mtls: {mode: PERMISSIVE}}]}",
        "{peers: [{mtls: {mode: STRICT, allowTls: true}}]}",
    ] {
        for client in ["ISTIO_MUTUAL", "DISABLE", "SIMPLE"] {
            let v = policy_mode_case(spec, client);
            let f = at(&v, 9080);
            assert_server(
                f,
                ServerMode::Permissive,
                Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
            );
            assert_eq!(f.required, Required::Any);
            assert_eq!(f.outcome, Outcome::Ok, "{spec} {client}");
        }
    }
}

#[test]
fn s2_target_port_by_number() {
    // "service-port level (a Policy in N whose targets names S and lists P, by number ...)".
    let s = snap(
        &(reviews_two_ports()
            + &policy("bookinfo", "default", STRICT)
            + &policy(
                "bookinfo",
                "reviews-9080",
                "{targets: [{name: reviews, ports: [{number: 9080}]}], peers: []}",
            )),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::Policy,
            "bookinfo",
            "reviews-9080",
            Level::ServicePort,
        )),
    );
    assert_server(
        at(&v, 9090),
        ServerMode::Strict,
        Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Patch(DISABLE));
    assert_eq!(at(&v, 9090).outcome, Outcome::Ok);
}

#[test]
fn s2_target_port_by_name() {
    // "... by number or by the Service port's name".
    let s = snap(
        &(reviews_two_ports()
            + &policy("bookinfo", "default", STRICT)
            + &policy(
                "bookinfo",
                "reviews-grpc",
                "{targets: [{name: reviews, ports: [{name: grpc}]}], peers: []}",
            )),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(
        at(&v, 9090),
        ServerMode::Plaintext,
        Some((
            ObjectKind::Policy,
            "bookinfo",
            "reviews-grpc",
            Level::ServicePort,
        )),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
    );
    // A port name the Service does not have matches nothing.
    let s = snap(
        &(reviews_two_ports()
            + &policy("bookinfo", "default", STRICT)
            + &policy(
                "bookinfo",
                "reviews-x",
                "{targets: [{name: reviews, ports: [{name: tcp-x}]}], peers: []}",
            )),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    for port in [9080, 9090] {
        assert_server(
            at(&v, port),
            ServerMode::Strict,
            Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
        );
    }
}

#[test]
fn s2_service_port_beats_service_beats_namespace_beats_mesh() {
    // "v1alpha1 precedence, most specific first: service-port > service > namespace > mesh".
    let mesh = mesh_policy("default", PERMISSIVE);
    let ns = policy("bookinfo", "default", STRICT);
    let service = policy(
        "bookinfo",
        "reviews-all",
        "{targets: [{name: reviews}], peers: []}",
    );
    let service_port = policy(
        "bookinfo",
        "reviews-9080",
        "{targets: [{name: reviews, ports: [{number: 9080}]}], peers: [{mtls: {}}]}",
    );
    let sp = Some((
        ObjectKind::Policy,
        "bookinfo",
        "reviews-9080",
        Level::ServicePort,
    ));
    let sv = Some((
        ObjectKind::Policy,
        "bookinfo",
        "reviews-all",
        Level::Service,
    ));
    let ns_level = Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace));
    let mesh_level = Some((ObjectKind::MeshPolicy, "", "default", Level::Mesh));
    use ServerMode::{None as NoMode, Permissive, Plaintext, Strict};
    type Row<'a> = (Vec<&'a String>, (ServerMode, By<'a>), (ServerMode, By<'a>));
    let rows: Vec<Row> = vec![
        // (objects, port 9080, port 9090: not listed by the service-port target)
        (
            vec![&mesh, &ns, &service, &service_port],
            (Strict, sp),
            (Plaintext, sv),
        ),
        (vec![&mesh, &ns, &service], (Plaintext, sv), (Plaintext, sv)),
        (
            vec![&mesh, &ns, &service_port],
            (Strict, sp),
            (Strict, ns_level),
        ),
        (vec![&mesh, &ns], (Strict, ns_level), (Strict, ns_level)),
        (
            vec![&mesh],
            (Permissive, mesh_level),
            (Permissive, mesh_level),
        ),
        // "Nothing applies at any level: NONE."
        (vec![], (NoMode, None), (NoMode, None)),
    ];
    for (objs, at9080, at9090) in rows {
        let mut y = reviews_two_ports();
        for o in objs {
            y.push_str(o);
        }
        let v = judge_in(
            &snap(&y),
            &settings(),
            &rule_with_tls("reviews", "ISTIO_MUTUAL"),
        );
        assert_server(at(&v, 9080), at9080.0, at9080.1);
        assert_server(at(&v, 9090), at9090.0, at9090.1);
        assert!(codes(&v).is_empty(), "{:?}", v.warnings);
    }
}

#[test]
fn s2_pa_unset_inherits_next_level() {
    // "`mtls.mode` UNSET or `mtls` absent inherits from the next level".
    let workload_unset = pa(
        "bookinfo",
        "reviews",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: UNSET}}",
    );
    let workload_absent = pa(
        "bookinfo",
        "reviews",
        "{selector: {matchLabels: {app: reviews}}}",
    );
    let s = snap(
        &(bookinfo() + &workload_unset + &pa("bookinfo", "default", "{mtls: {mode: STRICT}}")),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "default",
            Level::Namespace,
        )),
    );

    let s = snap(
        &(bookinfo()
            + &workload_absent
            + &pa("bookinfo", "default", "{mtls: {}}")
            + &pa("istio-system", "default", "{mtls: {mode: DISABLE}}")),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    // "`DISABLE` is PLAINTEXT."
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::PeerAuthentication,
            "istio-system",
            "default",
            Level::Mesh,
        )),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
}

#[test]
fn open_every_pa_unset_is_none_and_policies_do_not_count() {
    // docs/architecture.md: "When every applicable PeerAuthentication is UNSET,
    // PeerAuthentication still decides alone and the server mode is NONE".
    let s = snap(
        &(bookinfo()
            + &policy("bookinfo", "default", STRICT)
            + &pa(
                "bookinfo",
                "reviews",
                "{selector: {matchLabels: {app: reviews}}}",
            )
            + &pa("bookinfo", "default", "{mtls: {mode: UNSET}}")
            + &pa("istio-system", "default", "{}")),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    let f = at(&v, 9080);
    assert_server(f, ServerMode::None, None);
    assert_eq!(f.required, Required::Any);
    assert_eq!(f.outcome, Outcome::Ok);
}

#[test]
fn s2_pa_port_level_via_target_port() {
    // "Its `portLevelMtls` keys are *target* ports: map P to the Service port's numeric
    // `targetPort`. A port-level entry gives the workload-port level".
    let y = namespace("bookinfo")
        + &svc(
            "bookinfo",
            "reviews",
            "[{name: http, port: 80, targetPort: 9080}, {name: grpc, port: 9090, targetPort: 9090}, {name: tcp, port: 7070}]",
        )
        + &pa(
            "bookinfo",
            "reviews",
            "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {\"9080\": {mode: DISABLE}, \"80\": {mode: PERMISSIVE}, \"7070\": {mode: PERMISSIVE}}}",
        );
    let v = judge_in(
        &snap(&y),
        &settings(),
        &rule_with_tls("reviews", "ISTIO_MUTUAL"),
    );
    let by = |level| Some((ObjectKind::PeerAuthentication, "bookinfo", "reviews", level));
    // Service port 80 -> targetPort 9080 -> DISABLE (the key "80" is not a target port).
    assert_server(at(&v, 80), ServerMode::Plaintext, by(Level::WorkloadPort));
    assert_eq!(at(&v, 80).outcome, Outcome::Patch(DISABLE));
    // 9090 has no entry: the PeerAuthentication's own mode, workload level.
    assert_server(at(&v, 9090), ServerMode::Strict, by(Level::Workload));
    // No targetPort: Kubernetes defaults it to the port.
    assert_server(
        at(&v, 7070),
        ServerMode::Permissive,
        by(Level::WorkloadPort),
    );
    assert!(codes(&v).is_empty(), "{:?}", v.warnings);

    // The captured v1 PeerAuthentication (fixture 33, key "9080") on productpage.
    let mut vals = values(&bookinfo());
    vals.push(fixture("31"));
    vals.push(fixture("33"));
    let v = judge(
        &snapshot_of(vals),
        &settings(),
        &rule(&rule_with_tls("productpage", "ISTIO_MUTUAL")),
        "bookinfo",
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "productpage",
            Level::WorkloadPort,
        )),
    );
}

#[test]
fn s2_pa_named_target_port_warns_and_skips() {
    // "a named targetPort can't be mapped without pods: skip the port-level entry and warn".
    let y = namespace("bookinfo")
        + &svc("bookinfo", "reviews", "[{name: http, port: 9080, targetPort: http-web}]")
        + &pa(
            "bookinfo",
            "reviews",
            "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {\"9080\": {mode: DISABLE}}}",
        );
    let v = judge_in(
        &snap(&y),
        &settings(),
        &rule_with_tls("reviews", "ISTIO_MUTUAL"),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "reviews",
            Level::Workload,
        )),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
    assert_eq!(codes(&v), vec![WarningCode::NamedTargetPort]);
    let msg = warning(&v, WarningCode::NamedTargetPort);
    assert!(
        msg.contains("PeerAuthentication bookinfo/reviews") && msg.contains("http-web"),
        "{msg}"
    );

    // Without portLevelMtls there is nothing to skip and nothing to warn about.
    let y = namespace("bookinfo")
        + &svc(
            "bookinfo",
            "reviews",
            "[{name: http, port: 9080, targetPort: http-web}]",
        )
        + &pa(
            "bookinfo",
            "reviews",
            "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}",
        );
    let v = judge_in(
        &snap(&y),
        &settings(),
        &rule_with_tls("reviews", "ISTIO_MUTUAL"),
    );
    assert!(codes(&v).is_empty());
}

#[test]
fn s2_pa_port_unset_falls_back_to_pa_mode() {
    // "an entry with mode UNSET falls back to the PeerAuthentication's own mode".
    for entry in ["{mode: UNSET}", "{}", "{mode: null}"] {
        let y = bookinfo()
            + &pa(
                "bookinfo",
                "reviews",
                &format!(
                    "{{selector: {{matchLabels: {{app: reviews}}}}, mtls: {{mode: PERMISSIVE}}, portLevelMtls: {{\"9080\": {entry}}}}}"
                ),
            );
        let v = judge_in(&snap(&y), &settings(), &rule_with_tls("reviews", "DISABLE"));
        assert_server(
            at(&v, 9080),
            ServerMode::Permissive,
            Some((
                ObjectKind::PeerAuthentication,
                "bookinfo",
                "reviews",
                Level::Workload,
            )),
        );
    }
    // ... and when that is UNSET too, the next level decides.
    let y = bookinfo()
        + &pa("bookinfo", "default", "{mtls: {mode: STRICT}}")
        + &pa(
            "bookinfo",
            "reviews",
            "{selector: {matchLabels: {app: reviews}}, portLevelMtls: {\"9080\": {mode: UNSET}}}",
        );
    let v = judge_in(&snap(&y), &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "default",
            Level::Namespace,
        )),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Conflict);
}

#[test]
fn s2_pa_partial_selector_warns_and_does_not_decide() {
    // "a PeerAuthentication whose matchLabels covers only some of the service's pods (it
    // has a pair the Service's selector lacks) does not decide the service's mode, and gets
    // a warning".
    let partial = pa(
        "bookinfo",
        "reviews-v2",
        "{selector: {matchLabels: {app: reviews, version: v2}}, mtls: {mode: DISABLE}}",
    );
    let s = snap(&(bookinfo() + &partial + &pa("bookinfo", "default", "{mtls: {mode: STRICT}}")));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "default",
            Level::Namespace,
        )),
    );
    assert_eq!(codes(&v), vec![WarningCode::PartialPeerAuthentication]);
    let msg = warning(&v, WarningCode::PartialPeerAuthentication);
    assert!(
        msg.contains("PeerAuthentication bookinfo/reviews-v2") && msg.contains("version=v2"),
        "{msg}"
    );

    // A partial PeerAuthentication does not "apply": v1alpha1 policies still count.
    let s = snap(&(bookinfo() + &partial + &policy("bookinfo", "default", STRICT)));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
    );
    assert_eq!(codes(&v), vec![WarningCode::PartialPeerAuthentication]);

    // A selector that contradicts the Service's (same key, other value) selects none of
    // its pods: no decision and no warning. Other services get no warning either.
    let other = pa(
        "bookinfo",
        "ratings",
        "{selector: {matchLabels: {app: ratings, version: v2}}, mtls: {mode: DISABLE}}",
    );
    let s = snap(&(bookinfo() + &other + &policy("bookinfo", "default", STRICT)));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_eq!(at(&v, 9080).server.mode, ServerMode::Strict);
    assert!(codes(&v).is_empty(), "{:?}", v.warnings);
}

#[test]
fn s2_pa_wins_over_policy() {
    // "if any PeerAuthentication applies to S at any level, PeerAuthentication decides alone".
    let sp_policy = policy(
        "bookinfo",
        "reviews-9080",
        "{targets: [{name: reviews, ports: [{number: 9080}]}], peers: [{mtls: {}}]}",
    );
    let s =
        snap(&(bookinfo() + &sp_policy + &pa("bookinfo", "default", "{mtls: {mode: PERMISSIVE}}")));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(
        at(&v, 9080),
        ServerMode::Permissive,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "default",
            Level::Namespace,
        )),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);

    // Even a mesh-level PeerAuthentication beats a service-port Policy.
    let s = snap(
        &(bookinfo() + &sp_policy + &pa("istio-system", "default", "{mtls: {mode: DISABLE}}")),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::PeerAuthentication,
            "istio-system",
            "default",
            Level::Mesh,
        )),
    );

    // Without any PeerAuthentication, the Policy decides.
    let s = snap(&(bookinfo() + &sp_policy));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::Policy,
            "bookinfo",
            "reviews-9080",
            Level::ServicePort,
        )),
    );
}

#[test]
fn s2_mesh_pa_in_root_namespace() {
    // "mesh level: one in the root namespace without a selector".
    let y =
        bookinfo() + &namespace("other") + &pa("istio-system", "default", "{mtls: {mode: STRICT}}");
    let s = snap(&y);
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::PeerAuthentication,
            "istio-system",
            "default",
            Level::Mesh,
        )),
    );

    // Another root namespace: istio-system is then an ordinary namespace.
    let custom = Settings {
        root_namespace: "mesh-root".into(),
        ..Settings::default()
    };
    let v = judge_in(&s, &custom, &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(at(&v, 9080), ServerMode::None, None);
    let s2 = snap(&(y.clone() + &pa("mesh-root", "any-name", "{mtls: {mode: PERMISSIVE}}")));
    let v = judge_in(&s2, &custom, &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_server(
        at(&v, 9080),
        ServerMode::Permissive,
        Some((
            ObjectKind::PeerAuthentication,
            "mesh-root",
            "any-name",
            Level::Mesh,
        )),
    );

    // A selector-less PeerAuthentication in another namespace is that namespace's, not the mesh's.
    let s = snap(&(bookinfo() + &pa("other", "default", "{mtls: {mode: STRICT}}")));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(at(&v, 9080), ServerMode::None, None);
    // A root-namespace PeerAuthentication *with* a selector is not mesh-wide.
    let s = snap(
        &(bookinfo()
            + &pa(
                "istio-system",
                "gw",
                "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}",
            )),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(at(&v, 9080), ServerMode::None, None);
    // An empty selector counts as none.
    let s = snap(
        &(bookinfo()
            + &pa(
                "istio-system",
                "default",
                "{selector: {matchLabels: {}}, mtls: {mode: STRICT}}",
            )),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::PeerAuthentication,
            "istio-system",
            "default",
            Level::Mesh,
        )),
    );
}

#[test]
fn s2_tie_oldest_wins_with_warning() {
    // "Ties: several objects at one level apply: the oldest decides (then the name), with a
    // warning that names them."
    let older = pa_at(
        "bookinfo",
        "z-old",
        "2024-01-01T00:00:00Z",
        "{mtls: {mode: STRICT}}",
    );
    let newer = pa_at(
        "bookinfo",
        "a-new",
        "2024-02-01T00:00:00Z",
        "{mtls: {mode: DISABLE}}",
    );
    let v = judge_in(
        &snap(&(bookinfo() + &newer + &older)),
        &settings(),
        &rule_with_tls("reviews", "ISTIO_MUTUAL"),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "z-old",
            Level::Namespace,
        )),
    );
    assert_eq!(codes(&v), vec![WarningCode::Tie]);
    let msg = warning(&v, WarningCode::Tie);
    assert!(
        msg.contains("PeerAuthentication bookinfo/z-old, PeerAuthentication bookinfo/a-new")
            && msg.contains("the oldest, PeerAuthentication bookinfo/z-old, decides"),
        "{msg}"
    );

    // Same age: the name decides.
    let b = pa_at(
        "bookinfo",
        "b",
        "2024-01-01T00:00:00Z",
        "{mtls: {mode: STRICT}}",
    );
    let a = pa_at(
        "bookinfo",
        "a",
        "2024-01-01T00:00:00Z",
        "{mtls: {mode: DISABLE}}",
    );
    let v = judge_in(
        &snap(&(bookinfo() + &b + &a)),
        &settings(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "a",
            Level::Namespace,
        )),
    );
    assert_eq!(codes(&v), vec![WarningCode::Tie]);

    // Service-level Policy targets tie the same way.
    let p_old = policy_at(
        "bookinfo",
        "p-old",
        "2023-05-01T00:00:00Z",
        "{targets: [{name: reviews}], peers: []}",
    );
    let p_new = policy_at(
        "bookinfo",
        "a-new",
        "2023-06-01T00:00:00Z",
        "{targets: [{name: reviews}], peers: [{mtls: {}}]}",
    );
    let v = judge_in(
        &snap(&(bookinfo() + &p_new + &p_old)),
        &settings(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((ObjectKind::Policy, "bookinfo", "p-old", Level::Service)),
    );
    assert!(warning(&v, WarningCode::Tie).contains("Policy bookinfo/p-old, Policy bookinfo/a-new"));

    // Workload level too.
    let w_old = pa_at(
        "bookinfo",
        "w-old",
        "2023-01-01T00:00:00Z",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: PERMISSIVE}}",
    );
    let w_new = pa_at(
        "bookinfo",
        "w-new",
        "2023-02-01T00:00:00Z",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}",
    );
    let v = judge_in(
        &snap(&(bookinfo() + &w_new + &w_old)),
        &settings(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Permissive,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "w-old",
            Level::Workload,
        )),
    );
    assert_eq!(codes(&v), vec![WarningCode::Tie]);

    // One object at a level: no tie warning.
    let v = judge_in(
        &snap(&(bookinfo() + &older)),
        &settings(),
        &rule_with_tls("reviews", "ISTIO_MUTUAL"),
    );
    assert!(codes(&v).is_empty());
}

#[test]
fn open_ties_without_creation_time_count_as_newest() {
    // docs/architecture.md: "Objects without creationTimestamp count as the newest in ties;
    // ties then go by name."
    let no_time = pa("bookinfo", "a-no-time", "{mtls: {mode: STRICT}}");
    let timed = pa_at(
        "bookinfo",
        "z-timed",
        "2024-01-01T00:00:00Z",
        "{mtls: {mode: DISABLE}}",
    );
    let v = judge_in(
        &snap(&(bookinfo() + &no_time + &timed)),
        &settings(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "z-timed",
            Level::Namespace,
        )),
    );
    let n1 = pa("bookinfo", "n-b", "{mtls: {mode: STRICT}}");
    let n2 = pa("bookinfo", "n-a", "{mtls: {mode: DISABLE}}");
    let v = judge_in(
        &snap(&(bookinfo() + &n1 + &n2)),
        &settings(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "n-a",
            Level::Namespace,
        )),
    );
}

#[test]
fn open_policy_without_targets_not_named_default_is_ignored_with_note() {
    // docs/architecture.md: "A Policy without targets that is not named `default` is ignored
    // (as Istio does), with a note." The captured `null-trap` Policy (fixture 04) is one.
    let mut vals = values(&bookinfo());
    vals.push(fixture("04"));
    vals.push(fixture("06"));
    let s = snapshot_of(vals);
    assert_eq!(s.notes().len(), 2, "{:?}", s.notes());
    assert!(s
        .notes()
        .iter()
        .any(|n| n.contains("Policy bookinfo/null-trap")));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(at(&v, 9080), ServerMode::None, None);

    // Only the MeshPolicy named `default` counts (section 1).
    let s = snap(&(bookinfo() + &mesh_policy("strict-everything", STRICT)));
    assert_eq!(s.notes().len(), 1);
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
    assert_server(at(&v, 9080), ServerMode::None, None);
}

#[test]
fn s2_server_mode_is_public_per_subject() {
    // `server_mode` answers for a service, a namespace and the mesh.
    let s = snap(
        &(bookinfo()
            + &mesh_policy("default", PERMISSIVE)
            + &policy("bookinfo", "default", STRICT)
            + &policy("bookinfo", "off", "{targets: [{name: reviews}], peers: []}")),
    );
    let port = PortScope::Port {
        number: 9080,
        name: Some("http".into()),
    };
    let mut w = Vec::new();
    let svc_entry = s.service("bookinfo", "reviews");
    let d = server_mode(
        &s,
        "istio-system",
        Subject::Service {
            namespace: "bookinfo",
            name: "reviews",
            entry: svc_entry,
        },
        &port,
        &mut w,
    );
    assert_eq!(
        (d.mode, d.decider.unwrap().level),
        (ServerMode::Plaintext, Level::Service)
    );
    let d = server_mode(
        &s,
        "istio-system",
        Subject::Namespace("bookinfo"),
        &port,
        &mut w,
    );
    assert_eq!(
        (d.mode, d.decider.unwrap().level),
        (ServerMode::Strict, Level::Namespace)
    );
    let d = server_mode(&s, "istio-system", Subject::Mesh, &port, &mut w);
    assert_eq!(
        (d.mode, d.decider.unwrap().level),
        (ServerMode::Permissive, Level::Mesh)
    );
    assert!(w.is_empty());
}

// ---------------------------------------------------------------------------
// Section 3: client side
// ---------------------------------------------------------------------------

fn strict_two_ports() -> Snapshot {
    snap(&(reviews_two_ports() + &policy("bookinfo", "default", STRICT)))
}

#[test]
fn s3_rule_covers_every_service_port_and_subset() {
    // "The ports a rule covers: every port of the Service ... The subsets it covers: none
    // (the rule itself) and each of its subsets."
    let v = judge_in(
        &strict_two_ports(),
        &settings(),
        &dr(
            "bookinfo",
            "reviews",
            "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}",
        ),
    );
    assert_eq!(
        outcomes(&v),
        vec![
            (Some(9080), None, Outcome::Ok),
            (Some(9080), Some("v1"), Outcome::Ok),
            (Some(9080), Some("v2"), Outcome::Ok),
            (Some(9090), None, Outcome::Ok),
            (Some(9090), Some("v1"), Outcome::Ok),
            (Some(9090), Some("v2"), Outcome::Ok),
        ]
    );
    assert_eq!(
        find(&v, Some(9090), Some("v2")).subset,
        Some((1, "v2".to_string()))
    );
    assert_eq!(
        find(&v, Some(9080), None).port,
        PortScope::Port {
            number: 9080,
            name: Some("http".into())
        }
    );
}

#[test]
fn s3_port_level_replaces_top_level() {
    // "an entry of trafficPolicy.portLevelSettings for P replaces the top-level policy
    // wholesale: its tls decides".
    let v = judge_in(
        &strict_two_ports(),
        &settings(),
        &dr(
            "bookinfo",
            "reviews",
            "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 9090}, tls: {mode: DISABLE}}]}}",
        ),
    );
    let (a, b) = (at(&v, 9080), at(&v, 9090));
    assert_eq!(
        (&a.client, a.client_source),
        (&IM, ClientSource::ScopeTls(TlsScope::Top))
    );
    assert_eq!(a.outcome, Outcome::Ok);
    assert_eq!(
        (&b.client, b.client_source),
        (&DISABLE, ClientSource::PortEntry(TlsScope::Top, 0))
    );
    assert_eq!(b.outcome, Outcome::Conflict);

    // And the other way round: the port entry makes 9080 right while the top level is wrong.
    let v = judge_in(
        &strict_two_ports(),
        &settings(),
        &dr(
            "bookinfo",
            "reviews",
            "{host: reviews, trafficPolicy: {tls: {mode: SIMPLE}, portLevelSettings: [{port: {number: 8000}}, {port: {number: 9080}, tls: {mode: ISTIO_MUTUAL}}]}}",
        ),
    );
    assert_eq!(
        at(&v, 9080).client_source,
        ClientSource::PortEntry(TlsScope::Top, 1)
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
    assert_eq!(at(&v, 9090).client, ClientMode::Simple);
    assert_eq!(at(&v, 9090).outcome, Outcome::Conflict);
}

#[test]
fn s3_port_entry_without_tls_is_unset() {
    // "an entry without tls is UNSET for that port".
    let rule_yaml = dr(
        "bookinfo",
        "reviews",
        "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 9090}, connectionPool: {tcp: {maxConnections: 10}}}]}}",
    );
    let v = judge_in(&strict_two_ports(), &settings(), &rule_yaml);
    let f = at(&v, 9090);
    assert_eq!(
        (&f.client, f.client_source),
        (
            &ClientMode::Unset,
            ClientSource::PortEntry(TlsScope::Top, 0)
        )
    );
    assert_eq!(f.outcome, Outcome::Fill(IM));
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
    let v = judge_in(&strict_two_ports(), &auto_mtls(), &rule_yaml);
    assert_eq!(at(&v, 9090).outcome, Outcome::Ok);

    // No trafficPolicy at all, or one without tls: UNSET at the top level.
    for spec in [
        "{host: reviews}",
        "{host: reviews, trafficPolicy: {loadBalancer: {simple: RANDOM}}}",
        "{host: reviews, trafficPolicy: {tls: null}}",
    ] {
        let v = judge_in(
            &strict_two_ports(),
            &settings(),
            &dr("bookinfo", "reviews", spec),
        );
        for port in [9080, 9090] {
            let f = at(&v, port);
            assert_eq!(
                (&f.client, f.client_source),
                (&ClientMode::Unset, ClientSource::ScopeTls(TlsScope::Top)),
                "{spec}"
            );
            assert_eq!(f.outcome, Outcome::Fill(IM), "{spec}");
        }
    }
}

#[test]
fn s3_subset_inherits_top() {
    // "where its trafficPolicy has neither a port entry for P nor tls, it inherits what the
    // top level gives for P".
    let v = judge_in(
        &strict_two_ports(),
        &settings(),
        &dr(
            "bookinfo",
            "reviews",
            "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 9090}, tls: {mode: SIMPLE}}]},
              subsets: [
                {name: v1},
                {name: v2, trafficPolicy: {loadBalancer: {simple: RANDOM}}},
                {name: v3, trafficPolicy: {portLevelSettings: [{port: {number: 7000}, tls: {mode: DISABLE}}]}}]}",
        ),
    );
    for subset in ["v1", "v2", "v3"] {
        let f = find(&v, Some(9080), Some(subset));
        assert_eq!(
            (&f.client, f.client_source),
            (&IM, ClientSource::ScopeTls(TlsScope::Top)),
            "{subset}"
        );
        assert_eq!(f.outcome, Outcome::Ok);
        // The top level's port entry is what the top level gives for 9090.
        let f = find(&v, Some(9090), Some(subset));
        assert_eq!(
            (&f.client, f.client_source),
            (
                &ClientMode::Simple,
                ClientSource::PortEntry(TlsScope::Top, 0)
            ),
            "{subset}"
        );
        assert_eq!(f.outcome, Outcome::Conflict);
    }

    // A subset's own tls replaces the top level's, and its own port entry replaces both.
    let v = judge_in(
        &strict_two_ports(),
        &settings(),
        &dr(
            "bookinfo",
            "reviews",
            "{host: reviews, trafficPolicy: {tls: {mode: DISABLE}},
              subsets: [{name: v1, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 9090}, tls: {mode: MUTUAL}}]}}]}",
        ),
    );
    let f = find(&v, Some(9080), Some("v1"));
    assert_eq!(
        (&f.client, f.client_source),
        (&IM, ClientSource::ScopeTls(TlsScope::Subset(0)))
    );
    let f = find(&v, Some(9090), Some("v1"));
    assert_eq!(
        (&f.client, f.client_source),
        (
            &ClientMode::Mutual,
            ClientSource::PortEntry(TlsScope::Subset(0), 0)
        )
    );
    assert_eq!(find(&v, Some(9080), None).outcome, Outcome::Conflict);
}

#[test]
fn s3_subset_port_entry_without_tls_is_unset() {
    // "a subset: the same two rules inside its trafficPolicy (a port entry without tls is
    // UNSET, as in Istio)".
    let rule_yaml = dr(
        "bookinfo",
        "reviews",
        "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}},
          subsets: [{name: v1, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 9080}, loadBalancer: {simple: ROUND_ROBIN}}]}}]}",
    );
    let v = judge_in(&strict_two_ports(), &settings(), &rule_yaml);
    let f = find(&v, Some(9080), Some("v1"));
    assert_eq!(
        (&f.client, f.client_source),
        (
            &ClientMode::Unset,
            ClientSource::PortEntry(TlsScope::Subset(0), 0)
        )
    );
    assert_eq!(f.outcome, Outcome::Fill(IM));
    assert_eq!(find(&v, Some(9090), Some("v1")).outcome, Outcome::Ok);
    assert_eq!(find(&v, Some(9080), None).outcome, Outcome::Ok);
    let v = judge_in(&strict_two_ports(), &auto_mtls(), &rule_yaml);
    assert_eq!(find(&v, Some(9080), Some("v1")).outcome, Outcome::Ok);
}

#[test]
fn s3_tls_empty_is_disable() {
    // "`tls: {}` (mode omitted) is DISABLE."
    let specs = [
        ("{host: reviews, trafficPolicy: {tls: {}}}", None, ClientSource::ScopeTls(TlsScope::Top)),
        (
            "{host: reviews, trafficPolicy: {portLevelSettings: [{port: {number: 9080}, tls: {}}]}}",
            None,
            ClientSource::PortEntry(TlsScope::Top, 0),
        ),
        (
            "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}, subsets: [{name: v1, trafficPolicy: {tls: {}}}]}",
            Some("v1"),
            ClientSource::ScopeTls(TlsScope::Subset(0)),
        ),
    ];
    for (spec, subset, source) in specs {
        let strict = snap(&(bookinfo() + &policy("bookinfo", "default", STRICT)));
        let v = judge_in(&strict, &settings(), &dr("bookinfo", "reviews", spec));
        let f = find(&v, Some(9080), subset);
        assert_eq!((&f.client, f.client_source), (&DISABLE, source), "{spec}");
        assert_eq!(f.outcome, Outcome::Conflict, "{spec}");
        let plain = snap(&(bookinfo() + &policy("bookinfo", "default", PLAINTEXT)));
        let v = judge_in(&plain, &settings(), &dr("bookinfo", "reviews", spec));
        assert_eq!(find(&v, Some(9080), subset).outcome, Outcome::Ok, "{spec}");
    }
}

#[test]
fn s3_short_partial_fqdn_hosts() {
    // "a short host s is service s in the rule's namespace; s.n.svc and s.n.svc.<domain> are
    // service s in n; s.n is service s in n only when n is a namespace the snapshot knows".
    let s = snap(&(bookinfo() + &namespace("other") + &policy("bookinfo", "default", STRICT)));
    let reviews = HostTarget::Service {
        namespace: "bookinfo".into(),
        name: "reviews".into(),
        known: true,
    };
    for (host, rule_ns, domain, want) in [
        ("reviews", "bookinfo", "cluster.local", reviews.clone()),
        (
            "reviews.bookinfo",
            "other",
            "cluster.local",
            reviews.clone(),
        ),
        (
            "reviews.bookinfo.svc",
            "other",
            "cluster.local",
            reviews.clone(),
        ),
        (
            "reviews.bookinfo.svc.cluster.local",
            "other",
            "cluster.local",
            reviews.clone(),
        ),
        (
            "reviews.bookinfo.svc.corp.example",
            "other",
            "corp.example",
            reviews.clone(),
        ),
        (
            "reviews.bookinfo.svc.cluster.local",
            "other",
            "corp.example",
            HostTarget::OutOfScope,
        ),
        (
            "reviews",
            "other",
            "cluster.local",
            HostTarget::Service {
                namespace: "other".into(),
                name: "reviews".into(),
                known: false,
            },
        ),
    ] {
        assert_eq!(
            resolve_host(&s, host, rule_ns, domain),
            want,
            "{host} from {rule_ns} ({domain})"
        );
    }
    // Each form judges the same service the same way.
    for host in [
        "reviews",
        "reviews.bookinfo",
        "reviews.bookinfo.svc",
        "reviews.bookinfo.svc.cluster.local",
    ] {
        let v = judge_in(&s, &settings(), &rule_with_tls(host, "DISABLE"));
        assert_eq!(v.target, reviews, "{host}");
        assert_eq!(
            outcomes(&v),
            vec![(Some(9080), None, Outcome::Conflict)],
            "{host}"
        );
        assert_eq!(
            v.display_host("cluster.local"),
            "reviews.bookinfo.svc.cluster.local"
        );
    }
}

#[test]
fn s3_partial_host_unknown_namespace_is_external() {
    // "(otherwise it is an external name)" -> "out of scope: allowed, never patched".
    let s = snap(&(bookinfo() + &policy("bookinfo", "default", STRICT)));
    let v = judge_in(
        &s,
        &settings(),
        &rule_with_tls("reviews.nowhere", "DISABLE"),
    );
    assert_eq!(v.target, HostTarget::OutOfScope);
    assert!(v.findings.is_empty() && v.warnings.is_empty());
    // `s.n.svc` is never external: an unknown service in n.
    let v = judge_in(
        &s,
        &settings(),
        &rule_with_tls("reviews.nowhere.svc", "DISABLE"),
    );
    assert_eq!(
        v.target,
        HostTarget::Service {
            namespace: "nowhere".into(),
            name: "reviews".into(),
            known: false
        }
    );
    assert_eq!(codes(&v), vec![WarningCode::UnknownService]);
}

#[test]
fn open_namespace_known_by_any_object() {
    // docs/architecture.md: "A namespace is known (for s.n hosts) when the snapshot has a
    // Namespace object or any object in it."
    let cases = [
        namespace("team"),
        svc("team", "api", "[{port: 80}]"),
        policy("team", "default", STRICT),
        pa("team", "default", "{mtls: {mode: STRICT}}"),
        ingress("team", "web", Some("nginx"), None, "api"),
        ingress("team", "web", Some("istio"), None, "api"),
        dr("team", "api", "{host: api}"),
    ];
    for y in cases {
        let s = snap(&y);
        assert!(s.knows_namespace("team"), "{y}");
        assert!(
            matches!(
                resolve_host(&s, "api.team", "elsewhere", "cluster.local"),
                HostTarget::Service { .. }
            ),
            "{y}"
        );
    }
    assert!(!snap(&mesh_policy("default", STRICT)).knows_namespace("team"));
}

#[test]
fn s3_namespace_wide_judged_at_namespace_level() {
    // "`*.<n>.svc.<domain>` is a namespace-wide rule for n" judged "against the
    // namespace-level server mode of n".
    let s = snap(
        &(bookinfo()
            + &mesh_policy("default", PLAINTEXT)
            + &policy("bookinfo", "default", STRICT)
            + &policy(
                "bookinfo",
                "disable-mtls-productpage",
                "{targets: [{name: productpage}], peers: []}",
            )),
    );
    let v = judge_in(
        &s,
        &settings(),
        &rule_with_tls("'*.bookinfo.svc.cluster.local'", "ISTIO_MUTUAL"),
    );
    assert_eq!(
        v.target,
        HostTarget::NamespaceWide {
            namespace: "bookinfo".into()
        }
    );
    assert_eq!(outcomes(&v), vec![(None, None, Outcome::Ok)]);
    let f = find(&v, None, None);
    assert_eq!(f.port, PortScope::Other);
    assert_server(
        f,
        ServerMode::Strict,
        Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
    );
    assert!(f.exemption.is_none());

    // The ports it covers: those in its portLevelSettings (top and subsets), then every other.
    let v = judge_in(
        &s,
        &settings(),
        &dr(
            "bookinfo",
            "default",
            "{host: '*.bookinfo.svc.cluster.local', trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 9080}, tls: {mode: DISABLE}}]},
              subsets: [{name: v1, trafficPolicy: {portLevelSettings: [{port: {number: 7000}, tls: {mode: ISTIO_MUTUAL}}]}}]}",
        ),
    );
    assert_eq!(
        outcomes(&v),
        vec![
            (Some(7000), None, Outcome::Ok),
            (Some(7000), Some("v1"), Outcome::Ok),
            (Some(9080), None, Outcome::Conflict),
            (Some(9080), Some("v1"), Outcome::Conflict),
            (None, None, Outcome::Ok),
            (None, Some("v1"), Outcome::Ok),
        ]
    );

    // The captured namespace-wide rule (fixtures 19/20/21), through v1 and as converted to v1alpha3.
    let s = snap(&bookinfo_strict());
    for fx in ["19", "20", "21"] {
        let v = judge(&s, &settings(), &rule_of(fixture(fx)), "bookinfo");
        assert_eq!(
            v.target,
            HostTarget::NamespaceWide {
                namespace: "bookinfo".into()
            },
            "{fx}"
        );
        assert_eq!(outcomes(&v), vec![(None, None, Outcome::Ok)], "{fx}");
    }

    // A namespace-level PLAINTEXT against an ISTIO_MUTUAL wildcard is a conflict.
    let s = snap(&(bookinfo() + &policy("bookinfo", "default", PLAINTEXT)));
    let v = judge_in(
        &s,
        &settings(),
        &rule_with_tls("'*.bookinfo.svc.cluster.local'", "ISTIO_MUTUAL"),
    );
    assert_eq!(outcomes(&v), vec![(None, None, Outcome::Conflict)]);
}

#[test]
fn s3_mesh_wide_judged_at_mesh_level() {
    // "`*.local`, `*.<domain>` and `*.svc.<domain>` are mesh-wide rules"; "a mesh-wide rule
    // against the mesh level".
    let s = snap(
        &(bookinfo() + &mesh_policy("default", STRICT) + &policy("bookinfo", "default", PLAINTEXT)),
    );
    for host in ["'*.local'", "'*.cluster.local'", "'*.svc.cluster.local'"] {
        for (mode, want) in [
            ("ISTIO_MUTUAL", Outcome::Ok),
            ("DISABLE", Outcome::Conflict),
        ] {
            let v = judge_in(&s, &settings(), &rule_with_tls(host, mode));
            assert_eq!(v.target, HostTarget::MeshWide, "{host}");
            assert_eq!(outcomes(&v), vec![(None, None, want)], "{host} {mode}");
            assert_server(
                find(&v, None, None),
                ServerMode::Strict,
                Some((ObjectKind::MeshPolicy, "", "default", Level::Mesh)),
            );
        }
    }
    // A mesh-level PeerAuthentication decides alone.
    let s = snap(
        &(bookinfo()
            + &mesh_policy("default", STRICT)
            + &pa("istio-system", "default", "{mtls: {mode: PERMISSIVE}}")),
    );
    let v = judge_in(&s, &settings(), &rule_with_tls("'*.local'", "DISABLE"));
    assert_server(
        find(&v, None, None),
        ServerMode::Permissive,
        Some((
            ObjectKind::PeerAuthentication,
            "istio-system",
            "default",
            Level::Mesh,
        )),
    );
    assert_eq!(outcomes(&v), vec![(None, None, Outcome::Ok)]);
    // Custom domain.
    let corp = Settings {
        cluster_domain: "corp.example".into(),
        ..Settings::default()
    };
    let v = judge_in(&s, &corp, &rule_with_tls("'*.corp.example'", "DISABLE"));
    assert_eq!(v.target, HostTarget::MeshWide);
    let v = judge_in(&s, &corp, &rule_with_tls("'*.cluster.local'", "DISABLE"));
    assert_eq!(v.target, HostTarget::OutOfScope);
}

#[test]
fn s3_external_host_out_of_scope() {
    // "Any other host (external names, other wildcards) is out of scope: allowed, never patched."
    let s = snap(&(bookinfo_strict() + &mesh_policy("default", STRICT)));
    for host in [
        "www.google.com",
        "'*.google.com'",
        "'*'",
        "'*.svc'",
        "'*.bookinfo.svc'",
        "'*.bookinfo.svc.other.domain'",
        "'*.a.b.svc.cluster.local'",
        "reviews.bookinfo.svc.other.domain",
        "api.example.com",
        "''",
    ] {
        for spec in [
            format!("{{host: {host}, trafficPolicy: {{tls: {{mode: DISABLE}}}}}}"),
            format!("{{host: {host}}}"),
        ] {
            let v = judge_in(&s, &settings(), &dr("bookinfo", "ext", &spec));
            assert_eq!(v.target, HostTarget::OutOfScope, "{spec}");
            assert!(v.findings.is_empty() && v.warnings.is_empty(), "{spec}");
            assert!(!v.has_conflict() && !v.has_change());
        }
    }
}

#[test]
fn s3_unknown_service_warns_and_uses_named_ports() {
    // "A host that resolves to a service the snapshot does not have is judged at namespace
    // and mesh level (and by name for v1alpha1 targets) over the ports the rule names, with a
    // warning that the Service is unknown."
    let s = snap(
        &(bookinfo()
            + &policy("bookinfo", "default", STRICT)
            + &policy(
                "bookinfo",
                "ghost-8080",
                "{targets: [{name: ghost, ports: [{number: 8080}]}], peers: []}",
            )
            + &pa(
                "bookinfo",
                "ghost",
                "{selector: {matchLabels: {app: ghost}}, mtls: {mode: DISABLE}}",
            )),
    );
    let v = judge_in(
        &s,
        &settings(),
        &dr(
            "bookinfo",
            "ghost",
            "{host: ghost, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 8080}, tls: {mode: DISABLE}}]},
              subsets: [{name: v1, trafficPolicy: {portLevelSettings: [{port: {number: 7070}, tls: {mode: DISABLE}}]}}]}",
        ),
    );
    assert_eq!(
        v.target,
        HostTarget::Service {
            namespace: "bookinfo".into(),
            name: "ghost".into(),
            known: false
        }
    );
    assert_eq!(codes(&v), vec![WarningCode::UnknownService]);
    assert!(warning(&v, WarningCode::UnknownService).contains("bookinfo/ghost"));
    assert_eq!(
        outcomes(&v),
        vec![
            (Some(7070), None, Outcome::Ok),
            (Some(7070), Some("v1"), Outcome::Conflict),
            (Some(8080), None, Outcome::Ok),
            (Some(8080), Some("v1"), Outcome::Ok),
            (None, None, Outcome::Ok),
            (None, Some("v1"), Outcome::Ok),
        ]
    );
    // 8080: the Policy target by name (service-port level); a targeted exemption.
    assert_server(
        at(&v, 8080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::Policy,
            "bookinfo",
            "ghost-8080",
            Level::ServicePort,
        )),
    );
    // The workload PeerAuthentication cannot be matched without the Service's selector.
    assert_server(
        at(&v, 7070),
        ServerMode::Strict,
        Some((ObjectKind::Policy, "bookinfo", "default", Level::Namespace)),
    );
    // The finding for the ports it does not name.
    assert_eq!(find(&v, None, None).port, PortScope::Other);
    assert_eq!(
        v.display_host("cluster.local"),
        "ghost.bookinfo.svc.cluster.local"
    );
}

// ---------------------------------------------------------------------------
// Section 4: the ingress exemption
// ---------------------------------------------------------------------------

fn productpage(s: &Snapshot, settings: &Settings, mode: &str) -> Verdict {
    judge_in(s, settings, &rule_with_tls("productpage", mode))
}

fn ingress_exemption(ns: &str, name: &str) -> Option<Exemption> {
    Some(Exemption::Ingress(IngressVia::Ingress(oref(
        ObjectKind::Ingress,
        ns,
        name,
    ))))
}

#[test]
fn s4_ingress_backend_exempt_without_gateway() {
    // "(a) S is reached through a non-mesh ingress and the Istio ingress gateway is not
    // present (then every port of S is exempt)."
    let y = namespace("bookinfo")
        + &svc(
            "bookinfo",
            "productpage",
            "[{name: http, port: 9080}, {name: metrics, port: 9100}]",
        )
        + &svc("bookinfo", "reviews", "[{name: http, port: 9080}]")
        + &policy("bookinfo", "default", STRICT)
        + &ingress("bookinfo", "gateway", Some("nginx"), None, "productpage");
    let s = snap(&y);
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    for port in [9080, 9100] {
        let f = at(&v, port);
        assert_eq!(
            f.exemption,
            ingress_exemption("bookinfo", "gateway"),
            "{port}"
        );
        assert_eq!(f.required, Required::Mode(DISABLE));
        assert_eq!(f.outcome, Outcome::Patch(DISABLE));
        assert_eq!(f.server.mode, ServerMode::Strict);
    }
    assert_eq!(codes(&v), vec![WarningCode::MissingServerExemption]);
    // Other services are not exempt.
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert!(at(&v, 9080).exemption.is_none());
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);

    // `spec.defaultBackend.service.name` counts as a backend too.
    let default_backend = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all, namespace: bookinfo}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: productpage, port: {number: 9080}}}
---
";
    let s = snap(&(bookinfo_strict() + default_backend));
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    assert_eq!(
        at(&v, 9080).exemption,
        ingress_exemption("bookinfo", "catch-all")
    );

    // An Ingress only reaches services of its own namespace.
    let s = snap(
        &(bookinfo_strict()
            + &namespace("web")
            + &ingress("web", "gateway", Some("nginx"), None, "productpage")),
    );
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    assert!(at(&v, 9080).exemption.is_none());
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
}

#[test]
fn s4_ingress_class_istio_not_exempt() {
    // "it is Istio's when it is `istio` ...".
    let s = snap(
        &(bookinfo_strict() + &ingress("bookinfo", "gateway", Some("istio"), None, "productpage")),
    );
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    assert!(at(&v, 9080).exemption.is_none());
    assert_eq!(outcomes(&v), vec![(Some(9080), None, Outcome::Ok)]);
    assert!(codes(&v).is_empty());
}

#[test]
fn s4_ingressclass_controller_istio() {
    // "... or names an IngressClass whose controller is istio.io/ingress-controller".
    let classes = ingress_class("mesh-gw", "istio.io/ingress-controller", false)
        + &ingress_class("public", "k8s.io/ingress-nginx", false);
    let s = snap(
        &(bookinfo_strict()
            + &classes
            + &ingress("bookinfo", "gateway", Some("mesh-gw"), None, "productpage")),
    );
    assert!(at(&productpage(&s, &settings(), "ISTIO_MUTUAL"), 9080)
        .exemption
        .is_none());
    let s = snap(
        &(bookinfo_strict()
            + &classes
            + &ingress("bookinfo", "gateway", Some("public"), None, "productpage")),
    );
    assert_eq!(
        at(&productpage(&s, &settings(), "ISTIO_MUTUAL"), 9080).exemption,
        ingress_exemption("bookinfo", "gateway")
    );
}

#[test]
fn s4_no_class_default_class_istio() {
    // "an Ingress with no class is non-mesh unless the cluster's default IngressClass is Istio's".
    let istio_default = ingress_class("istio-default", "istio.io/ingress-controller", true);
    let nginx_default = ingress_class("nginx", "k8s.io/ingress-nginx", true);
    let istio_not_default = ingress_class("istio-other", "istio.io/ingress-controller", false);
    let no_class = ingress("bookinfo", "gateway", None, None, "productpage");
    for (classes, exempt) in [
        (istio_default.clone(), false),
        (nginx_default.clone(), true),
        (istio_not_default.clone(), true),
        (String::new(), true),
    ] {
        let s = snap(&(bookinfo_strict() + &classes + &no_class));
        let f = at(&productpage(&s, &settings(), "ISTIO_MUTUAL"), 9080).clone();
        assert_eq!(f.exemption.is_some(), exempt, "{classes}");
        assert_eq!(
            f.outcome,
            if exempt {
                Outcome::Patch(DISABLE)
            } else {
                Outcome::Ok
            }
        );
    }
    // A named class is that class, whatever the default is.
    let s = snap(
        &(bookinfo_strict()
            + &istio_default
            + &ingress("bookinfo", "gateway", Some("nginx"), None, "productpage")),
    );
    assert!(at(&productpage(&s, &settings(), "ISTIO_MUTUAL"), 9080)
        .exemption
        .is_some());
}

#[test]
fn s4_legacy_annotation_class() {
    // "The class is spec.ingressClassName, else the annotation kubernetes.io/ingress.class".
    for (class, annotation, exempt) in [
        (None, Some("istio"), false),
        (None, Some("nginx"), true),
        (Some("nginx"), Some("istio"), true),
        (Some("istio"), Some("nginx"), false),
    ] {
        let s = snap(
            &(bookinfo_strict()
                + &ingress("bookinfo", "gateway", class, annotation, "productpage")),
        );
        let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
        assert_eq!(
            at(&v, 9080).exemption.is_some(),
            exempt,
            "{class:?} {annotation:?}"
        );
    }
    // The annotation may also name an IngressClass.
    let s = snap(
        &(bookinfo_strict()
            + &ingress_class("mesh-gw", "istio.io/ingress-controller", false)
            + &ingress("bookinfo", "gateway", None, Some("mesh-gw"), "productpage")),
    );
    assert!(at(&productpage(&s, &settings(), "ISTIO_MUTUAL"), 9080)
        .exemption
        .is_none());
}

#[test]
fn s4_annotation_exposed() {
    // "or a Service annotated mtls-guard.io/ingress-exposed: "true"".
    let exposed = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: productpage, namespace: bookinfo, annotations: {{mtls-guard.io/ingress-exposed: \"{value}\"}}}}\nspec: {{selector: {{app: productpage}}, ports: [{{name: http, port: 9080}}]}}\n---\n"
        )
    };
    let base = namespace("bookinfo") + &policy("bookinfo", "default", STRICT);
    let s = snap(&(base.clone() + &exposed("true")));
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    assert_eq!(
        at(&v, 9080).exemption,
        Some(Exemption::Ingress(IngressVia::Annotation))
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Patch(DISABLE));
    let s = snap(&(base + &exposed("false")));
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    assert!(at(&v, 9080).exemption.is_none());
}

#[test]
fn s4_operator_named() {
    // "or named by the operator (--ingress-service NS/NAME)".
    let s = snap(&bookinfo_strict());
    let named = Settings {
        ingress_services: vec![("bookinfo".into(), "productpage".into())],
        ..Settings::default()
    };
    let v = productpage(&s, &named, "ISTIO_MUTUAL");
    assert_eq!(
        at(&v, 9080).exemption,
        Some(Exemption::Ingress(IngressVia::Operator))
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Patch(DISABLE));
    let elsewhere = Settings {
        ingress_services: vec![("other".into(), "productpage".into())],
        ..Settings::default()
    };
    assert!(at(&productpage(&s, &elsewhere, "ISTIO_MUTUAL"), 9080)
        .exemption
        .is_none());
}

#[test]
fn s4_gateway_present_detected_and_flag() {
    // "Istio ingress gateway present: a Service labelled istio: ingressgateway exists in the
    // Istio namespace, unless the operator says otherwise (--ingress-gateway present|absent)".
    let exposed =
        bookinfo_strict() + &ingress("bookinfo", "gateway", Some("nginx"), None, "productpage");
    let with_gw = snap(&(exposed.clone() + &gateway_service("istio-system")));
    let without_gw = snap(&exposed);
    let gw_elsewhere = snap(&(exposed.clone() + &gateway_service("bookinfo")));
    let flag = |g| Settings {
        ingress_gateway: g,
        ..Settings::default()
    };
    for (s, gw, exempt) in [
        (&with_gw, IngressGateway::Detect, false),
        (&with_gw, IngressGateway::Absent, true),
        (&with_gw, IngressGateway::Present, false),
        (&without_gw, IngressGateway::Detect, true),
        (&without_gw, IngressGateway::Present, false),
        (&without_gw, IngressGateway::Absent, true),
        (&gw_elsewhere, IngressGateway::Detect, true),
    ] {
        let v = productpage(s, &flag(gw), "ISTIO_MUTUAL");
        let f = at(&v, 9080);
        assert_eq!(f.exemption.is_some(), exempt, "{gw:?}");
        assert_eq!(
            f.outcome,
            if exempt {
                Outcome::Patch(DISABLE)
            } else {
                Outcome::Ok
            },
            "{gw:?}"
        );
    }
}

#[test]
fn s4_targeted_plaintext_is_exempt_b() {
    // "(b) its server mode at P is PLAINTEXT and was decided at service, service-port,
    // workload or workload-port level".
    let cases = [
        (
            policy("bookinfo", "disable-mtls-productpage", "{targets: [{name: productpage}], peers: []}"),
            ObjectKind::Policy,
            "disable-mtls-productpage",
            Level::Service,
        ),
        (
            policy("bookinfo", "pp-9080", "{targets: [{name: productpage, ports: [{number: 9080}]}]}"),
            ObjectKind::Policy,
            "pp-9080",
            Level::ServicePort,
        ),
        (
            pa("bookinfo", "pp", "{selector: {matchLabels: {app: productpage}}, mtls: {mode: DISABLE}}"),
            ObjectKind::PeerAuthentication,
            "pp",
            Level::Workload,
        ),
        (
            pa("bookinfo", "pp", "{selector: {matchLabels: {app: productpage}}, mtls: {mode: STRICT}, portLevelMtls: {\"9080\": {mode: DISABLE}}}"),
            ObjectKind::PeerAuthentication,
            "pp",
            Level::WorkloadPort,
        ),
    ];
    for (extra, kind, name, level) in cases {
        // With the gateway present, so that (a) cannot apply.
        let s = snap(&(bookinfo_strict() + &extra + &gateway_service("istio-system")));
        for (mode, want) in [
            ("ISTIO_MUTUAL", Outcome::Patch(DISABLE)),
            ("DISABLE", Outcome::Ok),
            ("SIMPLE", Outcome::Conflict),
        ] {
            let v = productpage(&s, &settings(), mode);
            let f = at(&v, 9080);
            assert_eq!(
                f.exemption,
                Some(Exemption::Targeted {
                    object: oref(kind, "bookinfo", name),
                    level
                }),
                "{name}"
            );
            assert_server(
                f,
                ServerMode::Plaintext,
                Some((kind, "bookinfo", name, level)),
            );
            assert_eq!(f.required, Required::Mode(DISABLE));
            assert_eq!(f.outcome, want, "{name} {mode}");
            assert!(codes(&v).is_empty(), "{:?}", v.warnings);
        }
        let v = judge_in(&s, &settings(), &rule_without_tls("productpage"));
        assert_eq!(at(&v, 9080).outcome, Outcome::Fill(DISABLE));
    }
}

#[test]
fn s4_namespace_plaintext_not_exempt() {
    // "Why (b) is patched while namespace- or mesh-level PLAINTEXT is not".
    for extra in [
        policy("bookinfo", "default", PLAINTEXT),
        mesh_policy("default", PLAINTEXT),
        pa("bookinfo", "default", "{mtls: {mode: DISABLE}}"),
        pa("istio-system", "default", "{mtls: {mode: DISABLE}}"),
    ] {
        let s = snap(&(bookinfo() + &extra));
        let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
        let f = at(&v, 9080);
        assert!(f.exemption.is_none(), "{extra}");
        assert_eq!(f.server.mode, ServerMode::Plaintext);
        assert!(!f.server.decider.as_ref().unwrap().level.is_targeted());
        assert_eq!(f.required, Required::Mode(DISABLE));
        assert_eq!(f.outcome, Outcome::Conflict, "{extra}");
    }
    let s = snap(&(bookinfo() + &policy("bookinfo", "default", PLAINTEXT)));
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert_eq!(
        v.message(at(&v, 9080), "cluster.local"),
        "reviews.bookinfo.svc.cluster.local port 9080: tls mode ISTIO_MUTUAL, but Policy bookinfo/default disables mutual TLS (PLAINTEXT); use DISABLE or enable mutual TLS in Policy bookinfo/default"
    );
}

#[test]
fn s4_exempt_strict_warns_missing_server_exemption() {
    // "Case (a) with a server mode that is still STRICT gets a warning that names the
    // missing server-side exemption and how to add it."
    let ing = ingress("bookinfo", "gateway", Some("nginx"), None, "productpage");
    let s = snap(&(bookinfo_strict() + &ing));
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    assert_eq!(codes(&v), vec![WarningCode::MissingServerExemption]);
    let msg = warning(&v, WarningCode::MissingServerExemption);
    assert!(msg.contains("Policy bookinfo/default"), "{msg}");
    assert!(
        msg.contains("disable-mtls-productpage") && msg.contains("peers: []"),
        "{msg}"
    );
    // The warning is about the server side: also when the rule is already DISABLE.
    let v = productpage(&s, &settings(), "DISABLE");
    assert_eq!(outcomes(&v), vec![(Some(9080), None, Outcome::Ok)]);
    assert_eq!(codes(&v), vec![WarningCode::MissingServerExemption]);

    // Decided by a PeerAuthentication: the fix is a PeerAuthentication.
    let s = snap(&(bookinfo() + &ing + &pa("bookinfo", "default", "{mtls: {mode: STRICT}}")));
    let msg = productpage(&s, &settings(), "ISTIO_MUTUAL").warnings[0]
        .message
        .clone();
    assert!(
        msg.contains("PeerAuthentication bookinfo/default") && msg.contains("mtls mode DISABLE"),
        "{msg}"
    );

    // Not STRICT: no warning (and, by section 5's row "S:P exempt, server PERMISSIVE or
    // NONE | any", no patch either).
    for extra in [policy("bookinfo", "default", PERMISSIVE), String::new()] {
        let s = snap(&(bookinfo() + &extra + &ing));
        let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
        assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
        assert!(codes(&v).is_empty(), "{extra}: {:?}", v.warnings);
    }
}

#[test]
fn open_both_exemptions_name_the_targeted_one() {
    // docs/architecture.md: "When a port is both ingress-exempt (a) and has a targeted
    // PLAINTEXT (b), the targeted exemption is named."
    let s = snap(
        &(bookinfo_strict()
            + &ingress("bookinfo", "gateway", Some("nginx"), None, "productpage")
            + &policy(
                "bookinfo",
                "disable-mtls-productpage",
                "{targets: [{name: productpage}], peers: []}",
            )),
    );
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    assert_eq!(
        at(&v, 9080).exemption,
        Some(Exemption::Targeted {
            object: oref(ObjectKind::Policy, "bookinfo", "disable-mtls-productpage"),
            level: Level::Service
        })
    );
    assert!(codes(&v).is_empty());
}

// ---------------------------------------------------------------------------
// Section 4 (c): Gateway API routes attached to a non-mesh Gateway
// ---------------------------------------------------------------------------

const GW: &str = "gateway.networking.k8s.io/v1";
const ENVOY: &str = "gateway.envoyproxy.io/gatewayclass-controller";

fn gateway_class(name: &str, controller: &str) -> String {
    format!(
        "apiVersion: {GW}\nkind: GatewayClass\nmetadata: {{name: {name}}}\nspec: {{controllerName: {controller}}}\n---\n"
    )
}

/// A Gateway with the given listeners (a flow YAML sequence).
fn gateway(ns: &str, name: &str, class: &str, listeners: &str) -> String {
    format!(
        "apiVersion: {GW}\nkind: Gateway\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{gatewayClassName: {class}, listeners: {listeners}}}\n---\n"
    )
}

const HTTP_LISTENER: &str = "[{name: http, port: 80, protocol: HTTP}]";

/// A route of `kind` (`apiVersion` `api`) with the given parentRefs and rules (flow YAML).
fn route_in(api: &str, kind: &str, ns: &str, name: &str, parents: &str, rules: &str) -> String {
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{parentRefs: {parents}, rules: {rules}}}\n---\n"
    )
}

/// An HTTPRoute to Gateway `gw` (namespace `gw_ns`) with one backend `backend:port`.
fn http_route(ns: &str, name: &str, gw_ns: &str, gw: &str, backend: &str, port: u32) -> String {
    route_in(
        GW,
        "HTTPRoute",
        ns,
        name,
        &format!("[{{name: {gw}, namespace: {gw_ns}}}]"),
        &format!("[{{backendRefs: [{{name: {backend}, port: {port}}}]}}]"),
    )
}

fn reference_grant(ns: &str, from_kind: &str, from_ns: &str, to_name: Option<&str>) -> String {
    let to_name = to_name.map_or(String::new(), |n| format!(", name: {n}"));
    format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: grant, namespace: {ns}}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: {from_kind}, namespace: {from_ns}}}]\n  to: [{{group: \"\", kind: Service{to_name}}}]\n---\n"
    )
}

/// Bookinfo STRICT with an envoy GatewayClass and Gateway `bookinfo/public` (HTTP, port 80).
fn bookinfo_with_gateway() -> String {
    bookinfo_strict()
        + &gateway_class("envoy", ENVOY)
        + &gateway("bookinfo", "public", "envoy", HTTP_LISTENER)
}

fn gateway_exemption(
    route: (ObjectKind, &str, &str),
    gw: (&str, &str),
    controller: &str,
) -> Option<Exemption> {
    Some(Exemption::Gateway {
        port: 9080,
        route: oref(route.0, route.1, route.2),
        gateway: oref(ObjectKind::Gateway, gw.0, gw.1),
        controller: controller.into(),
    })
}

/// Whether productpage:9080 (ISTIO_MUTUAL) is exempt in the snapshot of `yaml`.
fn productpage_exempt(yaml: &str, settings: &Settings) -> bool {
    let v = productpage(&snap(yaml), settings, "ISTIO_MUTUAL");
    let f = at(&v, 9080);
    assert_eq!(
        f.outcome,
        if f.exemption.is_some() {
            Outcome::Patch(DISABLE)
        } else {
            Outcome::Ok
        },
        "STRICT server: an exempt port is patched, another is fine"
    );
    f.exemption.is_some()
}

#[test]
fn s4c_httproute_backend_same_namespace_exempt() {
    // "(c) S:P is a backend of a Gateway API route attached to a non-mesh Gateway, whether
    // or not an Istio ingress gateway exists".
    let y = bookinfo_with_gateway()
        + &http_route(
            "bookinfo",
            "front",
            "bookinfo",
            "public",
            "productpage",
            9080,
        );
    for extra in [String::new(), gateway_service("istio-system")] {
        let s = snap(&(y.clone() + &extra));
        let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
        let f = at(&v, 9080);
        assert_eq!(
            f.exemption,
            gateway_exemption(
                (ObjectKind::HTTPRoute, "bookinfo", "front"),
                ("bookinfo", "public"),
                ENVOY
            )
        );
        assert_eq!(f.required, Required::Mode(DISABLE));
        assert_eq!(f.outcome, Outcome::Patch(DISABLE));
        // Section 6: the explanation names the route as `Kind namespace/name` and its Gateway.
        let msg = v.message(f, "cluster.local");
        assert_eq!(
            msg,
            format!("productpage.bookinfo.svc.cluster.local port 9080: tls mode ISTIO_MUTUAL, but productpage port 9080 is a backend of HTTPRoute bookinfo/front on Gateway bookinfo/public, whose controller {ENVOY} is not the mesh's, so it is exempt from mutual TLS; set DISABLE")
        );
    }
    // Only the services the route names are exempt.
    let s = snap(&y);
    let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "ISTIO_MUTUAL"));
    assert!(at(&v, 9080).exemption.is_none());
}

#[test]
fn s4c_backend_port_is_the_service_port() {
    // "A route's backendRefs[].port is the Service port": only that port is exempt.
    let y = namespace("bookinfo")
        + &svc(
            "bookinfo",
            "productpage",
            "[{name: http, port: 9080, targetPort: 8080}, {name: metrics, port: 9100}]",
        )
        + &policy("bookinfo", "default", STRICT)
        + &gateway_class("envoy", ENVOY)
        + &gateway("bookinfo", "public", "envoy", HTTP_LISTENER)
        + &http_route(
            "bookinfo",
            "front",
            "bookinfo",
            "public",
            "productpage",
            9080,
        );
    let v = productpage(&snap(&y), &settings(), "ISTIO_MUTUAL");
    assert_eq!(at(&v, 9080).outcome, Outcome::Patch(DISABLE));
    assert!(at(&v, 9100).exemption.is_none());
    assert_eq!(at(&v, 9100).outcome, Outcome::Ok);
    // A route to the target port (8080) names no Service port: nothing is exempt.
    let y = y.replace("port: 9080}]}]", "port: 8080}]}]");
    let v = productpage(&snap(&y), &settings(), "ISTIO_MUTUAL");
    assert!(v.findings.iter().all(|f| f.exemption.is_none()));
}

#[test]
fn s4c_missing_server_exemption_names_route_gateway_and_port() {
    // "Case (a) or (c) with a server mode that is still STRICT gets a warning that names the
    // missing server-side exemption and how to add it."
    let route = http_route(
        "bookinfo",
        "front",
        "bookinfo",
        "public",
        "productpage",
        9080,
    );
    let s = snap(&(bookinfo_with_gateway() + &route));
    let v = productpage(&s, &settings(), "DISABLE");
    assert_eq!(outcomes(&v), vec![(Some(9080), None, Outcome::Ok)]);
    assert_eq!(codes(&v), vec![WarningCode::MissingServerExemption]);
    let msg = warning(&v, WarningCode::MissingServerExemption);
    assert_eq!(
        msg,
        format!("productpage port 9080 is a backend of HTTPRoute bookinfo/front on Gateway bookinfo/public, whose controller {ENVOY} is not the mesh's, so it is exempt from mutual TLS, but Policy bookinfo/default still requires mutual TLS (STRICT) on the server side, so plaintext calls from the ingress will fail until a service-specific exemption exists: apply a Policy in bookinfo with `targets: [{{name: productpage, ports: [{{number: 9080}}]}}]` and `peers: []`")
    );
    // Decided by a PeerAuthentication: its portLevelMtls is keyed by the target port.
    let y = namespace("bookinfo")
        + &svc(
            "bookinfo",
            "productpage",
            "[{name: http, port: 9080, targetPort: 8080}]",
        )
        + &pa("bookinfo", "default", "{mtls: {mode: STRICT}}")
        + &gateway_class("envoy", ENVOY)
        + &gateway("bookinfo", "public", "envoy", HTTP_LISTENER)
        + &route;
    let v = productpage(&snap(&y), &settings(), "ISTIO_MUTUAL");
    let msg = warning(&v, WarningCode::MissingServerExemption);
    assert!(
        msg.contains("PeerAuthentication bookinfo/default still requires")
            && msg.ends_with("whose selector matches productpage's pods with `portLevelMtls: {8080: {mode: PERMISSIVE}}`"),
        "{msg}"
    );
    // The server-side exemption applied (PERMISSIVE on that port): no warning, and by
    // section 5 an exempt PERMISSIVE port takes any mode.
    let y = y + &pa("bookinfo", "productpage", "{selector: {matchLabels: {app: productpage}}, portLevelMtls: {\"8080\": {mode: PERMISSIVE}}}");
    let v = productpage(&snap(&y), &settings(), "ISTIO_MUTUAL");
    assert!(codes(&v).is_empty(), "{:?}", v.warnings);
    assert_eq!(at(&v, 9080).required, Required::Any);
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
}

#[test]
fn s4c_cross_namespace_backend_needs_reference_grant() {
    // "in the route's namespace or, through a ReferenceGrant in S's namespace that allows that
    // route kind from the route's namespace, in another".
    let base = bookinfo_strict()
        + &gateway_class("envoy", ENVOY)
        + &gateway("edge", "public", "envoy", HTTP_LISTENER)
        + &route_in(
            GW,
            "HTTPRoute",
            "edge",
            "shop",
            "[{name: public}]",
            "[{backendRefs: [{name: productpage, namespace: bookinfo, port: 9080}]}]",
        );
    let cases = [
        ("no grant", String::new(), false),
        (
            "grant for every Service",
            reference_grant("bookinfo", "HTTPRoute", "edge", None),
            true,
        ),
        (
            "grant naming the Service",
            reference_grant("bookinfo", "HTTPRoute", "edge", Some("productpage")),
            true,
        ),
        (
            "grant naming another Service",
            reference_grant("bookinfo", "HTTPRoute", "edge", Some("reviews")),
            false,
        ),
        (
            "grant for another route kind",
            reference_grant("bookinfo", "GRPCRoute", "edge", None),
            false,
        ),
        (
            "grant from another namespace",
            reference_grant("bookinfo", "HTTPRoute", "other", None),
            false,
        ),
        (
            "grant in the route's namespace",
            reference_grant("edge", "HTTPRoute", "edge", None),
            false,
        ),
        (
            "grant to another kind",
            reference_grant("bookinfo", "HTTPRoute", "edge", None)
                .replace("kind: Service", "kind: Secret"),
            false,
        ),
    ];
    for (case, grant, exempt) in cases {
        let v = productpage(&snap(&(base.clone() + &grant)), &settings(), "ISTIO_MUTUAL");
        let want = exempt
            .then(|| {
                gateway_exemption(
                    (ObjectKind::HTTPRoute, "edge", "shop"),
                    ("edge", "public"),
                    ENVOY,
                )
            })
            .flatten();
        assert_eq!(at(&v, 9080).exemption, want, "{case}");
    }
}

#[test]
fn s4c_istio_class_and_other_classes() {
    // "whose spec.gatewayClassName names a GatewayClass whose spec.controllerName is not a
    // mesh controller ... every controllerName that starts with istio.io/".
    for (controller, exempt) in [
        (ENVOY, true),
        ("k8s.io/ingress-nginx", true),
        ("openshift.io/gateway-controller/v1", true),
        ("istio.io/gateway-controller", false),
        ("istio.io/mesh-controller", false),
        ("istio.io/unmanaged-gateway", false),
        // Only the prefix counts, not a look-alike.
        ("example.com/istio.io/gateway", true),
    ] {
        let y = bookinfo_strict()
            + &gateway_class("cls", controller)
            + &gateway("bookinfo", "public", "cls", HTTP_LISTENER)
            + &http_route(
                "bookinfo",
                "front",
                "bookinfo",
                "public",
                "productpage",
                9080,
            );
        assert_eq!(productpage_exempt(&y, &settings()), exempt, "{controller}");
    }
}

#[test]
fn s4c_configured_mesh_controller() {
    // "and the names given with --mesh-gateway-controller".
    let y = bookinfo_strict()
        + &gateway_class("openshift-default", "openshift.io/gateway-controller/v1")
        + &gateway("bookinfo", "public", "openshift-default", HTTP_LISTENER)
        + &http_route(
            "bookinfo",
            "front",
            "bookinfo",
            "public",
            "productpage",
            9080,
        );
    assert!(productpage_exempt(&y, &settings()));
    let configured = Settings {
        mesh_gateway_controllers: vec![
            "example.com/other".into(),
            "openshift.io/gateway-controller/v1".into(),
        ],
        ..Settings::default()
    };
    assert!(!productpage_exempt(&y, &configured));
    // A route attached to a mesh Gateway and to a non-mesh one is exempt through the latter.
    let both = y
        + &gateway_class("envoy", ENVOY)
        + &gateway("bookinfo", "edge", "envoy", HTTP_LISTENER)
        + &route_in(
            GW,
            "HTTPRoute",
            "bookinfo",
            "front",
            "[{name: public}, {name: edge}]",
            "[{backendRefs: [{name: productpage, port: 9080}]}]",
        );
    let v = productpage(&snap(&both), &configured, "ISTIO_MUTUAL");
    assert_eq!(
        at(&v, 9080).exemption,
        gateway_exemption(
            (ObjectKind::HTTPRoute, "bookinfo", "front"),
            ("bookinfo", "edge"),
            ENVOY
        )
    );
}

#[test]
fn s4c_service_parent_does_not_count() {
    // "A parent that is a Service (mesh routing) ... does not count".
    let y = bookinfo_with_gateway()
        + &route_in(
            GW,
            "HTTPRoute",
            "bookinfo",
            "reviews",
            "[{group: \"\", kind: Service, name: productpage}]",
            "[{backendRefs: [{name: productpage, port: 9080}]}]",
        );
    assert!(!productpage_exempt(&y, &settings()));
    // Another kind in the Gateway API group is not a Gateway either.
    let y = y.replace("group: \"\", kind: Service", "kind: ListenerSet");
    assert!(!productpage_exempt(&y, &settings()));
}

#[test]
fn s4c_missing_gateway_or_class_does_not_count() {
    // "a missing Gateway or GatewayClass does not count either".
    let route = http_route(
        "bookinfo",
        "front",
        "bookinfo",
        "public",
        "productpage",
        9080,
    );
    let no_gateway = bookinfo_strict() + &gateway_class("envoy", ENVOY) + &route;
    assert!(!productpage_exempt(&no_gateway, &settings()));
    let no_class =
        bookinfo_strict() + &gateway("bookinfo", "public", "envoy", HTTP_LISTENER) + &route;
    assert!(!productpage_exempt(&no_class, &settings()));
    // The same Gateway name in another namespace is another Gateway.
    let elsewhere = bookinfo_strict()
        + &gateway_class("envoy", ENVOY)
        + &gateway(
            "edge",
            "public",
            "envoy",
            "[{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]",
        )
        + &route;
    assert!(!productpage_exempt(&elsewhere, &settings()));
}

#[test]
fn s4c_tls_and_tcp_routes_in_both_versions() {
    // "HTTPRoute, GRPCRoute, TLSRoute or TCPRoute (gateway.networking.k8s.io, any served
    // version)"; TLSRoute and TCPRoute went from v1alpha2 through v1alpha3 to v1. Default
    // kinds: "TLSRoute for TLS, TCPRoute for TCP".
    let listeners = "[{name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}, {name: tcp, port: 5432, protocol: TCP}]";
    let base = bookinfo_strict()
        + &gateway_class("envoy", ENVOY)
        + &gateway("bookinfo", "l4", "envoy", listeners);
    let backends = "[{backendRefs: [{name: productpage, port: 9080}]}]";
    for version in ["v1", "v1alpha2", "v1alpha3"] {
        let api = format!("gateway.networking.k8s.io/{version}");
        for (kind, object_kind) in [
            ("TLSRoute", ObjectKind::TLSRoute),
            ("TCPRoute", ObjectKind::TCPRoute),
        ] {
            let y =
                base.clone() + &route_in(&api, kind, "bookinfo", "l4", "[{name: l4}]", backends);
            let v = productpage(&snap(&y), &settings(), "ISTIO_MUTUAL");
            assert_eq!(
                at(&v, 9080).exemption,
                gateway_exemption((object_kind, "bookinfo", "l4"), ("bookinfo", "l4"), ENVOY),
                "{kind} {version}"
            );
            // Pinned to a listener of the other protocol: not admitted.
            let other = if kind == "TLSRoute" { "tcp" } else { "tls" };
            let y = base.clone()
                + &route_in(
                    &api,
                    kind,
                    "bookinfo",
                    "l4",
                    &format!("[{{name: l4, sectionName: {other}}}]"),
                    backends,
                );
            assert!(
                !productpage_exempt(&y, &settings()),
                "{kind} {version} on {other}"
            );
        }
    }
    // GRPCRoute on an HTTP listener, by default.
    let y = bookinfo_with_gateway()
        + &route_in(
            GW,
            "GRPCRoute",
            "bookinfo",
            "rpc",
            "[{name: public}]",
            backends,
        );
    assert!(productpage_exempt(&y, &settings()));
}

#[test]
fn s4c_weight_zero_does_not_count() {
    // "backends of weight 0 carry no traffic and do not count".
    let rules = |w: &str| {
        format!("[{{backendRefs: [{{name: reviews, port: 9080}}, {{name: productpage, port: 9080{w}}}]}}]")
    };
    for (weight, exempt) in [("", true), (", weight: 1", true), (", weight: 0", false)] {
        let y = bookinfo_with_gateway()
            + &route_in(
                GW,
                "HTTPRoute",
                "bookinfo",
                "front",
                "[{name: public}]",
                &rules(weight),
            );
        assert_eq!(productpage_exempt(&y, &settings()), exempt, "{weight}");
    }
}

#[test]
fn s4c_request_mirror_backend_counts() {
    // "the backend of an HTTPRoute RequestMirror filter does (mirrored requests arrive in
    // plaintext too)": on a rule, and on a backend.
    let mirror =
        "{type: RequestMirror, requestMirror: {backendRef: {name: productpage, port: 9080}}}";
    let on_rule =
        format!("[{{filters: [{mirror}], backendRefs: [{{name: reviews, port: 9080}}]}}]");
    let on_backend =
        format!("[{{backendRefs: [{{name: reviews, port: 9080, filters: [{mirror}]}}]}}]");
    // A backend of weight 0 gets no requests, so it mirrors none (docs/architecture.md).
    let on_idle_backend = format!("[{{backendRefs: [{{name: details, port: 9080}}, {{name: reviews, port: 9080, weight: 0, filters: [{mirror}]}}]}}]");
    // Another filter type names no backend.
    let other_filter = "[{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: productpage}]}}], backendRefs: [{name: reviews, port: 9080}]}]".to_string();
    for (rules, exempt) in [
        (on_rule, true),
        (on_backend, true),
        (on_idle_backend, false),
        (other_filter, false),
    ] {
        let y = bookinfo_with_gateway()
            + &route_in(
                GW,
                "HTTPRoute",
                "bookinfo",
                "front",
                "[{name: public}]",
                &rules,
            );
        assert_eq!(productpage_exempt(&y, &settings()), exempt, "{rules}");
    }
}

#[test]
fn s4c_allowed_routes_namespaces() {
    // "a listener's allowedRoutes.namespaces.from (default Same; All; Selector over the route
    // namespace's labels) must admit the route's namespace".
    let listener = |allowed: &str| format!("[{{name: http, port: 80, protocol: HTTP{allowed}}}]");
    let route = http_route("bookinfo", "front", "edge", "public", "productpage", 9080);
    let labelled_ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo, labels: {gateway-access: \"true\"}}\n---\n";
    let cases = [
        ("default (Same)", "", false, false),
        ("Same", ", allowedRoutes: {namespaces: {from: Same}}", false, false),
        ("All", ", allowedRoutes: {namespaces: {from: All}}", true, true),
        (
            "Selector by label",
            ", allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gateway-access: \"true\"}}}}",
            true,
            false,
        ),
        (
            "Selector by expression",
            ", allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: gateway-access, operator: Exists}]}}}",
            true,
            false,
        ),
        (
            // The API server labels every Namespace with its name.
            "Selector by name label",
            ", allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: bookinfo}}}}",
            true,
            true,
        ),
        ("Selector without selector", ", allowedRoutes: {namespaces: {from: Selector}}", false, false),
    ];
    for (case, allowed, with_label, without_label) in cases {
        let base = gateway_class("envoy", ENVOY)
            + &gateway("edge", "public", "envoy", &listener(allowed))
            + &route;
        let labelled = labelled_ns.to_string()
            + &svc("bookinfo", "productpage", "[{name: http, port: 9080}]")
            + &policy("bookinfo", "default", STRICT)
            + &base;
        let unlabelled = bookinfo_strict() + &base;
        assert_eq!(
            productpage_exempt(&labelled, &settings()),
            with_label,
            "{case}, labelled"
        );
        assert_eq!(
            productpage_exempt(&unlabelled, &settings()),
            without_label,
            "{case}, unlabelled"
        );
    }
    // Same admits a route in the Gateway's own namespace.
    let y = bookinfo_with_gateway()
        + &http_route(
            "bookinfo",
            "front",
            "bookinfo",
            "public",
            "productpage",
            9080,
        );
    assert!(productpage_exempt(&y, &settings()));
}

#[test]
fn s4c_allowed_routes_kinds() {
    // "and its allowedRoutes.kinds (default: HTTPRoute and GRPCRoute for HTTP and HTTPS
    // listeners, TLSRoute for TLS, TCPRoute for TCP) the route's kind".
    let route = http_route(
        "bookinfo",
        "front",
        "bookinfo",
        "public",
        "productpage",
        9080,
    );
    for (listener, exempt) in [
        ("{name: l, port: 80, protocol: HTTP}", true),
        ("{name: l, port: 443, protocol: HTTPS}", true),
        ("{name: l, port: 443, protocol: TLS}", false),
        ("{name: l, port: 5432, protocol: TCP}", false),
        ("{name: l, port: 53, protocol: UDP}", false),
        ("{name: l, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: GRPCRoute}]}}", false),
        ("{name: l, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: GRPCRoute}, {kind: HTTPRoute}]}}", true),
        ("{name: l, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{group: gateway.networking.k8s.io, kind: HTTPRoute}]}}", true),
        ("{name: l, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{group: example.com, kind: HTTPRoute}]}}", false),
        // An empty list means the protocol's kinds.
        ("{name: l, port: 80, protocol: HTTP, allowedRoutes: {kinds: []}}", true),
        // Listed kinds override the protocol's.
        ("{name: l, port: 5432, protocol: TCP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}", true),
    ] {
        let y = bookinfo_strict()
            + &gateway_class("envoy", ENVOY)
            + &gateway("bookinfo", "public", "envoy", &format!("[{listener}]"))
            + &route;
        assert_eq!(productpage_exempt(&y, &settings()), exempt, "{listener}");
    }
}

#[test]
fn s4c_section_name_and_port_pick_listeners() {
    // "the parentRef's sectionName and port, where given, pick the listeners".
    let listeners = "[{name: internal, port: 80, protocol: HTTP}, {name: public, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]";
    let base = bookinfo_strict()
        + &gateway_class("envoy", ENVOY)
        + &gateway("edge", "public", "envoy", listeners);
    for (parent, exempt) in [
        ("{name: public, namespace: edge}", true),
        ("{name: public, namespace: edge, sectionName: public}", true),
        (
            "{name: public, namespace: edge, sectionName: internal}",
            false,
        ),
        (
            "{name: public, namespace: edge, sectionName: missing}",
            false,
        ),
        ("{name: public, namespace: edge, port: 8080}", true),
        ("{name: public, namespace: edge, port: 80}", false),
        (
            "{name: public, namespace: edge, sectionName: public, port: 8080}",
            true,
        ),
        (
            "{name: public, namespace: edge, sectionName: public, port: 80}",
            false,
        ),
    ] {
        let y = base.clone()
            + &route_in(
                GW,
                "HTTPRoute",
                "bookinfo",
                "front",
                &format!("[{parent}]"),
                "[{backendRefs: [{name: productpage, port: 9080}]}]",
            );
        assert_eq!(productpage_exempt(&y, &settings()), exempt, "{parent}");
    }
}

#[test]
fn s4c_route_status_accepted_false_is_not_attached() {
    // "a route status that says the parent did not accept it (Accepted: False) also means not
    // attached". Exported objects carry their status in files too (docs/architecture.md).
    let status = |parent: &str, accepted: &str| {
        format!("status:\n  parents:\n  - parentRef: {parent}\n    controllerName: {ENVOY}\n    conditions: [{{type: Accepted, status: \"{accepted}\", reason: NotAllowedByListeners}}]\n")
    };
    let route = http_route(
        "bookinfo",
        "front",
        "bookinfo",
        "public",
        "productpage",
        9080,
    );
    let route = route.trim_end_matches("---\n");
    for (status, exempt) in [
        (status("{group: gateway.networking.k8s.io, kind: Gateway, name: public, namespace: bookinfo}", "False"), false),
        (status("{name: public, namespace: bookinfo}", "False"), false),
        (status("{name: public, namespace: bookinfo}", "True"), true),
        (status("{name: public, namespace: bookinfo}", "Unknown"), true),
        (status("{name: other, namespace: bookinfo}", "False"), true),
        (status("{name: public, namespace: bookinfo, sectionName: http}", "False"), true),
    ] {
        let y = bookinfo_with_gateway() + route + &status;
        assert_eq!(productpage_exempt(&y, &settings()), exempt, "{status}");
    }
}

#[test]
fn open_gateway_route_named_before_ingress() {
    // docs/architecture.md: a port exempt by both (c) and (a) names the route (it names the
    // exact port and holds with or without the Istio ingress gateway); (b) still comes first.
    let y = bookinfo_with_gateway()
        + &ingress("bookinfo", "gateway", Some("nginx"), None, "productpage")
        + &http_route(
            "bookinfo",
            "front",
            "bookinfo",
            "public",
            "productpage",
            9080,
        );
    let v = productpage(&snap(&y), &settings(), "ISTIO_MUTUAL");
    assert_eq!(
        at(&v, 9080).exemption,
        gateway_exemption(
            (ObjectKind::HTTPRoute, "bookinfo", "front"),
            ("bookinfo", "public"),
            ENVOY
        )
    );
    let y = y + &policy(
        "bookinfo",
        "disable-mtls-productpage",
        "{targets: [{name: productpage}], peers: []}",
    );
    let v = productpage(&snap(&y), &settings(), "ISTIO_MUTUAL");
    assert!(matches!(
        at(&v, 9080).exemption,
        Some(Exemption::Targeted { .. })
    ));
}

#[test]
fn s5_gateway_exempt_permissive_requires_any() {
    // Section 5's changed row holds for case (c) as for (a).
    let y = bookinfo()
        + &policy("bookinfo", "default", PERMISSIVE)
        + &gateway_class("envoy", ENVOY)
        + &gateway("bookinfo", "public", "envoy", HTTP_LISTENER)
        + &http_route(
            "bookinfo",
            "front",
            "bookinfo",
            "public",
            "productpage",
            9080,
        );
    let v = productpage(&snap(&y), &settings(), "ISTIO_MUTUAL");
    let f = at(&v, 9080);
    assert!(matches!(f.exemption, Some(Exemption::Gateway { .. })));
    assert_eq!(
        (f.required.clone(), f.outcome.clone()),
        (Required::Any, Outcome::Ok)
    );
    assert!(codes(&v).is_empty());
}

// ---------------------------------------------------------------------------
// Section 5: required client mode and verdicts
// ---------------------------------------------------------------------------

#[test]
fn s5_required_exempt_strict_or_plaintext_is_disable() {
    // "S:P exempt, server STRICT or PLAINTEXT | DISABLE (the tutorial's choice)".
    for server in [STRICT, PLAINTEXT] {
        let s = snap(
            &(bookinfo()
                + &policy("bookinfo", "default", server)
                + &ingress("bookinfo", "g", Some("nginx"), None, "productpage")),
        );
        let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
        assert!(at(&v, 9080).exemption.is_some(), "{server}");
        assert_eq!(at(&v, 9080).required, Required::Mode(DISABLE), "{server}");
        assert_eq!(at(&v, 9080).outcome, Outcome::Patch(DISABLE), "{server}");
    }
}

#[test]
fn s5_required_exempt_permissive_or_none_is_any() {
    // "S:P exempt, server PERMISSIVE or NONE | any: such a server takes the mesh's mTLS and
    // the ingress's plaintext alike, so DISABLE would only downgrade the mesh's own callers".
    // This row changed: an exempt port used to require DISABLE whatever its server side.
    let exposed = ingress("bookinfo", "g", Some("nginx"), None, "productpage");
    for (server, mode) in [
        (
            policy("bookinfo", "default", PERMISSIVE),
            ServerMode::Permissive,
        ),
        (String::new(), ServerMode::None),
    ] {
        let s = snap(&(bookinfo() + &server + &exposed));
        for client in ["ISTIO_MUTUAL", "DISABLE", "SIMPLE"] {
            let v = productpage(&s, &settings(), client);
            let f = at(&v, 9080);
            assert_eq!(f.server.mode, mode);
            assert!(f.exemption.is_some(), "{mode} {client}");
            assert_eq!(f.required, Required::Any, "{mode} {client}");
            assert_eq!(f.outcome, Outcome::Ok, "{mode} {client}: no patch");
            assert!(!v.has_change() && !v.has_conflict());
        }
        let v = judge_in(&s, &settings(), &rule_without_tls("productpage"));
        assert_eq!(at(&v, 9080).outcome, Outcome::Ok, "UNSET: nothing to fill");
        // Nothing to warn about either: the server side already takes the ingress's plaintext.
        assert!(codes(&v).is_empty(), "{:?}", v.warnings);
    }
}

#[test]
fn s5_required_strict_is_istio_mutual() {
    let v = judge_in(
        &snap(&bookinfo_strict()),
        &settings(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_eq!(at(&v, 9080).required, Required::Mode(IM));
}

#[test]
fn s5_required_plaintext_namespace_or_mesh_is_disable() {
    for extra in [
        policy("bookinfo", "default", PLAINTEXT),
        mesh_policy("default", PLAINTEXT),
    ] {
        let v = judge_in(
            &snap(&(bookinfo() + &extra)),
            &settings(),
            &rule_with_tls("reviews", "DISABLE"),
        );
        assert_eq!(at(&v, 9080).required, Required::Mode(DISABLE));
        assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
    }
}

#[test]
fn s5_required_permissive_or_none_is_any() {
    for extra in [policy("bookinfo", "default", PERMISSIVE), String::new()] {
        let s = snap(&(bookinfo() + &extra));
        for mode in ["ISTIO_MUTUAL", "DISABLE", "SIMPLE", "MUTUAL"] {
            let v = judge_in(&s, &settings(), &rule_with_tls("reviews", mode));
            assert_eq!(at(&v, 9080).required, Required::Any);
            assert_eq!(at(&v, 9080).outcome, Outcome::Ok, "{extra} {mode}");
        }
        let v = judge_in(&s, &settings(), &rule_without_tls("reviews"));
        assert_eq!(at(&v, 9080).outcome, Outcome::Ok, "UNSET, required any");
    }
}

#[test]
fn s5_equals_required_is_ok() {
    let v = judge_in(
        &snap(&bookinfo_strict()),
        &settings(),
        &rule_with_tls("reviews", "ISTIO_MUTUAL"),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
    let v = judge_in(
        &snap(&(bookinfo() + &policy("bookinfo", "default", PLAINTEXT))),
        &settings(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Ok);
}

/// Three server sides (STRICT, targeted exemption, namespace PLAINTEXT) with an UNSET client.
fn unset_cases() -> Vec<(Snapshot, &'static str, Outcome)> {
    vec![
        (snap(&bookinfo_strict()), "reviews", Outcome::Fill(IM)),
        (
            snap(
                &(bookinfo_strict()
                    + &ingress("bookinfo", "g", Some("nginx"), None, "productpage")),
            ),
            "productpage",
            Outcome::Fill(DISABLE),
        ),
        (
            snap(&(bookinfo() + &policy("bookinfo", "default", PLAINTEXT))),
            "reviews",
            Outcome::Fill(DISABLE),
        ),
    ]
}

#[test]
fn s5_unset_auto_mtls_on_is_ok() {
    // "UNSET, auto mTLS on | ok".
    for (s, host, _) in unset_cases() {
        let v = judge_in(&s, &auto_mtls(), &rule_without_tls(host));
        assert_eq!(
            outcomes(&v),
            vec![(Some(9080), None, Outcome::Ok)],
            "{host}"
        );
        assert!(!v.has_change() && !v.has_conflict());
    }
}

#[test]
fn s5_unset_auto_mtls_off_is_fill() {
    // "UNSET, auto mTLS off | fill: the mutating webhook adds the required mode".
    for (s, host, want) in unset_cases() {
        let v = judge_in(&s, &settings(), &rule_without_tls(host));
        assert_eq!(outcomes(&v), vec![(Some(9080), None, want)], "{host}");
        assert!(v.has_change() && !v.has_conflict());
    }
}

#[test]
fn s5_auto_mtls_does_not_excuse_explicit_modes() {
    // Auto mTLS only covers UNSET: explicit wrong modes stay conflicts, exempt ISTIO_MUTUAL
    // is still patched.
    let v = judge_in(
        &snap(&bookinfo_strict()),
        &auto_mtls(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Conflict);
    let s =
        snap(&(bookinfo_strict() + &ingress("bookinfo", "g", Some("nginx"), None, "productpage")));
    let v = productpage(&s, &auto_mtls(), "ISTIO_MUTUAL");
    assert_eq!(at(&v, 9080).outcome, Outcome::Patch(DISABLE));
}

#[test]
fn s5_istio_mutual_exempt_is_patch() {
    // "ISTIO_MUTUAL, S:P exempt | patch: the mutating webhook changes it to DISABLE".
    for exempting in [
        ingress("bookinfo", "g", Some("nginx"), None, "productpage"),
        policy(
            "bookinfo",
            "disable-mtls-productpage",
            "{targets: [{name: productpage}], peers: []}",
        ),
    ] {
        let s = snap(&(bookinfo_strict() + &exempting));
        let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
        assert_eq!(at(&v, 9080).outcome, Outcome::Patch(DISABLE));
        assert!(v.has_change() && !v.has_conflict());
    }
}

#[test]
fn s3_a_mode_istio_refuses_is_its_own_error() {
    // Istio's schema accepts DISABLE, SIMPLE, MUTUAL and ISTIO_MUTUAL only, as written:
    // another value is never judged consistent, whatever the server side requires.
    let strict = snap(&bookinfo_strict());
    let plain = snap(&bookinfo());
    for mode in ["BOGUS", "istio_mutual", "DISABL", "\" DISABLE\"", "\"\""] {
        for s in [&strict, &plain] {
            let v = judge_in(s, &settings(), &rule_with_tls("reviews", mode));
            let f = at(&v, 9080);
            assert_eq!(f.outcome, Outcome::InvalidMode, "{mode}");
            assert!(matches!(f.client, ClientMode::Invalid(_)), "{mode}");
            assert!(!v.has_conflict() && !v.has_change(), "{mode}");
            assert_eq!(v.invalid_modes.len(), 1, "{mode}");
            assert_eq!(
                v.invalid_modes[0].source,
                ClientSource::ScopeTls(TlsScope::Top)
            );
        }
    }
    let v = judge_in(
        &strict,
        &settings(),
        &rule_with_tls("reviews", "istio_mutual"),
    );
    assert_eq!(
        v.invalid_modes[0].message(&rule(&rule_with_tls("reviews", "istio_mutual")).spec),
        "spec.trafficPolicy.tls.mode \"istio_mutual\" is not a TLS mode Istio accepts; use DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL"
    );
    // Every field is found, used by a port or not, and so is an out-of-scope rule's.
    let spec = "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 7777}, tls: {mode: Simple}}]}, subsets: [{name: v1, trafficPolicy: {tls: {mode: mutual}}}]}";
    let v = judge_in(&strict, &settings(), &dr("bookinfo", "r", spec));
    let found: Vec<(ClientSource, &str)> = v
        .invalid_modes
        .iter()
        .map(|i| (i.source, i.mode.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (ClientSource::PortEntry(TlsScope::Top, 0), "Simple"),
            (ClientSource::ScopeTls(TlsScope::Subset(0)), "mutual"),
        ]
    );
    let v = judge_in(
        &strict,
        &settings(),
        &dr(
            "bookinfo",
            "r",
            "{host: www.example.com, trafficPolicy: {tls: {mode: simple}}}",
        ),
    );
    assert_eq!(v.target, HostTarget::OutOfScope);
    assert_eq!(v.invalid_modes.len(), 1);
}

#[test]
fn s5_anything_else_is_conflict() {
    // "anything else | conflict: the validating webhook denies".
    let strict = snap(&bookinfo_strict());
    for mode in ["DISABLE", "SIMPLE", "MUTUAL"] {
        let v = judge_in(&strict, &settings(), &rule_with_tls("reviews", mode));
        assert_eq!(at(&v, 9080).outcome, Outcome::Conflict, "{mode}");
    }
    // Only ISTIO_MUTUAL is patched towards an exempt port.
    let exempt =
        snap(&(bookinfo_strict() + &ingress("bookinfo", "g", Some("nginx"), None, "productpage")));
    for mode in ["SIMPLE", "MUTUAL"] {
        let v = productpage(&exempt, &settings(), mode);
        assert_eq!(at(&v, 9080).outcome, Outcome::Conflict, "{mode}");
        assert_eq!(
            v.message(at(&v, 9080), "cluster.local").split("; ").last(),
            Some("use DISABLE")
        );
    }
    // Namespace-level PLAINTEXT: ISTIO_MUTUAL is not patched but denied.
    let plain = snap(&(bookinfo() + &policy("bookinfo", "default", PLAINTEXT)));
    for mode in ["ISTIO_MUTUAL", "SIMPLE"] {
        assert_eq!(
            at(
                &judge_in(&plain, &settings(), &rule_with_tls("reviews", mode)),
                9080
            )
            .outcome,
            Outcome::Conflict
        );
    }
}

#[test]
fn s5_wildcard_not_exempted_by_service_exemptions() {
    // "Wildcard rules are judged at their own level ... Service-level exemptions are not
    // conflicts of a wildcard rule."
    let s = snap(
        &(bookinfo_strict()
            + &ingress("bookinfo", "g", Some("nginx"), None, "productpage")
            + &policy(
                "bookinfo",
                "disable-mtls-productpage",
                "{targets: [{name: productpage}], peers: []}",
            )
            + &pa(
                "bookinfo",
                "pp",
                "{selector: {matchLabels: {app: productpage}}, mtls: {mode: DISABLE}}",
            )
            + &mesh_policy("default", STRICT)),
    );
    for host in ["'*.bookinfo.svc.cluster.local'", "'*.local'"] {
        let v = judge_in(&s, &settings(), &rule_with_tls(host, "ISTIO_MUTUAL"));
        assert_eq!(outcomes(&v), vec![(None, None, Outcome::Ok)], "{host}");
        assert!(v.findings.iter().all(|f| f.exemption.is_none()));
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    }
}

#[test]
fn s5_namespace_wide_falls_back_to_mesh_level() {
    // "a namespace-wide rule against the namespace-level server mode of n (falling back to the
    // mesh level when n has none)".
    let s = snap(&(bookinfo_strict() + &namespace("empty") + &mesh_policy("default", PLAINTEXT)));
    let v = judge_in(
        &s,
        &settings(),
        &rule_with_tls("'*.empty.svc.cluster.local'", "ISTIO_MUTUAL"),
    );
    assert_server(
        find(&v, None, None),
        ServerMode::Plaintext,
        Some((ObjectKind::MeshPolicy, "", "default", Level::Mesh)),
    );
    assert_eq!(outcomes(&v), vec![(None, None, Outcome::Conflict)]);
    // Also for a namespace the snapshot has never seen.
    let v = judge_in(
        &s,
        &settings(),
        &rule_with_tls("'*.unseen.svc.cluster.local'", "DISABLE"),
    );
    assert_eq!(outcomes(&v), vec![(None, None, Outcome::Ok)]);
    // With neither: NONE, anything goes.
    let s = snap(&namespace("empty"));
    let v = judge_in(
        &s,
        &settings(),
        &rule_without_tls("'*.empty.svc.cluster.local'"),
    );
    assert_server(find(&v, None, None), ServerMode::None, None);
    assert_eq!(outcomes(&v), vec![(None, None, Outcome::Ok)]);
}

#[test]
fn s5_auto_mtls_on_and_off_full_table() {
    // The second table, first matching row, with both auto mTLS settings, on three server sides.
    let strict = snap(&bookinfo_strict());
    let exempt =
        snap(&(bookinfo_strict() + &ingress("bookinfo", "g", Some("nginx"), None, "productpage")));
    let permissive = snap(&(bookinfo() + &policy("bookinfo", "default", PERMISSIVE)));
    use Outcome::*;
    let rows: [(&Snapshot, &str, Option<&str>, Outcome, Outcome); 13] = [
        // (server side, host, client mode, auto off, auto on)
        (&strict, "reviews", Some("ISTIO_MUTUAL"), Ok, Ok),
        (&strict, "reviews", None, Fill(IM), Ok),
        (&strict, "reviews", Some("DISABLE"), Conflict, Conflict),
        (&strict, "reviews", Some("SIMPLE"), Conflict, Conflict),
        (&exempt, "productpage", Some("DISABLE"), Ok, Ok),
        (&exempt, "productpage", None, Fill(DISABLE), Ok),
        (
            &exempt,
            "productpage",
            Some("ISTIO_MUTUAL"),
            Patch(DISABLE),
            Patch(DISABLE),
        ),
        (&exempt, "productpage", Some("MUTUAL"), Conflict, Conflict),
        (&permissive, "reviews", Some("ISTIO_MUTUAL"), Ok, Ok),
        (&permissive, "reviews", Some("DISABLE"), Ok, Ok),
        (&permissive, "reviews", Some("SIMPLE"), Ok, Ok),
        (&permissive, "reviews", Some("MUTUAL"), Ok, Ok),
        (&permissive, "reviews", None, Ok, Ok),
    ];
    for (s, host, mode, off, on) in rows {
        let r = match mode {
            Some(m) => rule_with_tls(host, m),
            None => rule_without_tls(host),
        };
        assert_eq!(
            at(&judge_in(s, &settings(), &r), 9080).outcome,
            off,
            "{host} {mode:?} auto off"
        );
        assert_eq!(
            at(&judge_in(s, &auto_mtls(), &r), 9080).outcome,
            on,
            "{host} {mode:?} auto on"
        );
    }
}

// ---------------------------------------------------------------------------
// Section 6: the conflict message
// ---------------------------------------------------------------------------

const REVIEWS_V2_MESSAGE: &str = "reviews.bookinfo.svc.cluster.local port 9080 subset v2: tls mode DISABLE, but Policy bookinfo/default requires mutual TLS (STRICT); use ISTIO_MUTUAL or add a service-specific exemption Policy";

#[test]
fn s6_conflict_message_names_host_port_subset_modes_object_and_fix() {
    // The captured `reviews-ports` rule (fixture 23): port 9080 ISTIO_MUTUAL at the top,
    // subset v2 `tls.mode: DISABLE`.
    let s = snapshot_of({
        let mut v = values(&bookinfo());
        v.push(fixture("02"));
        v
    });
    let v = judge(&s, &settings(), &rule_of(fixture("23")), "bookinfo");
    assert_eq!(
        outcomes(&v),
        vec![
            (Some(9080), None, Outcome::Ok),
            (Some(9080), Some("v2"), Outcome::Conflict)
        ]
    );
    let f = find(&v, Some(9080), Some("v2"));
    assert_eq!(f.client_source, ClientSource::ScopeTls(TlsScope::Subset(0)));
    assert_eq!(v.message(f, "cluster.local"), REVIEWS_V2_MESSAGE);
    assert_eq!(v.conflicts().count(), 1);
}

// ---------------------------------------------------------------------------
// Section 7: the Bookinfo tutorial
// ---------------------------------------------------------------------------

/// Section 7's world in `ns`: the four services, Policy `default` with `peers: [{mtls: {}}]`
/// (the captured one, fixture 02, in bookinfo), the Ingress to productpage, no gateway.
fn tutorial_in(ns: &str) -> Snapshot {
    let mut vals =
        values(&(bookinfo_in(ns) + &ingress(ns, "bookinfo-ingress", None, None, "productpage")));
    let mut pol = fixture("02");
    pol["metadata"]["namespace"] = ns.into();
    vals.push(pol);
    snapshot_of(vals)
}

fn tutorial() -> Snapshot {
    tutorial_in("bookinfo")
}

/// A tutorial rule from a fixture, moved to `ns`.
fn tutorial_rule(prefix: &str, ns: &str) -> DestinationRule {
    let mut v = fixture(prefix);
    v["metadata"]["namespace"] = ns.into();
    rule_of(v)
}

#[test]
fn s7_bookinfo_reviews_ratings_details_allowed_untouched() {
    for ns in ["bookinfo", "default"] {
        let s = tutorial_in(ns);
        for (fx, subsets) in [("10", 3), ("12", 4), ("14", 2)] {
            let v = judge(&s, &settings(), &tutorial_rule(fx, ns), ns);
            assert_eq!(v.findings.len(), 1 + subsets, "{fx}");
            assert!(
                v.findings.iter().all(|f| f.outcome == Outcome::Ok),
                "{fx}: {:#?}",
                v.findings
            );
            assert!(v.warnings.is_empty(), "{fx}: {:?}", v.warnings);
            assert!(v
                .findings
                .iter()
                .all(|f| f.server.mode == ServerMode::Strict && f.exemption.is_none()));
        }
    }
}

#[test]
fn s7_bookinfo_productpage_patched_to_disable_with_warning() {
    for ns in ["bookinfo", "default"] {
        let s = tutorial_in(ns);
        let v = judge(&s, &settings(), &tutorial_rule("08", ns), ns);
        assert_eq!(
            outcomes(&v),
            vec![
                (Some(9080), None, Outcome::Patch(DISABLE)),
                (Some(9080), Some("v1"), Outcome::Patch(DISABLE)),
            ]
        );
        for f in &v.findings {
            assert_eq!(f.client_source, ClientSource::ScopeTls(TlsScope::Top));
            assert_eq!(f.exemption, ingress_exemption(ns, "bookinfo-ingress"));
        }
        // "with a warning that the server side still requires mTLS until
        // disable-mtls-productpage is applied".
        assert_eq!(codes(&v), vec![WarningCode::MissingServerExemption]);
        let msg = warning(&v, WarningCode::MissingServerExemption);
        assert!(msg.contains("disable-mtls-productpage"), "{msg}");
        assert!(
            msg.contains(&format!("Policy {ns}/default")) && msg.contains("STRICT"),
            "{msg}"
        );
        let text = v.message(&v.findings[0], "cluster.local");
        assert!(text.starts_with(&format!("productpage.{ns}.svc.cluster.local port 9080: tls mode ISTIO_MUTUAL, but productpage is reached through non-mesh Ingress {ns}/bookinfo-ingress")), "{text}");
    }
}

#[test]
fn s7_bookinfo_productpage_after_disable_mtls_productpage() {
    // Once the tutorial's `disable-mtls-productpage` (fixture 16) exists, the exemption is
    // targeted, the warning is gone, and the re-applied DISABLE rule (fixture 18) is fine.
    let s = snapshot_of({
        let mut v = values(
            &(bookinfo() + &ingress("bookinfo", "bookinfo-ingress", None, None, "productpage")),
        );
        v.push(fixture("02"));
        v.push(fixture("16"));
        v
    });
    let v = judge(&s, &settings(), &rule_of(fixture("08")), "bookinfo");
    assert!(v
        .findings
        .iter()
        .all(|f| f.outcome == Outcome::Patch(DISABLE)));
    assert!(v.warnings.is_empty());
    let v = judge(&s, &settings(), &rule_of(fixture("18")), "bookinfo");
    assert!(v.findings.iter().all(|f| f.outcome == Outcome::Ok));
    assert!(v.warnings.is_empty());
}

#[test]
fn s7_bookinfo_reviews_disable_is_denied() {
    // The captured UPDATE of reviews with `tls.mode: DISABLE` (fixture 25; its dry-run twin 24).
    for fx in ["24", "25"] {
        let v = judge(&tutorial(), &settings(), &rule_of(fixture(fx)), "bookinfo");
        assert_eq!(v.findings.len(), 4);
        assert!(v.findings.iter().all(|f| f.outcome == Outcome::Conflict));
        assert!(!v.has_change());
        let v2 = find(&v, Some(9080), Some("v2"));
        assert_eq!(v.message(v2, "cluster.local"), REVIEWS_V2_MESSAGE);
        assert_eq!(
            v.message(find(&v, Some(9080), None), "cluster.local"),
            "reviews.bookinfo.svc.cluster.local port 9080: tls mode DISABLE, but Policy bookinfo/default requires mutual TLS (STRICT); use ISTIO_MUTUAL or add a service-specific exemption Policy"
        );
    }
    // In namespace `default` too.
    let v = judge(
        &tutorial_in("default"),
        &settings(),
        &tutorial_rule("25", "default"),
        "default",
    );
    assert_eq!(
        v.message(find(&v, Some(9080), Some("v2")), "cluster.local"),
        REVIEWS_V2_MESSAGE.replace("bookinfo", "default")
    );
}

#[test]
fn s7_bookinfo_ratings_without_tls_gets_istio_mutual_filled() {
    // The captured `patch-me` rule (fixtures 36/37: host ratings, no trafficPolicy).
    for ns in ["bookinfo", "default"] {
        let v = judge(&tutorial_in(ns), &settings(), &tutorial_rule("37", ns), ns);
        assert_eq!(
            outcomes(&v),
            vec![
                (Some(9080), None, Outcome::Fill(IM)),
                (Some(9080), Some("v1"), Outcome::Fill(IM))
            ]
        );
        assert!(v.findings.iter().all(|f| f.client == ClientMode::Unset
            && f.client_source == ClientSource::ScopeTls(TlsScope::Top)));
        assert!(v.warnings.is_empty());
        // What the validating webhook then sees (fixture 38) is fine.
        let v = judge(&tutorial_in(ns), &settings(), &tutorial_rule("38", ns), ns);
        assert!(v.findings.iter().all(|f| f.outcome == Outcome::Ok));
    }
    // With auto mTLS, nothing to fill.
    let v = judge(
        &tutorial(),
        &auto_mtls(),
        &rule_of(fixture("36")),
        "bookinfo",
    );
    assert!(v.findings.iter().all(|f| f.outcome == Outcome::Ok));
}

#[test]
fn s7_bookinfo_gateway_present_productpage_stays_istio_mutual() {
    let mut vals = values(
        &(bookinfo()
            + &ingress("bookinfo", "bookinfo-ingress", None, None, "productpage")
            + &gateway_service("istio-system")),
    );
    vals.push(fixture("02"));
    let detected = snapshot_of(vals);
    let flagged = Settings {
        ingress_gateway: IngressGateway::Present,
        ..Settings::default()
    };
    for (s, settings) in [(&detected, settings()), (&tutorial(), flagged)] {
        let v = judge(s, &settings, &rule_of(fixture("08")), "bookinfo");
        assert_eq!(v.findings.len(), 2);
        assert!(v
            .findings
            .iter()
            .all(|f| f.outcome == Outcome::Ok && f.exemption.is_none()));
        assert!(v.warnings.is_empty());
    }
}

#[test]
fn s2_tie_needs_several_objects() {
    // "Ties: several objects at one level apply". One Policy that names the service twice
    // (by number and by name, or in two whole-service targets) is one object: no tie.
    for spec in [
        "{targets: [{name: reviews, ports: [{number: 9080}]}, {name: reviews, ports: [{name: http}]}], peers: []}",
        "{targets: [{name: reviews}, {name: reviews}], peers: []}",
        "{targets: [{name: reviews, ports: [{number: 9080}, {name: http}]}], peers: []}",
    ] {
        let s = snap(&(bookinfo_strict() + &policy("bookinfo", "reviews-off", spec)));
        let v = judge_in(&s, &settings(), &rule_with_tls("reviews", "DISABLE"));
        assert_eq!(at(&v, 9080).server.mode, ServerMode::Plaintext, "{spec}");
        assert!(codes(&v).is_empty(), "{spec}: {:?}", v.warnings);
    }
}

#[test]
fn s6_wildcard_conflict_message_names_scope_modes_object_and_fix() {
    // Section 6: "The message names the host, the port and subset, the client mode, the
    // required mode, the object that requires it (kind, namespace, name) and the fix".
    // A wildcard rule cannot be fixed by a service exemption (section 5).
    let s = snap(&(bookinfo() + &policy("bookinfo", "default", PLAINTEXT)));
    let v = judge_in(
        &s,
        &settings(),
        &rule_with_tls("'*.bookinfo.svc.cluster.local'", "ISTIO_MUTUAL"),
    );
    let f = find(&v, None, None);
    assert_eq!(f.outcome, Outcome::Conflict);
    let msg = v.message(f, "cluster.local");
    for part in [
        "*.bookinfo.svc.cluster.local",
        "tls mode ISTIO_MUTUAL",
        "Policy bookinfo/default",
        "PLAINTEXT",
        "use DISABLE",
    ] {
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
    assert!(!msg.contains("exemption"), "{msg}");
}

#[test]
fn s4_missing_server_exemption_under_targeted_strict_names_that_object() {
    // Section 4: the warning "names the missing server-side exemption and how to add it".
    // When a service-level Policy requires STRICT, a new exemption Policy would lose the
    // tie to the older one: the STRICT Policy itself is what must change.
    let s = snap(
        &(bookinfo_strict()
            + &ingress("bookinfo", "g", Some("nginx"), None, "productpage")
            + &policy_at(
                "bookinfo",
                "productpage-strict",
                "2020-01-01T00:00:00Z",
                "{targets: [{name: productpage}], peers: [{mtls: {}}]}",
            )),
    );
    let v = productpage(&s, &settings(), "ISTIO_MUTUAL");
    assert_server(
        at(&v, 9080),
        ServerMode::Strict,
        Some((
            ObjectKind::Policy,
            "bookinfo",
            "productpage-strict",
            Level::Service,
        )),
    );
    assert_eq!(at(&v, 9080).outcome, Outcome::Patch(DISABLE));
    assert_eq!(codes(&v), vec![WarningCode::MissingServerExemption]);
    let msg = warning(&v, WarningCode::MissingServerExemption);
    assert!(msg.contains("Policy bookinfo/productpage-strict"), "{msg}");
}

#[test]
fn s2_pa_port_level_beats_an_older_workload_mode() {
    // "most specific first": a workload-port setting (b-new's portLevelMtls for 9080)
    // decides before the workload level, where the older a-old would win the tie.
    let a_old = pa_at(
        "bookinfo",
        "a-old",
        "2023-01-01T00:00:00Z",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}",
    );
    let b_new = pa_at(
        "bookinfo",
        "b-new",
        "2023-02-01T00:00:00Z",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {'9080': {mode: DISABLE}}}",
    );
    let v = judge_in(
        &snap(&(bookinfo() + &a_old + &b_new)),
        &settings(),
        &rule_with_tls("reviews", "DISABLE"),
    );
    assert_server(
        at(&v, 9080),
        ServerMode::Plaintext,
        Some((
            ObjectKind::PeerAuthentication,
            "bookinfo",
            "b-new",
            Level::WorkloadPort,
        )),
    );
    assert!(codes(&v).is_empty(), "{:?}", v.warnings);
}

// ---------------------------------------------------------------------------
// Section 8: several DestinationRules for one host
// ---------------------------------------------------------------------------

fn dr_at(ns: &str, name: &str, created: Option<&str>, spec: &str) -> String {
    let created = created.map_or(String::new(), |c| format!(", creationTimestamp: \"{c}\""));
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}{created}}}\nspec: {spec}\n---\n"
    )
}

const OLD: Option<&str> = Some("2024-01-01T00:00:00Z");
const NEW: Option<&str> = Some("2025-01-01T00:00:00Z");
const MUTUAL_SPEC: &str = "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}";

/// The MG209 warnings of `rule` judged against `stored`.
fn older_rule_warnings(stored: &str, rule: &str) -> Vec<String> {
    let v = judge_in(&snap(&(bookinfo_strict() + stored)), &settings(), rule);
    v.warnings
        .iter()
        .filter(|w| w.code == WarningCode::OlderRuleForHost)
        .map(|w| w.message.clone())
        .collect()
}

#[test]
fn s8_older_rule_for_the_same_host_warns() {
    // "A DestinationRule whose host is already covered, in the same namespace, by an older
    // rule that sets a trafficPolicy gets a warning that names the older rule".
    let stored = dr_at("bookinfo", "reviews-old", OLD, MUTUAL_SPEC);
    // Being created: no creation time, so the newest. The host is written another way.
    let rule = dr_at(
        "bookinfo",
        "reviews-new",
        None,
        "{host: reviews.bookinfo.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}",
    );
    assert_eq!(
        older_rule_warnings(&stored, &rule),
        ["DestinationRule bookinfo/reviews-old is older and also sets a trafficPolicy for host reviews: Istio applies that rule's traffic policy and ignores this one's (this rule is still judged as written, since the older one may go)"]
    );
    // "The newer rule is still judged as written": DISABLE is still a conflict.
    let v = judge_in(&snap(&(bookinfo_strict() + &stored)), &settings(), &rule);
    assert_eq!(at(&v, 9080).outcome, Outcome::Conflict);
    // The older rule itself gets no such warning, nor does an update of it.
    let newer = dr_at("bookinfo", "reviews-new", NEW, MUTUAL_SPEC);
    assert!(older_rule_warnings(&newer, &stored).is_empty());
    assert!(older_rule_warnings(&stored, &stored).is_empty());
}

#[test]
fn s8_older_rule_needs_a_traffic_policy_the_same_host_and_namespace() {
    let rule = dr_at("bookinfo", "reviews-new", None, MUTUAL_SPEC);
    for (case, stored, warns) in [
        (
            "older rule without trafficPolicy",
            dr_at("bookinfo", "reviews-old", OLD, "{host: reviews, subsets: [{name: v1, labels: {version: v1}}]}"),
            false,
        ),
        ("older rule with trafficPolicy", dr_at("bookinfo", "reviews-old", OLD, MUTUAL_SPEC), true),
        (
            "another namespace",
            dr_at("other", "reviews-old", OLD, "{host: reviews.bookinfo.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"),
            false,
        ),
        (
            "another host",
            dr_at("bookinfo", "ratings-old", OLD, "{host: ratings, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"),
            false,
        ),
        (
            "a namespace-wide rule is another host",
            dr_at("bookinfo", "all", OLD, "{host: \"*.bookinfo.svc.cluster.local\", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"),
            false,
        ),
        (
            "the same host as s.n",
            dr_at("bookinfo", "reviews-old", OLD, "{host: reviews.bookinfo, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"),
            true,
        ),
        (
            "a newer rule",
            dr_at("bookinfo", "reviews-old", None, MUTUAL_SPEC).replace("reviews-old", "zz-reviews"),
            false,
        ),
    ] {
        assert_eq!(!older_rule_warnings(&stored, &rule).is_empty(), warns, "{case}");
    }
}

#[test]
fn s8_older_rule_by_creation_time_then_name() {
    // "the older rule is the one with the earlier creation time, then name order, and a
    // rule without a creation time (one being created) is the newest".
    let a_old = dr_at("bookinfo", "b-rule", OLD, MUTUAL_SPEC);
    let same_time = |name: &str| dr_at("bookinfo", name, OLD, MUTUAL_SPEC);
    // Same creation time: name order decides.
    assert_eq!(older_rule_warnings(&a_old, &same_time("c-rule")).len(), 1);
    assert!(older_rule_warnings(&a_old, &same_time("a-rule")).is_empty());
    // Neither has a creation time (files): name order.
    let untimed = |name: &str| dr_at("bookinfo", name, None, MUTUAL_SPEC);
    assert_eq!(
        older_rule_warnings(&untimed("a-rule"), &untimed("b-rule")).len(),
        1
    );
    assert!(older_rule_warnings(&untimed("b-rule"), &untimed("a-rule")).is_empty());
    // Several older rules: the oldest is named (it is the one Istio applies).
    let stored = dr_at("bookinfo", "z-oldest", OLD, MUTUAL_SPEC)
        + &dr_at("bookinfo", "a-older", NEW, MUTUAL_SPEC);
    let w = older_rule_warnings(&stored, &untimed("new"));
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with("DestinationRule bookinfo/z-oldest is older"),
        "{}",
        w[0]
    );
}

#[test]
fn s8_older_rule_wildcards_and_external_hosts_compare_as_written() {
    // "Covered means the same host after resolution (the same FQDN or the same wildcard)".
    let tp = "trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}";
    let rule = |name: &str, host: &str, created| {
        dr_at(
            "bookinfo",
            name,
            created,
            &format!("{{host: \"{host}\", {tp}}}"),
        )
    };
    for (old_host, new_host, warns) in [
        (
            "*.bookinfo.svc.cluster.local",
            "*.bookinfo.svc.cluster.local",
            true,
        ),
        ("*.local", "*.local", true),
        ("*.local", "*.cluster.local", false),
        ("api.example.com", "API.example.com.", true),
        ("api.example.com", "web.example.com", false),
    ] {
        let got = older_rule_warnings(&rule("old", old_host, OLD), &rule("new", new_host, None));
        assert_eq!(!got.is_empty(), warns, "{old_host} / {new_host}");
    }
}
