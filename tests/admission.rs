//! The pure admission layer against the real kube-apiserver captures in
//! `tests/fixtures/admission/` (contract section 6), with the Bookinfo
//! snapshot of section 7.

use base64::Engine;
use mtls_guard::admission::{review, Endpoint, ReviewVerdict};
use mtls_guard::model::MeshObject;
use mtls_guard::server::http_status;
use mtls_guard::settings::{IngressGateway, Mode, Settings};
use mtls_guard::snapshot::Snapshot;
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission")
}

fn fixture(name_prefix: &str) -> Value {
    let dir = fixtures();
    let entry = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(name_prefix)
        })
        .unwrap_or_else(|| panic!("no fixture {name_prefix}"));
    serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap()
}

fn objects(yaml: &str) -> Vec<MeshObject> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            MeshObject::from_value(v).unwrap().unwrap()
        })
        .collect()
}

const BOOKINFO: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: bookinfo}
spec:
  peers:
  - mtls: {}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bookinfo, namespace: bookinfo}
spec:
  rules:
  - host: istio.tutorial.bookinfo.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: productpage, port: {number: 9080}}}
"#;

fn service(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bookinfo, labels: {{app: {name}}}}}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 9080}}\n"
    )
}

fn bookinfo(extra: &str) -> Snapshot {
    let mut yaml = BOOKINFO.to_string();
    for s in ["productpage", "reviews", "ratings", "details"] {
        yaml.push_str(&service(s));
    }
    yaml.push_str(extra);
    Snapshot::from_objects(objects(&yaml))
}

fn answer(
    snapshot: &Snapshot,
    settings: &Settings,
    endpoint: Endpoint,
    body: &Value,
) -> (u16, Value, ReviewVerdict) {
    let r = review(
        snapshot,
        settings,
        endpoint,
        &serde_json::to_vec(body).unwrap(),
    );
    (
        http_status(r.delivery).as_u16(),
        serde_json::from_slice(&r.body).unwrap(),
        r.verdict,
    )
}

fn patch_of(resp: &Value) -> Option<json_patch::Patch> {
    let b64 = resp.pointer("/response/patch")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn every_fixture_gets_an_answer_in_its_version_with_its_uid() {
    let snap = bookinfo("");
    let settings = Settings::default();
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let endpoint = if path.to_string_lossy().contains("mutating") {
            Endpoint::Mutate
        } else {
            Endpoint::Validate
        };
        let (status, resp, _) = answer(&snap, &settings, endpoint, &body);
        assert_eq!(status, 200, "{}", path.display());
        assert_eq!(resp["apiVersion"], body["apiVersion"], "{}", path.display());
        assert_eq!(resp["kind"], "AdmissionReview");
        assert_eq!(
            resp["response"]["uid"],
            body["request"]["uid"],
            "{}",
            path.display()
        );
        n += 1;
    }
    assert_eq!(n, 71, "the Istio (01-38) and Gateway API (39-71) captures");
}

#[test]
fn s7_productpage_is_patched_to_disable_with_server_side_warning() {
    let snap = bookinfo("");
    let body = fixture("07-");
    let (_, resp, verdict) = answer(&snap, &Settings::default(), Endpoint::Mutate, &body);
    assert_eq!(verdict, ReviewVerdict::Patched);
    assert_eq!(resp["response"]["allowed"], true);
    assert_eq!(resp["response"]["patchType"], "JSONPatch");
    let patch = patch_of(&resp).unwrap();
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!([{"op": "add", "path": "/spec/trafficPolicy/tls/mode", "value": "DISABLE"}])
    );
    let warnings = resp["response"]["warnings"].as_array().unwrap();
    let text: Vec<&str> = warnings.iter().map(|w| w.as_str().unwrap()).collect();
    assert!(
        text.iter().any(
            |w| w.contains("disable-mtls-productpage") && w.contains("Policy bookinfo/default")
        ),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|w| w.contains("set spec.trafficPolicy.tls.mode to DISABLE (was ISTIO_MUTUAL)")),
        "{text:#?}"
    );
    // Re-judge the patched object: nothing left to change or deny.
    let mut obj = body["request"]["object"].clone();
    json_patch::patch(&mut obj, &patch).unwrap();
    let mut again = body.clone();
    again["request"]["object"] = obj;
    let (_, resp, verdict) = answer(&snap, &Settings::default(), Endpoint::Mutate, &again);
    assert_eq!(verdict, ReviewVerdict::Allowed, "{resp:#}");
    let (_, _, verdict) = answer(&snap, &Settings::default(), Endpoint::Validate, &again);
    assert_eq!(verdict, ReviewVerdict::Allowed);
}

