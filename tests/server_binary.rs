//! The real `mtls-guard` binary: `certs` writes a usable bundle, `serve` starts with
//! given or generated certificates, logs one JSON line per review, and on SIGTERM or
//! Ctrl-C finishes the request in flight and exits 0.

mod server_support;

use base64::Engine;
use serde_json::Value;
use server_support::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_mtls-guard");

/// A child process that is killed if the test ends early, with its output lines.
struct Running {
    child: Child,
    stderr: mpsc::Receiver<String>,
    stdout: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    fn spawn(args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = lines_of(child.stderr.take().unwrap());
        let stdout = lines_of(child.stdout.take().unwrap());
        Running {
            child,
            stderr,
            stdout,
            stderr_seen: Vec::new(),
        }
    }

    /// The next JSON log line satisfying `pred` (bounded wait).
    fn log_line(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let parsed = |line: &str| serde_json::from_str::<Value>(line).ok();
        if let Some(v) = self
            .stderr_seen
            .iter()
            .filter_map(|l| parsed(l))
            .find(|v| pred(v))
        {
            return v;
        }
        for _ in 0..600 {
            match self.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if pred(&v) {
                            return v;
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "no such log line; stderr so far:\n{}",
            self.stderr_seen.join("\n")
        );
    }

    fn stdout_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..600 {
            match self.stdout.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if pred(&line) => return line,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no such stdout line");
    }

    /// The bound addresses, from the startup log lines.
    fn addresses(&mut self) -> (std::net::SocketAddr, std::net::SocketAddr) {
        let admin = self.log_line(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin port listening"))
        });
        let webhook = self.log_line(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("webhook port listening"))
        });
        (
            webhook["addr"].as_str().unwrap().parse().unwrap(),
            admin["addr"].as_str().unwrap().parse().unwrap(),
        )
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the process did not exit");
    }
}

