//! A stand-in Kubernetes API server for kube's own client: a `tower` service
//! handed to `kube::Client::new`, answering with the responses captured from a
//! real kube-apiserver (tests/fixtures/apiserver, bodies unchanged, with the
//! status and content type of their `.meta` sidecar).
//!
//! Each route (a path, and whether the request is a watch or aggregated
//! discovery) has a queue of replies. When it runs dry, a list or discovery
//! request gets the last reply again, and a watch stays open with nothing to
//! say, as a real server's does between events. Paths with no route get the
//! captured plain-text 404 of an API that is not served. The server can also be
//! made unreachable (every request fails to connect) and drop a watch's
//! connection mid-stream.
#![allow(dead_code)]

mod running;
#[allow(unused_imports)] // Not every test file drives the server.
pub use running::*;

use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn apiserver_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apiserver")
}

/// The captured file whose name starts with `NN-`.
pub fn fixture_path(number: &str) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(apiserver_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(&format!("{number}-")) && !name.ends_with(".meta")
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 1, "one fixture numbered {number}");
    names.remove(0)
}

pub fn fixture_bytes(number: &str) -> Vec<u8> {
    std::fs::read(fixture_path(number)).unwrap()
}

pub fn fixture_json(number: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(number)).unwrap()
}

/// The lines (watch events) of a captured watch stream.
pub fn watch_lines(number: &str) -> Vec<String> {
    String::from_utf8(fixture_bytes(number))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A watch event line made from a captured object.
pub fn event_line(kind: &str, object: &Value) -> String {
    serde_json::json!({ "type": kind, "object": object }).to_string()
}

/// Item `name` of captured list `number`, with the type a watch event carries.
pub fn list_item(number: &str, name: &str, api_version: &str, kind: &str) -> Value {
    let list = fixture_json(number);
    let mut item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} in fixture {number}"))
        .clone();
    item["apiVersion"] = Value::from(api_version);
    item["kind"] = Value::from(kind);
    item
}