#[test]
fn s7_productpage_stays_istio_mutual_with_gateway_present() {
    let snap = bookinfo("");
    let settings = Settings {
        ingress_gateway: IngressGateway::Present,
        ..Settings::default()
    };
    let (_, resp, verdict) = answer(&snap, &settings, Endpoint::Mutate, &fixture("07-"));
    assert_eq!(verdict, ReviewVerdict::Allowed, "{resp:#}");
    assert!(resp["response"].get("patch").is_none());
}

#[test]
fn s7_reviews_ratings_details_allowed_untouched() {
    let snap = bookinfo("");
    for f in ["09-", "10-", "11-", "12-", "13-", "14-"] {
        let endpoint = if f == "09-" || f == "11-" || f == "13-" {
            Endpoint::Mutate
        } else {
            Endpoint::Validate
        };
        let (_, resp, verdict) = answer(&snap, &Settings::default(), endpoint, &fixture(f));
        assert_eq!(verdict, ReviewVerdict::Allowed, "{f}: {resp:#}");
        assert!(resp["response"].get("warnings").is_none(), "{f}: {resp:#}");
    }
}

#[test]
fn s7_reviews_disable_is_denied_with_section_6_message() {
    let snap = bookinfo("");
    let (_, resp, verdict) = answer(
        &snap,
        &Settings::default(),
        Endpoint::Validate,
        &fixture("25-"),
    );
    assert_eq!(verdict, ReviewVerdict::Denied);
    assert_eq!(resp["response"]["allowed"], false);
    assert_eq!(resp["response"]["status"]["code"], 403);
    // The top-level DISABLE that every subset inherits is one line, worded as `check`
    // words it (subsets folded into "also subsets ...").
    let msg = resp["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(msg, "reviews.bookinfo.svc.cluster.local port 9080: tls mode DISABLE, but Policy bookinfo/default requires mutual TLS (STRICT); use ISTIO_MUTUAL or add a service-specific exemption Policy; also subsets v1, v2, v3");

    // Only subset v2 disables TLS: the denial is section 6's example, word for word.
    let mut body = fixture("25-");
    let spec = &mut body["request"]["object"]["spec"];
    spec["trafficPolicy"] = json!({"tls": {"mode": "ISTIO_MUTUAL"}});
    spec["subsets"][1]["trafficPolicy"] = json!({"tls": {"mode": "DISABLE"}});
    let (_, resp, _) = answer(&snap, &Settings::default(), Endpoint::Validate, &body);
    assert_eq!(
        resp["response"]["status"]["message"],
        "reviews.bookinfo.svc.cluster.local port 9080 subset v2: tls mode DISABLE, but Policy bookinfo/default requires mutual TLS (STRICT); use ISTIO_MUTUAL or add a service-specific exemption Policy"
    );
}

#[test]
fn s6_patch_creates_missing_parents_before_writing() {
    let snap = bookinfo("");
    let body = fixture("37-");
    let (_, resp, verdict) = answer(&snap, &Settings::default(), Endpoint::Mutate, &body);
    assert_eq!(verdict, ReviewVerdict::Patched);
    let patch = patch_of(&resp).unwrap();
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!([
            {"op": "add", "path": "/spec/trafficPolicy", "value": {}},
            {"op": "add", "path": "/spec/trafficPolicy/tls", "value": {"mode": "ISTIO_MUTUAL"}}
        ])
    );
    let mut obj = body["request"]["object"].clone();
    json_patch::patch(&mut obj, &patch).unwrap();
    assert_eq!(
        obj["spec"]["trafficPolicy"],
        json!({"tls": {"mode": "ISTIO_MUTUAL"}})
    );
    assert_eq!(
        obj["spec"]["subsets"],
        body["request"]["object"]["spec"]["subsets"]
    );
}