fn run_certs(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["certs", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().unwrap()
}

fn bookinfo_policies(dir: &Path) -> std::path::PathBuf {
    let list =
        serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": bookinfo_values() });
    let path = dir.join("bookinfo.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    path
}

/// `serve` on loopback with a `certs`-made pair (127.0.0.1 added) and the Bookinfo
/// policies, plus `extra` flags; returns it with its CA.
fn serve_bookinfo(dir: &Path, extra: &[&str]) -> (Running, String) {
    let certs = dir.join("certs");
    assert!(run_certs(&certs, &["--san", "127.0.0.1"]).status.success());
    let policies = bookinfo_policies(dir);
    let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--policies",
        policies.to_str().unwrap(),
        "--log-format",
        "json",
    ];
    args.extend_from_slice(extra);
    let server = Running::spawn(&args);
    (
        server,
        std::fs::read_to_string(certs.join("ca.crt")).unwrap(),
    )
}

#[test]
fn certs_command_writes_a_bundle_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("webhook");
    let output = run_certs(&out, &["--service", "guard", "--namespace", "ops"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ca = std::fs::read_to_string(out.join("ca.crt")).unwrap();
    let bundle = String::from_utf8(output.stdout).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .unwrap();
    assert_eq!(decoded, ca.as_bytes());

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let pem = std::fs::read(out.join("tls.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let names = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    for name in [
        "guard.ops.svc",
        "guard.ops.svc.cluster.local",
        "guard.ops",
        "\"guard\"",
    ] {
        assert!(names.contains(name), "{name} in {names}");
    }

    // Existing files are kept unless --force.
    let again = run_certs(&out, &["--service", "guard", "--namespace", "ops"]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(out.join("ca.crt")).unwrap(), ca);
    let forced = run_certs(
        &out,
        &["--service", "guard", "--namespace", "ops", "--force"],
    );
    assert!(forced.status.success());
    assert_ne!(std::fs::read_to_string(out.join("ca.crt")).unwrap(), ca);
}

/// SIGTERM while a request's body is still arriving: the request is answered, the
/// process exits 0. Uses `certs` output (with 127.0.0.1 added) and `--policies`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ca) = serve_bookinfo(dir.path(), &[]);
    let (webhook, admin) = server.addresses();
    assert!(wait_for_status(&format!("http://{admin}/readyz"), 200, 200).await);

    // A complete review first: denied (contract section 7), and logged as one JSON line.
    let client = client_trusting(&[&ca], Protocol::Http2);
    let (status, answer) = post(
        &client,
        &format!("https://{webhook}/validate"),
        review_body("25"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let uid = review_json("25")["request"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let line = server.log_line(|v| v["message"] == "review" && v["uid"] == uid.as_str());
    assert_eq!(line["verdict"], "denied");
    assert_eq!(line["kind"], "DestinationRule");
    assert_eq!(line["namespace"], "bookinfo");
    assert_eq!(line["name"], "reviews");
    assert_eq!(line["operation"], "UPDATE");
    assert_eq!(line["dry_run"], true);
    assert!(line["duration_ms"].is_number());

    // Then one whose body is still arriving when SIGTERM comes.
    let body = review_body("10");
    let (mut tls, rest) = half_sent_review(
        webhook,
        &ca,
        "/validate?timeout=10s",
        &body,
        &format!("http://{admin}/metrics"),
    )
    .await;

    server.signal(libc::SIGTERM);
    server.log_line(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutting down"))
    });
    assert!(wait_for_status(&format!("http://{admin}/readyz"), 503, 200).await);

    tls.write_all(&rest).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(review_json("10")["request"]["uid"].as_str().unwrap()));

    assert_eq!(server.exit_code(), Some(0));
}

/// With --shutdown-delay, SIGTERM first turns /readyz to 503 while new reviews are
/// still answered (endpoints drop the pod before it stops listening), then it exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_keeps_serving_while_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ca) = serve_bookinfo(dir.path(), &["--shutdown-delay", "5s"]);
    let (webhook, admin) = server.addresses();
    assert!(wait_for_status(&format!("http://{admin}/readyz"), 200, 200).await);
    server.signal(libc::SIGTERM);
    server.log_line(|v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("not ready"))
    });
    assert!(wait_for_status(&format!("http://{admin}/readyz"), 503, 200).await);
    let client = client_trusting(&[&ca], Protocol::Http1);
    let (status, answer) = post(
        &client,
        &format!("https://{webhook}/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(server.exit_code(), Some(0));
}

/// `serve` on loopback without a certificate, so that it makes one in `cert_dir`,
/// plus `extra` flags.
fn serve_generating(cert_dir: &Path, extra: &[&str]) -> Running {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        "--log-format",
        "json",
    ];
    args.extend_from_slice(extra);
    Running::spawn(&args)
}

/// Without --tls-cert, `serve` makes a CA and certificate in --cert-dir, prints a
/// curl command and serves with it (here against the Bookinfo policies, which deny
/// the rule). Ctrl-C (SIGINT) stops it with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_generates_a_certificate_when_none_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("generated");
    let mut server = serve_generating(&cert_dir, &["--policies", "examples/bookinfo"]);
    let (webhook, _admin) = server.addresses();
    let curl = server.stdout_line(|l| l.contains("curl"));
    let ca_path = cert_dir.join("ca.crt");
    assert!(
        curl.contains(&format!("--cacert {}", ca_path.display())),
        "{curl}"
    );
    assert!(
        curl.contains(&format!("https://localhost:{}/validate", webhook.port())),
        "{curl}"
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cert_dir.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let ca = std::fs::read_to_string(&ca_path).unwrap();
    let client = client_trusting(&[&ca], Protocol::Http1);
    let (status, answer) = post(
        &client,
        &format!("https://{webhook}/validate"),
        review_body("25"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");

    server.signal(libc::SIGINT);
    assert_eq!(server.exit_code(), Some(0));
}

/// The README's curl example, as the set-up command serves it: the start-up hint names
/// the same shipped review, and the answer is the one the README shows, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_curl_example_answers_as_shown() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let data_of = |line: &str| -> String {
        let start = line.find("--data @").expect("--data @FILE") + "--data @".len();
        line[start..].split_whitespace().next().unwrap().to_string()
    };
    let curl_at = readme.find("curl --cacert").expect("a curl example");
    let example = &readme[curl_at..];
    let data = data_of(example.lines().find(|l| l.contains("--data @")).unwrap());
    let url = example
        .split_whitespace()
        .find(|w| w.starts_with("https://localhost:8443/"))
        .expect("the webhook URL");
    let path = url.trim_start_matches("https://localhost:8443");
    let json_at = example.find("```json\n").expect("the answer shown") + "```json\n".len();
    let shown = example[json_at..].lines().next().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("generated");
    let mut server = serve_generating(&cert_dir, &["--policies", "examples/bookinfo"]);
    let (webhook, _admin) = server.addresses();
    let hint = server.stdout_line(|l| l.contains("curl"));
    assert_eq!(
        data_of(&hint),
        data,
        "the hint and the README send the same review"
    );
    assert!(
        hint.contains(&format!("https://localhost:{}{path}", webhook.port())),
        "{hint}"
    );

    let ca = std::fs::read_to_string(cert_dir.join("ca.crt")).unwrap();
    let client = client_trusting(&[&ca], Protocol::Http1);
    let answer = client
        .post(format!("https://localhost:{}{path}", webhook.port()))
        .header("Content-Type", "application/json")
        .body(std::fs::read(root.join(&data)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), shown);

    server.signal(libc::SIGINT);
    assert_eq!(server.exit_code(), Some(0));
}

#[test]
fn serve_fails_clearly_on_a_missing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--policies",
            "examples/bookinfo",
            "--tls-cert",
            dir.path().join("nope.crt").to_str().unwrap(),
            "--tls-key",
            dir.path().join("nope.key").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope.crt"), "{stderr}");
}