/// The status line and content type recorded beside a captured body.
fn meta(number: &str) -> (u16, String) {
    let path = fixture_path(number);
    let meta_path = path.with_extension("meta");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} in {}", meta_path.display()))
            .to_string()
    };
    let status = field("status").split(' ').nth(1).unwrap().parse().unwrap();
    (status, field("content-type"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Get,
    Watch,
    /// `GET /apis` asking for aggregated discovery.
    Aggregated,
}

/// What a route answers.
pub enum Reply {
    /// A captured response as it was sent.
    Captured(&'static str),
    /// A body derived from a captured one (said where used), 200 JSON.
    Json(Value),
    /// A JSON body derived from a captured one (said where used), with this status.
    Status(u16, Value),
    /// A watch stream: these lines, then the end of the stream.
    Lines(Vec<String>),
    /// A watch stream: these lines, then what the test sends, until it drops the sender.
    Live(Vec<String>, mpsc::UnboundedReceiver<String>),
    /// A watch stream: these lines, then what the test sends; when it drops the
    /// sender, the connection breaks (a body error, as a reset connection gives).
    Dropped(Vec<String>, mpsc::UnboundedReceiver<String>),
    /// A watch stream that stays open with nothing to say.
    Quiet,
    /// The reply, once the test opens the gate.
    Gated(oneshot::Receiver<()>, Box<Reply>),
}

impl Reply {
    fn repeatable(&self) -> Option<Reply> {
        match self {
            Reply::Captured(n) => Some(Reply::Captured(n)),
            Reply::Json(v) => Some(Reply::Json(v.clone())),
            Reply::Status(code, v) => Some(Reply::Status(*code, v.clone())),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Route {
    queue: VecDeque<Reply>,
    last: Option<Reply>,
}

/// A request as a handler sees it (body read whole).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The value of `key` in the query, percent-decoded.
    pub fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers a request itself (status and JSON body), or passes (`None`) to the routes.
pub type Handler = Arc<dyn Fn(&Request) -> Option<(u16, Value)> + Send + Sync>;

#[derive(Default)]
struct State {
    routes: HashMap<(String, Mode), Route>,
    log: Vec<String>,
    handlers: Vec<Handler>,
    /// Every request fails to connect (and is not logged).
    unreachable: bool,
}

/// The stand-in API server; clones share it.
#[derive(Clone, Default)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
}

/// The list of every kind the cluster source reads, as captured (state of the
/// fixtures' README: Bookinfo with Policy and PeerAuthentication `default`).
pub const LISTS: &[(&str, &str)] = &[
    ("/apis/networking.istio.io/v1/destinationrules", "10"),
    ("/apis/security.istio.io/v1/peerauthentications", "11"),
    ("/apis/authentication.istio.io/v1alpha1/policies", "12"),
    ("/apis/authentication.istio.io/v1alpha1/meshpolicies", "13"),
    ("/api/v1/services", "14"),
    ("/apis/networking.k8s.io/v1/ingresses", "15"),
    ("/apis/networking.k8s.io/v1/ingressclasses", "16"),
    ("/api/v1/namespaces", "17"),
    ("/api/v1/namespaces/istio-system/configmaps", "18"),
];

pub const DESTINATION_RULES: &str = "/apis/networking.istio.io/v1/destinationrules";
pub const PEER_AUTHENTICATIONS: &str = "/apis/security.istio.io/v1/peerauthentications";
pub const POLICIES: &str = "/apis/authentication.istio.io/v1alpha1/policies";
pub const MESH_POLICIES: &str = "/apis/authentication.istio.io/v1alpha1/meshpolicies";
pub const SERVICES: &str = "/api/v1/services";
pub const NAMESPACES: &str = "/api/v1/namespaces";

impl ApiServer {
    /// The captured cluster: aggregated discovery (04, the group list 03 for a
    /// plain `/apis`), every list, and watches with nothing to say.
    pub fn captured() -> ApiServer {
        let api = ApiServer::default();
        api.push("/apis", Mode::Aggregated, Reply::Captured("04"));
        api.push("/apis", Mode::Get, Reply::Captured("03"));
        for (path, number) in LISTS {
            api.push(path, Mode::Get, Reply::Captured(number));
        }
        api
    }

    /// Queues a reply on a route.
    pub fn push(&self, path: &str, mode: Mode, reply: Reply) {
        let mut state = self.state.lock().unwrap();
        state
            .routes
            .entry((path.to_string(), mode))
            .or_default()
            .queue
            .push_back(reply);
    }

    /// Replaces what a route answers from now on.
    pub fn set(&self, path: &str, mode: Mode, reply: Reply) {
        let mut state = self.state.lock().unwrap();
        let route = state.routes.entry((path.to_string(), mode)).or_default();
        route.queue.clear();
        route.last = None;
        route.queue.push_back(reply);
    }

    /// A watch of `path` that streams what the test sends from now on.
    pub fn live_watch(&self, path: &str) -> mpsc::UnboundedSender<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.push(path, Mode::Watch, Reply::Live(Vec::new(), rx));
        tx
    }

    /// Answers requests before the routes do: writes, and reads a test keeps state for.
    pub fn handle(
        &self,
        handler: impl Fn(&Request) -> Option<(u16, Value)> + Send + Sync + 'static,
    ) {
        self.state.lock().unwrap().handlers.push(Arc::new(handler));
    }

    /// From now on, every request fails as a refused connection does (`false`:
    /// answered again).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.state.lock().unwrap().unreachable = unreachable;
    }

    /// A watch of `path` that streams what the test sends from now on, and breaks
    /// the connection when the sender is dropped.
    pub fn droppable_watch(&self, path: &str) -> mpsc::UnboundedSender<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.push(path, Mode::Watch, Reply::Dropped(Vec::new(), rx));
        tx
    }

    /// Every request so far, as `GET path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// The requests to `path` (lists and watches), in order.
    pub fn requests_to(&self, path: &str) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.split('?').next() == Some(&format!("GET {path}")))
            .collect()
    }

    /// A kube client whose every request this server answers.
    pub fn client(&self) -> kube::Client {
        let this = self.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let this = this.clone();
            async move {
                if this.state.lock().unwrap().unreachable {
                    let refused = std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "connection refused (stand-in API server unreachable)",
                    );
                    return Err(BoxError::from(refused));
                }
                Ok(this.answer(req).await)
            }
        });
        kube::Client::new(service, "default")
    }

    async fn answer(&self, req: http::Request<kube::client::Body>) -> http::Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let method = req.method().to_string();
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = match req.into_body().collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => Vec::new(),
        };
        let request = Request {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type,
            body,
        };
        let handlers = self.state.lock().unwrap().handlers.clone();
        for handler in handlers {
            if let Some((status, value)) = handler(&request) {
                self.state
                    .lock()
                    .unwrap()
                    .log
                    .push(format!("{method} {path}?{query}"));
                return full(status, "application/json", value.to_string().into_bytes());
            }
        }
        let mode = if query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1")
        {
            Mode::Watch
        } else if accept.contains("as=APIGroupDiscoveryList") {
            Mode::Aggregated
        } else {
            Mode::Get
        };
        let reply = {
            let mut state = self.state.lock().unwrap();
            state.log.push(format!("{method} {path}?{query}"));
            match state.routes.get_mut(&(path.clone(), mode)) {
                Some(route) => match route.queue.pop_front() {
                    Some(reply) => {
                        if let Some(again) = reply.repeatable() {
                            route.last = Some(again);
                        }
                        Some(reply)
                    }
                    None => route.last.as_ref().and_then(Reply::repeatable),
                },
                None => None,
            }
        };
        let reply = match (reply, mode) {
            (Some(reply), _) => reply,
            // A watch with nothing to say stays open.
            (None, Mode::Watch) => Reply::Quiet,
            // What the API server answers for a group version it does not serve.
            (None, _) => Reply::Captured("25"),
        };
        respond(reply).await
    }
}