#[test]
fn s6_warn_mode_allows_without_patch_and_warns() {
    let snap = bookinfo("");
    let settings = Settings {
        mode: Mode::Warn,
        ..Settings::default()
    };
    let (_, resp, verdict) = answer(&snap, &settings, Endpoint::Validate, &fixture("25-"));
    assert_eq!(verdict, ReviewVerdict::Allowed);
    let w = resp["response"]["warnings"].to_string();
    assert!(
        w.contains("warn mode") && w.contains("tls mode DISABLE"),
        "{w}"
    );
    let (_, resp, verdict) = answer(&snap, &settings, Endpoint::Mutate, &fixture("07-"));
    assert_eq!(verdict, ReviewVerdict::Allowed);
    assert!(resp["response"].get("patch").is_none());
}

#[test]
fn s6_namespace_label_off_overrides_enforce() {
    let snap = bookinfo("---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo, labels: {mtls-guard.io/mode: \"off\"}}\n");
    let (_, resp, verdict) = answer(
        &snap,
        &Settings::default(),
        Endpoint::Validate,
        &fixture("25-"),
    );
    assert_eq!(verdict, ReviewVerdict::Allowed);
    assert!(resp["response"].get("warnings").is_none());
}

#[test]
fn s6_delete_is_allowed_and_dry_run_is_judged() {
    let snap = bookinfo("");
    let (_, _, verdict) = answer(
        &snap,
        &Settings::default(),
        Endpoint::Validate,
        &fixture("29-"),
    );
    assert_eq!(verdict, ReviewVerdict::Allowed);
    let body = fixture("25-");
    assert_eq!(body["request"]["dryRun"], true);
    let (_, _, verdict) = answer(&snap, &Settings::default(), Endpoint::Validate, &body);
    assert_eq!(verdict, ReviewVerdict::Denied);
}