/// Without --policies, serve watches the cluster: with no usable kubeconfig it
/// says so and exits 1.
#[test]
fn serve_in_cluster_mode_fails_clearly_without_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-kubeconfig");
    let output = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--cert-dir",
            dir.path().join("certs").to_str().unwrap(),
            "--kubeconfig",
            missing.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("reading the kubeconfig") && stderr.contains("no-kubeconfig"),
        "{stderr}"
    );
}

/// A string that must never reach the log: it sits in each review's object.
const CANARY: &str = "canary-spec-3f9e1c";

/// Fixture `number` with its uid replaced and `CANARY` in `spec.exportTo` (a field
/// the decision does not read, so the verdict is the fixture's own).
fn canary_review(number: &str, uid: &str) -> Vec<u8> {
    let mut review = review_json(number);
    review["request"]["uid"] = Value::from(uid);
    review["request"]["object"]["spec"]["exportTo"] = serde_json::json!([CANARY]);
    serde_json::to_vec(&review).unwrap()
}

/// Sends an allowed, a patched, a denied, a wrongly shaped and a non-JSON review
/// (each carrying `CANARY`) and returns the server's stderr up to the last answer's
/// log line.
async fn log_of_canary_reviews(extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ca) = serve_bookinfo(dir.path(), extra);
    let (webhook, admin) = server.addresses();
    assert!(wait_for_status(&format!("http://{admin}/readyz"), 200, 200).await);
    let client = client_trusting(&[&ca], Protocol::Http1);
    let url = |path: &str| format!("https://{webhook}{path}");

    let (status, answer) = post(
        &client,
        &url("/validate"),
        canary_review("10", "uid-allowed"),
    )
    .await;
    assert_eq!(
        (status, &answer["response"]["allowed"]),
        (200, &Value::from(true))
    );
    let (status, answer) = post(&client, &url("/mutate"), canary_review("07", "uid-patched")).await;
    assert_eq!(status, 200);
    assert!(answer["response"]["patch"].is_string(), "{answer}");
    let mut shaped = review_json("10");
    shaped["request"]["uid"] = Value::from("uid-misshapen");
    shaped["request"]["object"]["spec"]["trafficPolicy"]["tls"]["mode"] =
        serde_json::json!({ CANARY: 1 });
    let (status, _) = post(
        &client,
        &url("/validate"),
        serde_json::to_vec(&shaped).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &client,
        &url("/validate"),
        format!("{{\"apiVersion\": \"{CANARY}").into_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, answer) = post(
        &client,
        &url("/validate"),
        canary_review("25", "uid-denied"),
    )
    .await;
    assert_eq!(
        (status, &answer["response"]["allowed"]),
        (200, &Value::from(false))
    );
    server.log_line(|v| v["uid"] == "uid-denied");
    server.signal(libc::SIGTERM);
    assert_eq!(server.exit_code(), Some(0));
    // Everything the process wrote.
    while let Ok(line) = server.stderr.recv_timeout(Duration::from_millis(500)) {
        server.stderr_seen.push(line);
    }
    server.stderr_seen.clone()
}

