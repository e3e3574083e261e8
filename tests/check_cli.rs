//! `mtls-guard check` as a user runs it: the real binary over the Bookinfo example
//! (contract section 7) and its variants, asserting lines and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `mtls-guard check ARGS` from the crate root (paths in the output are relative).
fn check_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mtls-guard"));
    command
        .arg("check")
        .args(args)
        .current_dir(root())
        // The settings flags also read the environment; keep the defaults.
        .env_remove("MTLS_GUARD_MODE")
        .env_remove("MTLS_GUARD_AUTO_MTLS")
        .env_remove("MTLS_GUARD_ROOT_NAMESPACE")
        .env_remove("MTLS_GUARD_CLUSTER_DOMAIN");
    command
}

/// Runs `mtls-guard check ARGS`.
fn check(args: &[&str]) -> Output {
    check_command(args).output().expect("runs mtls-guard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

/// The output lines about one rule.
fn lines_of<'a>(out: &'a str, rule: &str) -> Vec<&'a str> {
    let subject = format!("DestinationRule {rule}:");
    out.lines().filter(|l| l.contains(&subject)).collect()
}

fn summary(out: &str) -> &str {
    out.lines().last().unwrap_or("")
}

const PRODUCTPAGE_PATCH: &str = "examples/bookinfo/destination-rule-all-mtls.yaml:2: warning MG103 DestinationRule bookinfo/productpage: would patch: productpage.bookinfo.svc.cluster.local port 9080: tls mode ISTIO_MUTUAL, but productpage is reached through non-mesh Ingress bookinfo/bookinfo and there is no Istio ingress gateway, so it is exempt from mutual TLS; set DISABLE; also subset v1 (fix: set spec.trafficPolicy.tls.mode to DISABLE (was ISTIO_MUTUAL))";