#[test]
fn v1beta1_review_is_answered_in_v1beta1() {
    let snap = bookinfo("");
    let body = fixture("21-");
    let (status, resp, verdict) = answer(&snap, &Settings::default(), Endpoint::Validate, &body);
    assert_eq!(status, 200);
    assert_eq!(resp["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(resp["response"]["uid"], body["request"]["uid"]);
    assert_eq!(verdict, ReviewVerdict::Allowed);
}

#[test]
fn malformed_reviews_get_clear_answers() {
    let snap = bookinfo("");
    let s = Settings::default();
    let r = review(&snap, &s, Endpoint::Validate, b"{not json");
    assert_eq!(http_status(r.delivery), 400);
    assert!(String::from_utf8_lossy(&r.body).contains("not JSON"));
    let r = review(
        &snap,
        &s,
        Endpoint::Validate,
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    );
    assert_eq!(http_status(r.delivery), 400);
    assert!(String::from_utf8_lossy(&r.body).contains("no `request`"));
    // CREATE without object.
    let mut body = fixture("10-");
    body["request"]["object"] = Value::Null;
    let (status, resp, verdict) = answer(&snap, &s, Endpoint::Validate, &body);
    // Not judged: a denial with code 400, counted as an error.
    assert_eq!((status, verdict), (200, ReviewVerdict::Error));
    assert_eq!(resp["response"]["allowed"], false);
    assert_eq!(resp["response"]["status"]["code"], 400);
    assert!(resp["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("has no object"));
    // A DestinationRule that is not an object.
    let mut body = fixture("10-");
    body["request"]["object"] = json!("reviews");
    let (status, resp, verdict) = answer(&snap, &s, Endpoint::Validate, &body);
    assert_eq!(status, 200, "{resp:#}");
    assert_eq!(verdict, ReviewVerdict::Error);
    assert_eq!(resp["response"]["allowed"], false);
    assert_eq!(resp["response"]["uid"], body["request"]["uid"]);
    // A spec of the wrong shape: denied by the validating webhook; the mutating
    // webhook lets it through with a warning (the API server's schema check runs
    // after it), and both count it as an error.
    let mut body = fixture("10-");
    body["request"]["object"]["spec"]["host"] = json!(42);
    let (_, resp, verdict) = answer(&snap, &s, Endpoint::Validate, &body);
    assert_eq!(verdict, ReviewVerdict::Error, "{resp:#}");
    assert_eq!(resp["response"]["allowed"], false);
    assert_eq!(resp["response"]["status"]["code"], 400);
    assert!(resp["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("DestinationRule bookinfo/reviews"));
    let (_, resp, verdict) = answer(&snap, &s, Endpoint::Mutate, &body);
    assert_eq!(verdict, ReviewVerdict::Error, "{resp:#}");
    assert_eq!(resp["response"]["allowed"], true);
    assert!(resp["response"].get("patch").is_none());
    assert!(resp["response"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("not judged: DestinationRule bookinfo/reviews"));
    // Mode off allows even what cannot be read, without a word.
    let off = Settings {
        mode: Mode::Off,
        ..Settings::default()
    };
    let (_, resp, verdict) = answer(&snap, &off, Endpoint::Validate, &body);
    assert_eq!(verdict, ReviewVerdict::Allowed, "{resp:#}");
    assert!(resp["response"].get("warnings").is_none());
}

/// A `tls.mode` Istio's schema refuses (here lower case, which used to pass as
/// ISTIO_MUTUAL): the validating webhook denies it with `check`'s words; the mutating
/// webhook leaves that field alone and still makes the other changes.
#[test]
fn invalid_tls_mode_is_denied_and_left_alone_by_the_mutating_webhook() {
    let snap = bookinfo("");
    let message = "spec.trafficPolicy.tls.mode \"istio_mutual\" is not a TLS mode Istio accepts; use DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL";
    let mut body = fixture("10-");
    body["request"]["object"]["spec"]["trafficPolicy"] = json!({"tls": {"mode": "istio_mutual"}});
    let (status, resp, verdict) = answer(&snap, &Settings::default(), Endpoint::Validate, &body);
    assert_eq!(status, 200);
    assert_eq!(verdict, ReviewVerdict::Denied);
    assert_eq!(resp["response"]["status"]["code"], 403);
    assert_eq!(resp["response"]["status"]["message"], message);

    // Mode warn: allowed, with the same words.
    let warn = Settings {
        mode: Mode::Warn,
        ..Settings::default()
    };
    let (_, resp, verdict) = answer(&snap, &warn, Endpoint::Validate, &body);
    assert_eq!(verdict, ReviewVerdict::Allowed);
    assert_eq!(
        resp["response"]["warnings"],
        json!([format!("mtls-guard (warn mode, not denied): {message}")])
    );

    // productpage is exempt: ISTIO_MUTUAL would be patched to DISABLE, istio_mutual is not.
    let mut body = fixture("07-");
    body["request"]["object"]["spec"]["trafficPolicy"] = json!({"tls": {"mode": "istio_mutual"}});
    let (_, resp, verdict) = answer(&snap, &Settings::default(), Endpoint::Mutate, &body);
    assert_eq!(verdict, ReviewVerdict::Allowed, "{resp:#}");
    assert!(resp["response"].get("patch").is_none(), "{resp:#}");

    // reviews without a top-level tls, subset v2 with a wrong case: the top level is
    // filled, v2 is not touched.
    let mut body = fixture("09-");
    let spec = &mut body["request"]["object"]["spec"];
    spec.as_object_mut().unwrap().remove("trafficPolicy");
    spec["subsets"][1]["trafficPolicy"] = json!({"tls": {"mode": "Istio_Mutual"}});
    let (_, resp, verdict) = answer(&snap, &Settings::default(), Endpoint::Mutate, &body);
    assert_eq!(verdict, ReviewVerdict::Patched, "{resp:#}");
    let patch = serde_json::to_value(patch_of(&resp).unwrap()).unwrap();
    assert_eq!(
        patch,
        json!([
            {"op": "add", "path": "/spec/trafficPolicy", "value": {}},
            {"op": "add", "path": "/spec/trafficPolicy/tls", "value": {"mode": "ISTIO_MUTUAL"}}
        ])
    );
}