fn review_line_for<'a>(log: &'a [String], uid: &str) -> Option<&'a String> {
    log.iter().find(|l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v["message"] == "review" && v["uid"] == uid)
    })
}

/// Issue 9, security: no object contents at info level, even with a line for every
/// review; and by default (`--log-reviews changes`) plain allows get no info line
/// while patches and denials do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_carry_no_object_contents_and_plain_allows_are_not_logged_by_default() {
    let all = log_of_canary_reviews(&["--log-reviews", "all"]).await;
    for line in &all {
        assert!(!line.contains(CANARY), "object contents in the log: {line}");
    }
    for uid in ["uid-allowed", "uid-patched", "uid-denied"] {
        assert!(review_line_for(&all, uid).is_some(), "{uid}: {all:#?}");
    }
    assert!(
        all.iter()
            .any(|l| l.contains("uid-misshapen") && l.contains("WARN")),
        "{all:#?}"
    );

    let default = log_of_canary_reviews(&[]).await;
    for line in &default {
        assert!(!line.contains(CANARY), "object contents in the log: {line}");
    }
    assert!(
        review_line_for(&default, "uid-allowed").is_none(),
        "{default:#?}"
    );
    let patched: Value =
        serde_json::from_str(review_line_for(&default, "uid-patched").unwrap()).unwrap();
    assert_eq!(patched["verdict"], "patched");
    assert_eq!(patched["level"], "INFO");
    let denied: Value =
        serde_json::from_str(review_line_for(&default, "uid-denied").unwrap()).unwrap();
    assert_eq!(denied["verdict"], "denied");
    assert_eq!(denied["name"], "reviews");
}

/// A policy file with an object that does not parse stops `serve` at start, and the
/// error names the file, the line and the field at fault by its JSON path.
#[test]
fn broken_policy_error_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.yaml");
    std::fs::write(
        &policies,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: a}\nspec:\n  mtls:\n    mode: [STRICT]\n",
    )
    .unwrap();
    let certs = dir.path().join("certs");
    let mut server = Running::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--cert-dir",
        certs.to_str().unwrap(),
        "--policies",
        policies.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    let failed = server.log_line(|v| v["level"] == "ERROR");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "{}:1: PeerAuthentication default: spec.mtls.mode: invalid type: sequence",
            policies.display()
        )),
        "{failed}"
    );
    assert_ne!(server.exit_code(), Some(0));
}