/// Section 7: reviews, ratings and details untouched; productpage patched to DISABLE,
/// with a warning that the server side still requires mTLS until
/// `disable-mtls-productpage` is applied.
#[test]
fn bookinfo_tutorial() {
    let o = check(&["examples/bookinfo"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert_eq!(lines_of(&out, "bookinfo/productpage")[0], PRODUCTPAGE_PATCH);
    let warning = lines_of(&out, "bookinfo/productpage")[1];
    assert!(
        warning.starts_with(
            "examples/bookinfo/destination-rule-all-mtls.yaml:2: warning MG206 DestinationRule bookinfo/productpage: "
        ),
        "{warning}"
    );
    assert!(
        warning.contains("Policy bookinfo/default still requires mutual TLS (STRICT)")
            && warning.contains("disable-mtls-productpage"),
        "{warning}"
    );
    assert_eq!(lines_of(&out, "bookinfo/productpage").len(), 2, "{out}");
    for clean in ["bookinfo/reviews", "bookinfo/ratings", "bookinfo/details"] {
        assert!(lines_of(&out, clean).is_empty(), "{clean}: {out}");
    }
    assert_eq!(summary(&out), "4 rules, 0 conflicts, 0 fills, 1 patches");
    assert_eq!(out.lines().count(), 3, "{out}");
}

/// `--verbose` names the clean rules.
#[test]
fn bookinfo_verbose_lists_clean_rules() {
    let o = check(&["-v", "examples/bookinfo"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(out.contains(
        "examples/bookinfo/destination-rule-all-mtls.yaml:17: ok DestinationRule bookinfo/reviews: reviews.bookinfo.svc.cluster.local: 4 scopes consistent"
    ), "{out}");
    assert!(out.contains(
        "examples/bookinfo/destination-rule-all-mtls.yaml:38: ok DestinationRule bookinfo/ratings: ratings.bookinfo.svc.cluster.local: 5 scopes consistent"
    ), "{out}");
    assert!(out.contains(
        "examples/bookinfo/destination-rule-all-mtls.yaml:62: ok DestinationRule bookinfo/details: details.bookinfo.svc.cluster.local: 3 scopes consistent"
    ), "{out}");
}

/// Section 7: with the exemption applied, productpage is still patched (now because of
/// the targeted Policy, section 4 b), and the missing-exemption warning is gone.
#[test]
fn bookinfo_with_exemption() {
    let o = check(&["examples/bookinfo", "examples/bookinfo-exemption"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        lines_of(&out, "bookinfo/productpage"),
        vec!["examples/bookinfo/destination-rule-all-mtls.yaml:2: warning MG103 DestinationRule bookinfo/productpage: would patch: productpage.bookinfo.svc.cluster.local port 9080: tls mode ISTIO_MUTUAL, but Policy bookinfo/disable-mtls-productpage exempts productpage from mutual TLS (service level); set DISABLE; also subset v1 (fix: set spec.trafficPolicy.tls.mode to DISABLE (was ISTIO_MUTUAL))"]
    );
    assert!(!out.contains("MG206"), "{out}");
    assert_eq!(summary(&out), "4 rules, 0 conflicts, 0 fills, 1 patches");
}

/// Section 7: with the ingress gateway present, the productpage rule stays ISTIO_MUTUAL.
#[test]
fn bookinfo_with_ingress_gateway() {
    let o = check(&["--ingress-gateway", "present", "examples/bookinfo"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(out, "4 rules, 0 conflicts, 0 fills, 0 patches\n");
}

/// Section 7: a reviews rule with `tls.mode: DISABLE` is denied.
#[test]
fn reviews_disable_is_a_conflict() {
    let o = check(&[
        "examples/bookinfo",
        "examples/scenarios/reviews-disable.yaml",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(
        lines_of(&out, "bookinfo/reviews"),
        vec!["examples/scenarios/reviews-disable.yaml:6: error MG101 DestinationRule bookinfo/reviews: reviews.bookinfo.svc.cluster.local port 9080: tls mode DISABLE, but Policy bookinfo/default requires mutual TLS (STRICT); use ISTIO_MUTUAL or add a service-specific exemption Policy; also subsets v1, v2, v3 (fix: set spec.trafficPolicy.tls.mode to ISTIO_MUTUAL)"]
    );
    assert_eq!(summary(&out), "4 rules, 1 conflicts, 0 fills, 1 patches");
    // The scenario file replaces the tutorial's reviews rule, and says so.
    assert!(
        stderr(&o).contains("note: examples/scenarios/reviews-disable.yaml:6: DestinationRule bookinfo/reviews replaces the one at examples/bookinfo/destination-rule-all-mtls.yaml:17"),
        "{}",
        stderr(&o)
    );
}

/// Section 7: a ratings rule without tls gets ISTIO_MUTUAL filled in.
#[test]
fn ratings_without_tls_is_filled() {
    let o = check(&[
        "examples/bookinfo",
        "examples/scenarios/ratings-no-tls.yaml",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        lines_of(&out, "bookinfo/ratings"),
        vec!["examples/scenarios/ratings-no-tls.yaml:5: warning MG102 DestinationRule bookinfo/ratings: would fill: ratings.bookinfo.svc.cluster.local port 9080: no tls mode and auto mTLS is off; set ISTIO_MUTUAL because Policy bookinfo/default requires mutual TLS (STRICT); also subsets v1, v2, v2-mysql, v2-mysql-vm (fix: set spec.trafficPolicy.tls.mode to ISTIO_MUTUAL)"]
    );
    assert_eq!(summary(&out), "4 rules, 0 conflicts, 1 fills, 1 patches");
}

/// With auto mTLS on, a rule without tls is fine (section 5, second table).
#[test]
fn ratings_without_tls_with_auto_mtls() {
    let o = check(&[
        "--auto-mtls",
        "examples/bookinfo",
        "examples/scenarios/ratings-no-tls.yaml",
    ]);
    let out = stdout(&o);
    assert!(lines_of(&out, "bookinfo/ratings").is_empty(), "{out}");
    assert_eq!(summary(&out), "4 rules, 0 conflicts, 0 fills, 1 patches");
}

/// Every variant at once: the folder of scenarios on top of the tutorial.
#[test]
fn all_scenarios_together() {
    let o = check(&["examples/bookinfo", "examples/scenarios"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(lines_of(&out, "bookinfo/productpage")[0], PRODUCTPAGE_PATCH);
    assert!(lines_of(&out, "bookinfo/reviews")[0].contains(" error MG101 "));
    assert!(lines_of(&out, "bookinfo/ratings")[0].contains(" warning MG102 "));
    assert!(lines_of(&out, "bookinfo/details").is_empty());
    assert_eq!(summary(&out), "4 rules, 1 conflicts, 1 fills, 1 patches");
}

/// `--mode warn` (contract section 6): conflicts are reported but do not fail.
#[test]
fn warn_mode_reports_without_failing() {
    let o = check(&[
        "--mode",
        "warn",
        "examples/bookinfo",
        "examples/scenarios/reviews-disable.yaml",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let reviews = lines_of(&out, "bookinfo/reviews")[0];
    assert!(
        reviews.contains(" warning MG101 ") && reviews.contains("[mode warn: allowed, not denied]"),
        "{reviews}"
    );
    assert_eq!(
        summary(&out),
        "4 rules, 1 conflicts, 0 fills, 1 patches; 4 rules in mode warn (reported, not enforced)"
    );
}

/// A namespace labelled `mtls-guard.io/mode: off` is not checked, over `--mode enforce`.
#[test]
fn namespace_label_overrides_mode() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("namespace.yaml");
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bookinfo\n  labels:\n    mtls-guard.io/mode: \"off\"\n",
    )
    .unwrap();
    let o = check(&[
        "examples/bookinfo",
        "examples/scenarios/reviews-disable.yaml",
        ns.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        out,
        "4 rules, 0 conflicts, 0 fills, 0 patches; 4 rules in mode off (not checked)\n"
    );
}

/// `--output json`: an array of objects with the documented fields.
#[test]
fn json_output() {
    let o = check(&["-o", "json", "examples/bookinfo", "examples/scenarios"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    let items = v.as_array().expect("an array");
    let codes: Vec<&str> = items.iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["MG103", "MG206", "MG101", "MG102"]);
    let patch = &items[0];
    assert_eq!(
        patch["file"],
        "examples/bookinfo/destination-rule-all-mtls.yaml"
    );
    assert_eq!(patch["line"], 2);
    assert_eq!(patch["document"], 1);
    assert_eq!(patch["item"], serde_json::Value::Null);
    assert_eq!(patch["severity"], "warning");
    assert_eq!(patch["kind"], "patch");
    assert_eq!(patch["mode"], "enforce");
    assert_eq!(
        patch["rule"],
        serde_json::json!({"namespace": "bookinfo", "name": "productpage"})
    );
    assert_eq!(patch["host"], "productpage.bookinfo.svc.cluster.local");
    assert_eq!(
        patch["scopes"],
        serde_json::json!([{"port": 9080, "subset": null}, {"port": 9080, "subset": "v1"}])
    );
    assert_eq!(patch["client"], "ISTIO_MUTUAL");
    assert_eq!(patch["required"], "DISABLE");
    assert_eq!(patch["location"], "spec.trafficPolicy.tls");
    assert_eq!(
        patch["patch"],
        serde_json::json!([{"op": "add", "path": "/spec/trafficPolicy/tls/mode", "value": "DISABLE"}])
    );
    let conflict = &items[2];
    assert_eq!(conflict["severity"], "error");
    assert_eq!(conflict["kind"], "conflict");
    assert_eq!(conflict["file"], "examples/scenarios/reviews-disable.yaml");
    assert_eq!(conflict["patch"], serde_json::Value::Null);
    let fill = &items[3];
    assert_eq!(fill["kind"], "fill");
    assert_eq!(fill["required"], "ISTIO_MUTUAL");
    assert_eq!(fill["client"], "UNSET");
    for item in items {
        for key in [
            "file", "line", "document", "item", "severity", "code", "kind", "mode", "rule", "host",
            "scopes", "client", "required", "location", "message", "fix", "patch",
        ] {
            assert!(item.get(key).is_some(), "{key} missing in {item}");
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A YAML syntax error is unusable input: exit 2, with the file and the line.
#[test]
fn broken_yaml_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n   bad: indentation\n",
    );
    let o = check(&["examples/bookinfo", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    let expected = format!("{}:5:", path.display());
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("YAML syntax error"), "{err}");
}

/// A syntax error in a later document still names the right line.
#[test]
fn broken_yaml_in_second_document() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a-ok.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    );
    write(
        dir.path(),
        "b-broken.yml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: [c}\n",
    );
    let o = check(&[dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:7:", dir.path().join("b-broken.yml").display())),
        "{err}"
    );
}

/// A missing path and an object that does not parse are unusable input too.
#[test]
fn unreadable_input_exits_2() {
    let o = check(&["examples/does-not-exist"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("examples/does-not-exist"));

    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: a}\nspec:\n  host: [not, a, string]\n",
    );
    let o = check(&[path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}:5: DestinationRule r: spec.host: invalid type: sequence, expected a string",
            path.display()
        )),
        "{err}"
    );
}

/// Usage errors are clap's: exit 2.
#[test]
fn no_paths_is_a_usage_error() {
    let o = check(&[]);
    assert_eq!(o.status.code(), Some(2));
}

/// Hand-written YAML: integer `portLevelMtls` keys and a YAML-null `mtls:` (section 2).
#[test]
fn hand_written_yaml_quirks() {
    let dir = tempfile::tempdir().unwrap();
    // A workload-port DISABLE for productpage: a targeted exemption (section 4 b).
    write(
        dir.path(),
        "pa.yaml",
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n  name: productpage\n  namespace: bookinfo\nspec:\n  selector:\n    matchLabels:\n      app: productpage\n  mtls:\n    mode: STRICT\n  portLevelMtls:\n    9080:\n      mode: DISABLE\n",
    );
    let o = check(&[
        "--ingress-gateway",
        "present",
        "examples/bookinfo",
        dir.path().to_str().unwrap(),
    ]);
    let out = stdout(&o);
    let pp = lines_of(&out, "bookinfo/productpage");
    assert_eq!(pp.len(), 1, "{out}");
    assert!(
        pp[0].contains("PeerAuthentication bookinfo/productpage exempts productpage from mutual TLS (workload-port level)"),
        "{out}"
    );

    // `mtls:` null is STRICT (as `kubectl create` sends it): reviews DISABLE conflicts.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy.yaml",
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata:\n  name: default\n  namespace: bookinfo\nspec:\n  peers:\n  - mtls:\n",
    );
    let o = check(&[
        "examples/bookinfo",
        "examples/scenarios/reviews-disable.yaml",
        dir.path().to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(lines_of(&out, "bookinfo/reviews")[0].contains(" error MG101 "));
    assert!(!out.contains("MG201"), "{out}");
}

/// `peers: [{}]` (the YAML null dropped by client-side apply) is PLAINTEXT, with MG201.
#[test]
fn dropped_null_gives_mg201() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy.yaml",
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata:\n  name: default\n  namespace: bookinfo\nspec:\n  peers:\n  - {}\n",
    );
    let o = check(&["examples/bookinfo", dir.path().to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let reviews = lines_of(&out, "bookinfo/reviews");
    assert!(reviews[0].contains(" error MG101 "), "{out}");
    assert!(
        reviews[1].contains(" warning MG201 ") && reviews[1].contains("mtls: {}"),
        "{out}"
    );
}

/// An external host is out of scope: a note, never a failure.
#[test]
fn out_of_scope_host_is_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "ext.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: google\n  namespace: bookinfo\nspec:\n  host: www.google.com\n  trafficPolicy:\n    tls:\n      mode: SIMPLE\n",
    );
    let o = check(&["examples/bookinfo", path.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        lines_of(&out, "bookinfo/google"),
        vec![format!(
            "{}:1: note MG100 DestinationRule bookinfo/google: host \"www.google.com\" is not a service of the mesh (an external name or another wildcard): allowed, never patched",
            path.display()
        )]
    );
}

/// A rule without a namespace is judged in `default`, or in `-n`.
#[test]
fn rules_without_namespace() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rule.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n",
    );
    let d = dir.path().to_str().unwrap();
    // In `default` nothing requires mTLS.
    let o = check(&["examples/bookinfo", d]);
    assert_eq!(o.status.code(), Some(0));
    assert!(lines_of(&stdout(&o), "default/reviews")
        .iter()
        .any(|l| l.contains("MG203")));
    // Put in bookinfo with -n, it replaces the tutorial's reviews rule and conflicts.
    let o = check(&["-n", "bookinfo", "examples/bookinfo", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(lines_of(&stdout(&o), "bookinfo/reviews")[0].contains(" error MG101 "));
}

const GATEWAY_PATCH: &str = "examples/bookinfo-gateway/destination-rules.yaml:2: warning MG103 DestinationRule bookinfo-gw/productpage: would patch: productpage.bookinfo-gw.svc.cluster.local port 9080: tls mode ISTIO_MUTUAL, but productpage port 9080 is a backend of HTTPRoute bookinfo-gw/productpage on Gateway edge/public, whose controller gateway.envoyproxy.io/gatewayclass-controller is not the mesh's, so it is exempt from mutual TLS; set DISABLE; also subset v1 (fix: set spec.trafficPolicy.tls.mode to DISABLE (was ISTIO_MUTUAL))";
const GATEWAY_SERVER_SIDE: &str = "examples/bookinfo-gateway/destination-rules.yaml:2: warning MG206 DestinationRule bookinfo-gw/productpage: productpage port 9080 is a backend of HTTPRoute bookinfo-gw/productpage on Gateway edge/public, whose controller gateway.envoyproxy.io/gatewayclass-controller is not the mesh's, so it is exempt from mutual TLS, but PeerAuthentication bookinfo-gw/default still requires mutual TLS (STRICT) on the server side, so plaintext calls from the ingress will fail until a service-specific exemption exists: add a PeerAuthentication in bookinfo-gw whose selector matches productpage's pods with `portLevelMtls: {9080: {mode: PERMISSIVE}}`";

/// Contract section 4 (c) and section 6: productpage behind an HTTPRoute on a non-Istio
/// Gateway; `check` names the route and the Gateway (the output README.md shows).
#[test]
fn bookinfo_behind_a_gateway_api_route() {
    let o = check(&["examples/bookinfo-gateway"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert_eq!(
        out,
        format!(
            "{GATEWAY_PATCH}\n{GATEWAY_SERVER_SIDE}\n4 rules, 0 conflicts, 0 fills, 1 patches\n"
        )
    );
}

/// With the PERMISSIVE server-side exemption, the rule may keep ISTIO_MUTUAL (section 5:
/// an exempt port whose server is PERMISSIVE requires "any").
#[test]
fn bookinfo_gateway_with_permissive_exemption() {
    let o = check(&[
        "examples/bookinfo-gateway",
        "examples/bookinfo-gateway-exemption",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert_eq!(out, "4 rules, 0 conflicts, 0 fills, 0 patches\n");
}

/// `--mesh-gateway-controller` makes a controller the mesh's: its Gateways exempt nothing.
#[test]
fn mesh_gateway_controller_flag() {
    let o = check(&[
        "--mesh-gateway-controller",
        "example.com/other",
        "--mesh-gateway-controller",
        "gateway.envoyproxy.io/gatewayclass-controller",
        "examples/bookinfo-gateway",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert_eq!(out, "4 rules, 0 conflicts, 0 fills, 0 patches\n");
}

/// Runs `mtls-guard check ARGS` with `input` on standard input.
fn check_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = check_command(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs mtls-guard");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// No input file (an empty folder, or one without YAML/JSON: a mistyped path in CI)
/// is unusable input, exit 2, unless `--allow-empty`.
#[test]
fn no_input_files_exits_2_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    write(&other, "README.md", "# not a manifest\n");
    write(&other, "values.txt", "apiVersion: v1\n");
    for folder in [&empty, &other] {
        let o = check(&[folder.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "{}", stdout(&o));
        let err = stderr(&o);
        assert_eq!(
            err,
            format!(
                "mtls-guard check: error: no input: no *.yaml, *.yml or *.json file in {} (--allow-empty accepts that)\n",
                folder.display()
            )
        );

        let o = check(&["--allow-empty", folder.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(
            summary(&stdout(&o)),
            "0 rules, 0 conflicts, 0 fills, 0 patches"
        );
        assert!(
            stderr(&o).contains("note: no DestinationRule found in 0 file(s)"),
            "{}",
            stderr(&o)
        );
    }
    // One folder with input is enough.
    let o = check(&[empty.to_str().unwrap(), "examples/bookinfo"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// `check -` reads standard input (YAML, or JSON when it starts with `{`) and names it
/// `<stdin>` in its output, as linters do.
#[test]
fn stdin_is_read_with_dash() {
    let rules =
        std::fs::read_to_string(root().join("examples/scenarios/reviews-disable.yaml")).unwrap();
    let o = check_stdin(&["examples/bookinfo", "-"], &rules);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    let conflict = lines_of(&out, "bookinfo/reviews");
    assert_eq!(conflict.len(), 1, "{out}");
    assert!(
        conflict[0].starts_with("<stdin>:6: error MG101 DestinationRule bookinfo/reviews: "),
        "{out}"
    );
    assert!(
        stderr(&o).contains("note: <stdin>:6: DestinationRule bookinfo/reviews replaces the one at examples/bookinfo/destination-rule-all-mtls.yaml:17"),
        "{}",
        stderr(&o)
    );

    // The same rule as JSON lines on standard input: lines are still right.
    let mut json = String::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&rules) {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(doc).unwrap();
        if !value.is_null() {
            json.push_str(&serde_json::to_string(&value).unwrap());
            json.push('\n');
        }
    }
    let json = format!("\n{json}");
    let o = check_stdin(&["examples/bookinfo", "-"], &json);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    let line = json
        .lines()
        .position(|l| l.contains("\"DestinationRule\""))
        .unwrap()
        + 1;
    assert!(
        lines_of(&out, "bookinfo/reviews")[0].starts_with(&format!("<stdin>:{line}: error MG101 ")),
        "{out}"
    );

    // An empty standard input is no input.
    let o = check_stdin(&["-"], " \n");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "mtls-guard check: error: no input: standard input is empty (--allow-empty accepts that)\n"
    );
    let o = check_stdin(&["--allow-empty", "-"], "");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // A syntax error names standard input and the line.
    let o = check_stdin(
        &["-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: [a}\n",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("mtls-guard check: error: <stdin>:3:"),
        "{}",
        stderr(&o)
    );
}

/// A broken object's error names the field at fault by its JSON path.
#[test]
fn broken_object_error_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: a}\nspec:\n  host: r\n  subsets:\n  - name: v1\n  - name: [v2]\n",
    );
    let o = check(&[path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "mtls-guard check: error: {}:1: DestinationRule r: spec.subsets[1].name: invalid type: sequence, expected a string\n",
            path.display()
        )
    );
}

/// A `tls.mode` Istio's schema refuses (here lower case) is its own error, MG104,
/// naming the accepted values: the webhook would deny the rule, so exit 1 (0 in mode
/// warn, where it is reported and allowed).
#[test]
fn invalid_tls_mode_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "reviews-lowercase.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: bookinfo}\nspec:\n  host: reviews\n  trafficPolicy: {tls: {mode: istio_mutual}}\n  subsets: [{name: v1}, {name: v2}]\n",
    );
    let path = path.to_str().unwrap();
    let o = check(&["examples/bookinfo", path]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert_eq!(
        lines_of(&out, "bookinfo/reviews"),
        vec![format!("{path}:1: error MG104 DestinationRule bookinfo/reviews: spec.trafficPolicy.tls.mode \"istio_mutual\" is not a TLS mode Istio accepts; use DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL (fix: set spec.trafficPolicy.tls.mode to ISTIO_MUTUAL)")]
    );
    assert_eq!(
        summary(&out),
        "4 rules, 0 conflicts, 0 fills, 1 patches; 1 invalid tls modes"
    );

    let o = check(&["--mode", "warn", "examples/bookinfo", path]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let line = lines_of(&out, "bookinfo/reviews")[0];
    assert!(line.contains(": warning MG104 "), "{line}");
    assert!(line.contains("[mode warn: allowed, not denied]"), "{line}");

    let o = check(&["-o", "json", "examples/bookinfo", path]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    let item = v
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "MG104")
        .expect("an MG104 item");
    assert_eq!(item["kind"], "invalid-mode");
    assert_eq!(item["client"], "istio_mutual");
    assert_eq!(item["required"], "ISTIO_MUTUAL");
    assert_eq!(item["location"], "spec.trafficPolicy.tls");
    assert_eq!(item["scopes"].as_array().unwrap().len(), 3);
}

/// `check --cluster` that cannot reach a cluster: unusable input (exit 2), saying why.
#[test]
fn cluster_that_cannot_be_reached_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-kubeconfig");
    let o = check(&["--cluster", "--kubeconfig", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("mtls-guard check: error: reading the kubeconfig"),
        "{}",
        stderr(&o)
    );

    // A kubeconfig whose server refuses connections (port 1 on the loopback).
    let kubeconfig = write(
        dir.path(),
        "kubeconfig",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\n\
         users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    );
    let o = check(&["--cluster", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("mtls-guard check: error: API discovery failed"),
        "{}",
        stderr(&o)
    );
}