fn respond(reply: Reply) -> futures::future::BoxFuture<'static, http::Response<Body>> {
    Box::pin(async move {
        match reply {
            Reply::Captured(number) => {
                let (status, content_type) = meta(number);
                full(status, &content_type, fixture_bytes(number))
            }
            Reply::Json(value) => full(200, "application/json", value.to_string().into_bytes()),
            Reply::Status(code, value) => {
                full(code, "application/json", value.to_string().into_bytes())
            }
            Reply::Lines(lines) => {
                let frames = futures::stream::iter(lines.into_iter().map(frame));
                stream(frames.boxed())
            }
            Reply::Live(lines, rx) => {
                let head = futures::stream::iter(lines.into_iter().map(frame));
                let tail = futures::stream::unfold(rx, |mut rx| async move {
                    let line = rx.recv().await?;
                    Some((frame(line), rx))
                });
                stream(head.chain(tail).boxed())
            }
            Reply::Dropped(lines, rx) => {
                let head = futures::stream::iter(lines.into_iter().map(frame));
                let tail = futures::stream::unfold(Some(rx), |rx| async move {
                    let mut rx = rx?;
                    match rx.recv().await {
                        Some(line) => Some((frame(line), Some(rx))),
                        None => {
                            let reset = std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "connection reset by peer (stand-in API server)",
                            );
                            Some((Err(BoxError::from(reset)), None))
                        }
                    }
                });
                stream(head.chain(tail).boxed())
            }
            Reply::Quiet => stream(futures::stream::pending().boxed()),
            Reply::Gated(gate, reply) => {
                let _ = gate.await;
                respond(*reply).await
            }
        }
    })
}

fn frame(line: String) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(Bytes::from(line + "\n")))
}

fn full(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(
            http_body_util::Full::new(Bytes::from(body))
                .map_err(|e| match e {})
                .boxed_unsync(),
        )
        .unwrap()
}

fn stream(
    frames: futures::stream::BoxStream<'static, Result<Frame<Bytes>, BoxError>>,
) -> http::Response<Body> {
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(StreamBody::new(frames).boxed_unsync())
        .unwrap()
}