/// The three files of a generated bundle, byte for byte.
fn bundle_bytes(dir: &Path) -> Vec<Vec<u8>> {
    ["ca.crt", "tls.crt", "tls.key"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect()
}

/// A second `serve` whose port is taken fails without touching the first one's
/// generated certificate; a later `serve` reuses that valid pair instead of making
/// another (so a client that trusts the CA keeps trusting it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_that_cannot_bind_leaves_the_generated_certificate_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("generated");
    let mut first = serve_generating(&cert_dir, &["--policies", "examples/bookinfo"]);
    let (webhook, admin) = first.addresses();
    let before = bundle_bytes(&cert_dir);

    // The webhook port is taken (the admin port is free), then the admin port.
    for (listen, admin_listen) in [
        (webhook.to_string(), "127.0.0.1:0".to_string()),
        ("127.0.0.1:0".to_string(), admin.to_string()),
    ] {
        let output = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &listen,
                "--admin-listen",
                &admin_listen,
                "--cert-dir",
                cert_dir.to_str().unwrap(),
                "--policies",
                "examples/bookinfo",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("binding the"), "{stderr}");
        assert_eq!(bundle_bytes(&cert_dir), before, "{listen} {admin_listen}");
    }

    // The first one still serves with the pair it made.
    let ca = String::from_utf8(before[0].clone()).unwrap();
    let client = client_trusting(&[&ca], Protocol::Http1);
    let (status, _) = post(
        &client,
        &format!("https://{webhook}/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200);
    first.signal(libc::SIGTERM);
    assert_eq!(first.exit_code(), Some(0));

    // Started again, it reuses the valid pair: same files, same CA trusted.
    let mut again = serve_generating(&cert_dir, &["--policies", "examples/bookinfo"]);
    let (webhook, _) = again.addresses();
    assert_eq!(bundle_bytes(&cert_dir), before);
    let (status, _) = post(
        &client,
        &format!("https://{webhook}/validate"),
        review_body("10"),
    )
    .await;
    assert_eq!(status, 200);
    again.signal(libc::SIGTERM);
    assert_eq!(again.exit_code(), Some(0));
}

/// A child process other than mtls-guard, killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve` in cluster mode against the soak's stand-in API server
/// (scripts/soak-apiserver.py, which `scripts/soak.sh --cluster` runs for 30
/// minutes): the snapshot follows its watch events, a review's verdict flips with
/// its PeerAuthentication, and an expired watch (410) is listed again. Skipped,
/// saying so, where python3 is missing (CI promises only the Rust toolchain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_follows_the_soak_stand_in_api_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spawned = Command::new("python3")
        .arg(root.join("scripts/soak-apiserver.py"))
        .args(["--port", "0", "--expire-every", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("skipped: no python3 to run scripts/soak-apiserver.py");
        return;
    };
    let stdout = lines_of(child.stdout.take().unwrap());
    let _standin = Killed(child);
    let first = stdout.recv_timeout(Duration::from_secs(20)).unwrap();
    let api = first.strip_prefix("soak-apiserver: ").unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: soak\n  cluster:\n    server: {api}\n\
             users:\n- name: soak\n  user: {{}}\ncontexts:\n- name: soak\n  context:\n    cluster: soak\n    user: soak\n\
             current-context: soak\n"
        ),
    )
    .unwrap();
    let certs = dir.path().join("certs");
    assert!(run_certs(&certs, &["--san", "127.0.0.1"]).status.success());
    let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
    let mut server = Running::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    let (webhook, admin) = server.addresses();
    assert!(
        wait_for_status(&format!("http://{admin}/readyz"), 200, 400).await,
        "ready once every kind is listed"
    );

    let ca = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
    let client = client_trusting(&[&ca], Protocol::Http1);
    let plain = plain_client();
    let state = || async {
        let text = plain.get(format!("{api}/soak/state")).send().await;
        serde_json::from_str::<Value>(&text.unwrap().text().await.unwrap()).unwrap()
    };
    // Review 18 (a DestinationRule with tls DISABLE in bookinfo) is denied while the
    // stand-in's PeerAuthentication says STRICT, allowed while it says PERMISSIVE.
    let (mut denied_strict, mut allowed_permissive, mut counts_equal) = (false, false, false);
    for _ in 0..100 {
        let before = state().await;
        if before["tick_age_ms"].as_u64().unwrap() < 300 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        let url = format!("https://127.0.0.1:{}/validate", webhook.port());
        let (status, answer) = post(&client, &url, review_body("18")).await;
        assert_eq!(status, 200);
        let metrics = plain
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let after = state().await;
        if before["tick"] != after["tick"] {
            continue;
        }
        let allowed = answer["response"]["allowed"].as_bool().unwrap();
        match before["peerauthentication_mode"].as_str().unwrap() {
            "STRICT" => denied_strict |= !allowed,
            _ => allowed_permissive |= allowed,
        }
        let rules = metric_value(
            &metrics,
            "mtls_guard_snapshot_objects{kind=\"DestinationRule\"}",
        );
        counts_equal |= rules == before["counts"]["destinationrules"].as_f64();
        let relisted = metric_value(
            &metrics,
            "mtls_guard_watch_events_total{kind=\"DestinationRule\",type=\"relist\"}",
        );
        if denied_strict && allowed_permissive && counts_equal && relisted >= Some(2.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "the snapshot did not follow the stand-in (denied while STRICT: {denied_strict}, \
         allowed while PERMISSIVE: {allowed_permissive}, DestinationRule count seen equal: {counts_equal}; \
         the DestinationRule watch expires at tick 3 and must be listed again)"
    );
}

