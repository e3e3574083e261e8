//! Shared pieces of the server integration tests: fixtures, the Bookinfo snapshot,
//! certificates made at test time, a kubelet-style Secret folder, HTTPS clients.
#![allow(dead_code)]

use mtls_guard::certs::{Authority, ServingPair};
use mtls_guard::model::MeshObject;
use mtls_guard::server::{self, Handle, ServerConfig, SnapshotSource, TlsFiles};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The body of `admission/NN-*.json`, as the API server sent it.
pub fn review_body(number: &str) -> Vec<u8> {
    let dir = fixtures().join("admission");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{number}-"))
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 1, "one fixture numbered {number}");
    std::fs::read(&names[0]).unwrap()
}

pub fn review_json(number: &str) -> Value {
    serde_json::from_slice(&review_body(number)).unwrap()
}

fn list_items(file: &str, api_version: &str, kind: &str) -> Vec<Value> {
    let path = fixtures().join("apiserver").join(file);
    let list: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let mut item = item.clone();
            // Items of a built-in list carry no type of their own.
            item["apiVersion"] = Value::from(api_version);
            item["kind"] = Value::from(kind);
            item
        })
        .collect()
}

/// The contract's Bookinfo scenario (section 7), from the captured API server lists:
/// namespace `bookinfo`, services productpage, reviews, ratings and details on 9080,
/// Policy `default` with `peers: [{mtls: {}}]`, the Ingress backed by productpage, and
/// no Istio ingress gateway (the captured `istio-system` gateway Service is left out).
pub fn bookinfo_values() -> Vec<Value> {
    let mut values = Vec::new();
    values.extend(
        list_items("17-list-namespaces.json", "v1", "Namespace")
            .into_iter()
            .filter(|n| n["metadata"]["name"] == "bookinfo"),
    );
    values.extend(
        list_items("14-list-services.json", "v1", "Service")
            .into_iter()
            .filter(|s| s["metadata"]["namespace"] == "bookinfo"),
    );
    values.extend(list_items(
        "15-list-ingresses.json",
        "networking.k8s.io/v1",
        "Ingress",
    ));
    values.extend(list_items(
        "12-list-policies-v1alpha1.json",
        "authentication.istio.io/v1alpha1",
        "Policy",
    ));
    assert_eq!(values.len(), 7, "namespace, 4 services, ingress, policy");
    values
}

pub fn bookinfo_objects() -> Vec<MeshObject> {
    bookinfo_values()
        .into_iter()
        .map(|v| MeshObject::from_value(v).unwrap().unwrap())
        .collect()
}

/// A CA and a serving pair for 127.0.0.1 and localhost.
pub struct TestCa {
    pub authority: Authority,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        TestCa {
            authority: Authority::generate(name, 10).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.authority.cert_pem().to_string()
    }

    pub fn serving_pair(&self) -> ServingPair {
        self.authority
            .issue(&["127.0.0.1".into(), "localhost".into()], 1)
            .unwrap()
    }
}

/// A folder laid out like a Secret volume that kubelet maintains: `tls.crt` and
/// `tls.key` are symlinks into `..data`, itself a symlink to a timestamped folder;
/// an update writes a new timestamped folder and renames a new `..data` over the old.
pub struct SecretDir {
    pub dir: tempfile::TempDir,
    generation: std::sync::atomic::AtomicU32,
}

impl SecretDir {
    pub fn new(pair: &ServingPair) -> SecretDir {
        let dir = tempfile::tempdir().unwrap();
        let this = SecretDir {
            dir,
            generation: Default::default(),
        };
        this.update(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes());
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), this.path().join(name)).unwrap();
        }
        this
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.path().join("tls.crt"),
            key: self.path().join("tls.key"),
        }
    }

    /// Swaps in new contents the way kubelet's atomic writer does.
    pub fn update(&self, cert: &[u8], key: &[u8]) {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let old = std::fs::read_link(self.path().join("..data")).ok();
        let name = format!("..2026_01_01_00_00_{generation:03}.{}", std::process::id());
        let new_dir = self.path().join(&name);
        std::fs::create_dir(&new_dir).unwrap();
        std::fs::write(new_dir.join("tls.crt"), cert).unwrap();
        std::fs::write(new_dir.join("tls.key"), key).unwrap();
        let tmp = self.path().join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.path().join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.path().join(old)).unwrap();
        }
    }
}

/// A server on 127.0.0.1 with `source`, serving a pair from `ca` out of a kubelet-style folder.
pub struct TestServer {
    pub handle: Handle,
    pub ca: TestCa,
    pub secret: SecretDir,
}

impl TestServer {
    pub async fn start(source: SnapshotSource) -> TestServer {
        Self::start_with(source, |_| {}).await
    }

    pub async fn start_with(
        source: SnapshotSource,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let ca = TestCa::new("test CA");
        let secret = SecretDir::new(&ca.serving_pair());
        let mut config = ServerConfig::local(secret.files(), source);
        tweak(&mut config);
        let handle = server::start(config).await.expect("server starts");
        TestServer { handle, ca, secret }
    }