/// Every input of the `admission` fuzz corpus (fuzz/README.md: 1,550 bodies made by
/// libFuzzer from the captured reviews: truncated, spliced, wrong types, bytes that
/// are not UTF-8) sent over TLS to the real binary, to both endpoints, over HTTP/1.1
/// and HTTP/2 alternately: each gets exactly the answer the pure review function
/// gives the same body (an AdmissionReview, or an HTTP error with a JSON message),
/// and the server is still ready and serving at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_corpus_bodies_over_https_get_the_pure_functions_answers() {
    use mtls_guard::admission::{review, Endpoint};
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/admission");
    let mut inputs: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() > 1000,
        "the committed corpus: {}",
        inputs.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let (mut server, ca) = serve_bookinfo(dir.path(), &[]);
    let (webhook, admin) = server.addresses();
    let clients = [
        client_trusting(&[&ca], Protocol::Http1),
        client_trusting(&[&ca], Protocol::Http2),
    ];
    let snapshot = mtls_guard::snapshot::Snapshot::from_objects(bookinfo_objects());
    let settings = mtls_guard::settings::Settings::default();
    let (mut answers, mut http_errors) = (0, 0);
    for (i, path) in inputs.iter().enumerate() {
        let body = std::fs::read(path).unwrap();
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let url = format!("https://127.0.0.1:{}/{}", webhook.port(), endpoint.as_str());
            let resp = clients[i % 2]
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let status = resp.status().as_u16();
            let answer = resp.bytes().await.unwrap();
            let expected = review(&snapshot, &settings, endpoint, &body);
            let shown = String::from_utf8_lossy(&answer);
            assert_eq!(
                answer.as_ref(),
                expected.body.as_slice(),
                "{} to {url}: status {status}",
                path.display()
            );
            let value: Value = serde_json::from_slice(&answer)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {shown}", path.display()));
            match status {
                200 => {
                    answers += 1;
                    assert!(value["response"]["allowed"].is_boolean(), "{shown}");
                    assert!(value["response"]["uid"].is_string(), "{shown}");
                }
                400 | 415 | 422 => {
                    http_errors += 1;
                    assert!(
                        message_of(&value).is_some_and(|m| !m.is_empty()),
                        "{}: {status} without a message: {shown}",
                        path.display()
                    );
                }
                other => panic!("{}: status {other}: {shown}", path.display()),
            }
        }
    }
    // The corpus holds both sorts, so both paths were exercised.
    assert!(
        answers > 0 && http_errors > 0,
        "{answers} answers, {http_errors} errors"
    );
    let ready = plain_client()
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "still ready after the corpus");
    server.signal(libc::SIGTERM);
    assert_eq!(server.exit_code(), Some(0));
}