    pub async fn bookinfo() -> TestServer {
        Self::start(SnapshotSource::Objects(bookinfo_objects())).await
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}{path}",
            self.handle.webhook_addr().port()
        )
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.handle.admin_addr().port())
    }

    /// An HTTP/1.1 client that trusts only this server's test CA.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&[&self.ca.pem()], Protocol::Http1)
    }

    /// A client that negotiates HTTP/2 through ALPN.
    pub fn h2_client(&self) -> reqwest::Client {
        client_trusting(&[&self.ca.pem()], Protocol::Http2)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A client whose only roots are `cas`.
pub fn client_trusting(cas: &[&str], protocol: Protocol) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .https_only(true)
        .timeout(Duration::from_secs(20));
    for ca in cas {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder,
    };
    builder.build().unwrap()
}

pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs `body` and returns the status and the JSON answer (Null when not JSON).
pub async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The value of one sample line of the metrics text, e.g.
/// `mtls_guard_reviews_total{endpoint="validate",verdict="denied",kind="DestinationRule"}`.
pub fn metric_value(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
    })
}

/// A raw TLS connection to the webhook port (HTTP/1.1 spoken by hand), for requests
/// that must stay in flight.
pub async fn raw_tls(
    addr: std::net::SocketAddr,
    ca_pem: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw_tls_alpn(addr, ca_pem, &[]).await
}

/// A raw TLS connection offering the ALPN protocols `alpn` (e.g. `h2`).
pub async fn raw_tls_alpn(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Polls `url` until it answers `status` (at most `tries` times, 50 ms apart).
pub async fn wait_for_status(url: &str, status: u16, tries: usize) -> bool {
    let client = plain_client();
    for _ in 0..tries {
        if let Ok(resp) = client.get(url).send().await {
            if resp.status().as_u16() == status {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The human message of an error answer: `error`, or the AdmissionReview's status message.
pub fn message_of(answer: &Value) -> Option<String> {
    answer
        .get("error")
        .or_else(|| answer.pointer("/response/status/message"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Polls the metrics text at `url` until `sample` has `value` (bounded).
pub async fn wait_for_metric_at(url: &str, sample: &str, value: f64) -> bool {
    let client = plain_client();
    for _ in 0..300 {
        if let Ok(resp) = client.get(url).send().await {
            if let Ok(text) = resp.text().await {
                if metric_value(&text, sample) == Some(value) {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Sends `POST path` with only the first half of `body` over a new TLS connection
/// and returns, once the server counts the request in flight (seen at
/// `metrics_url`), the connection and the half still to send.
pub async fn half_sent_review(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    path: &str,
    body: &[u8],
    metrics_url: &str,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
) {
    use tokio::io::AsyncWriteExt;
    let mut tls = raw_tls(addr, ca_pem).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    tls.write_all(first).await.unwrap();
    tls.flush().await.unwrap();
    assert!(
        wait_for_metric_at(metrics_url, "mtls_guard_requests_in_flight", 1.0).await,
        "the server is reading the half-sent request"
    );
    (tls, rest.to_vec())
}

/// The series of a table of docs/metrics.md, with their type, expanded: `{a=x|y, b=z}`
/// gives one `name{a="x",b="z"}` per combination; a label without values
/// (`{version}`) is kept as a prefix `name{version=` to match any value. `section`:
/// the table under that `## ` heading; `None`: the one before the first heading.
pub fn documented_series(section: Option<&str>) -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"),
    )
    .unwrap();
    let mut parts = doc.split("\n## ");
    let text = match section {
        None => parts.next().unwrap_or(""),
        Some(heading) => parts
            .find(|p| p.starts_with(heading))
            .unwrap_or_else(|| panic!("no section {heading:?} in docs/metrics.md")),
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `mtls_guard_")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let series = cells[0].trim_start_matches("| `").trim_end_matches('`');
        let kind = cells[1].to_string();
        let series = series.replace("\\|", "|");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n.to_string(), l.trim_end_matches('}').to_string()),
            None => (series.clone(), String::new()),
        };
        let mut expanded = vec![String::new()];
        for label in labels.split(", ").filter(|l| !l.is_empty()) {
            let Some((key, values)) = label.split_once('=') else {
                expanded = vec![format!("{label}=")];
                break;
            };
            expanded = expanded
                .iter()
                .flat_map(|prefix| {
                    values.split('|').map(move |v| {
                        let sep = if prefix.is_empty() { "" } else { "," };
                        format!("{prefix}{sep}{key}=\"{v}\"")
                    })
                })
                .collect();
        }
        for labels in expanded {
            let series = match (labels.is_empty(), labels.ends_with('=')) {
                (true, _) => name.clone(),
                (false, true) => format!("{name}{{{labels}"),
                (false, false) => format!("{name}{{{labels}}}"),
            };
            out.push((series, kind.clone()));
        }
    }
    out
}
