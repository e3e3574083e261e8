//! The reconcilers of contract section 9 against kube's own client: the real
//! server in cluster mode, fed by the captured API-server responses
//! (tests/cluster_support), with the writes answered by an in-memory store
//! that behaves as kube-apiserver does for them (resourceVersions, preconditions,
//! JSON Patch `test`, the Lease's server-side apply conflict). Write responses and
//! error Statuses are built in the API's shapes (none of them is captured).
//!
//! The captured cluster is Bookinfo with PeerAuthentication `default` STRICT and
//! productpage behind a plain Ingress; its `istio-ingressgateway` Service is taken
//! as absent (`--ingress-gateway absent`), so productpage is exempt (case (a)).

mod cluster_support;
mod server_support;

use cluster_support::*;
use mtls_guard::reconcile::cluster::ReconcileOptions;
use mtls_guard::server::SnapshotSource;
use mtls_guard::settings::IngressGateway;
use mtls_guard::source::ClusterConfig;
use serde_json::{json, Value};
use server_support::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

const PA_NAME: &str = "mtls-guard-exempt-productpage";
const PA_PATH: &str =
    "/apis/security.istio.io/v1/namespaces/bookinfo/peerauthentications/mtls-guard-exempt-productpage";
const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/mtls-guard/leases/mtls-guard-reconcilers";
const INGRESSES: &str = "/apis/networking.k8s.io/v1/ingresses";

/// The writable part of the stand-in API server.
#[derive(Default)]
struct Store {
    rv: u64,
    /// Objects by their item path.
    objects: BTreeMap<String, Value>,
    /// Every write: method, path, content type, body.
    writes: Vec<(String, String, String, Value)>,
    /// Watches the test streams the store's changes into, by resource plural.
    watches: BTreeMap<&'static str, UnboundedSender<String>>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Store>>);

fn status(code: u16, reason: &str, message: String) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// `group/resource` as the API server names it in messages.
fn resource_name(path: &[&str]) -> String {
    match path {
        ["api", _, ..] => path_plural(path).to_string(),
        ["apis", group, ..] => format!("{}.{group}", path_plural(path)),
        _ => String::new(),
    }
}

/// The plural of `/api(s)/.../namespaces/NS/PLURAL[/NAME]` or `/apis/G/V/PLURAL`.
fn path_plural<'a>(path: &[&'a str]) -> &'a str {
    match path.iter().position(|s| *s == "namespaces") {
        Some(i) => path.get(i + 2).copied().unwrap_or(""),
        None => path.last().copied().unwrap_or(""),
    }
}

const WRITABLE: &[&str] = &[
    "peerauthentications",
    "policies",
    "destinationrules",
    "leases",
    "events",
];

impl Fake {
    fn install(&self, api: &ApiServer) {
        let this = self.clone();
        api.handle(move |req| this.answer(req));
    }

    fn put(&self, path: &str, object: Value) {
        self.0
            .lock()
            .unwrap()
            .objects
            .insert(path.to_string(), object);
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().unwrap().objects.get(path).cloned()
    }

    fn stream(&self, plural: &'static str, tx: UnboundedSender<String>) {
        self.0.lock().unwrap().watches.insert(plural, tx);
    }

    /// The writes of `method` to paths containing `part`.
    fn writes(&self, method: &str, part: &str) -> Vec<(String, Value)> {
        self.0
            .lock()
            .unwrap()
            .writes
            .iter()
            .filter(|(m, p, _, _)| m == method && p.contains(part))
            .map(|(_, p, _, b)| (p.clone(), b.clone()))
            .collect()
    }

    /// The Events recorded, as (reason, regarding kind/name, reporting instance).
    fn events(&self) -> Vec<(String, String, String)> {
        self.writes("POST", "/events")
            .into_iter()
            .map(|(_, e)| {
                (
                    e["reason"].as_str().unwrap_or("").to_string(),
                    format!(
                        "{}/{}",
                        e["regarding"]["kind"].as_str().unwrap_or(""),
                        e["regarding"]["name"].as_str().unwrap_or("")
                    ),
                    e["reportingInstance"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn answer(&self, req: &Request) -> Option<(u16, Value)> {
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let plural = path_plural(&segments);
        if !WRITABLE.contains(&plural) {
            return None;
        }
        let named = segments.last() != Some(&plural);
        let mut store = self.0.lock().unwrap();
        if req.method != "GET" {
            let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            store.writes.push((
                req.method.clone(),
                req.path.clone(),
                req.content_type.clone(),
                body,
            ));
        }
        let what = resource_name(&segments);
        match (req.method.as_str(), named) {
            ("GET", false) => {
                // The cluster source's lists and watches are the captured ones.
                let selector = req.param("labelSelector")?;
                let (key, value) = selector.split_once('=')?;
                let items: Vec<Value> = store
                    .objects
                    .iter()
                    .filter(|(p, o)| {
                        p.contains(&format!("/{plural}/")) && o["metadata"]["labels"][key] == value
                    })
                    .map(|(_, o)| o.clone())
                    .collect();
                let kind = match plural {
                    "policies" => "PolicyList",
                    _ => "PeerAuthenticationList",
                };
                let api_version = format!("{}/{}", segments[1], segments[2]);
                Some((
                    200,
                    json!({"apiVersion": api_version, "items": items, "kind": kind,
                           "metadata": {"continue": "", "resourceVersion": store.rv.to_string()}}),
                ))
            }
            ("GET", true) => {
                let name = segments.last().unwrap();
                Some(match store.objects.get(&req.path) {
                    Some(o) => (200, o.clone()),
                    None => status(404, "NotFound", format!("{what} \"{name}\" not found")),
                })
            }
            ("POST", false) => {
                let mut object = req.json();
                let name = object["metadata"]["name"].as_str()?.to_string();
                let path = format!("{}/{name}", req.path);
                if store.objects.contains_key(&path) {
                    return Some(status(
                        409,
                        "AlreadyExists",
                        format!("{what} \"{name}\" already exists"),
                    ));
                }
                store.rv += 1;
                let rv = store.rv;
                let meta = &mut object["metadata"];
                meta["resourceVersion"] = json!(rv.to_string());
                meta["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
                meta["creationTimestamp"] = json!("2026-12-02T15:00:00Z");
                meta["generation"] = json!(1);
                store.objects.insert(path, object.clone());
                store.notify(plural, "ADDED", &object);
                Some((201, object))
            }
            ("PUT", true) => {
                let mut object = req.json();
                let name = segments.last().unwrap();
                let Some(stored) = store.objects.get(&req.path) else {
                    return Some(status(
                        404,
                        "NotFound",
                        format!("{what} \"{name}\" not found"),
                    ));
                };
                if object["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
                    return Some(status(409, "Conflict", format!("Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again")));
                }
                store.rv += 1;
                object["metadata"]["resourceVersion"] = json!(store.rv.to_string());
                store.objects.insert(req.path.clone(), object.clone());
                store.notify(plural, "MODIFIED", &object);
                Some((200, object))
            }
            ("DELETE", true) => {
                let name = segments.last().unwrap();
                let Some(stored) = store.objects.get(&req.path).cloned() else {
                    return Some(status(
                        404,
                        "NotFound",
                        format!("{what} \"{name}\" not found"),
                    ));
                };
                let wanted = req.json()["preconditions"]["resourceVersion"].clone();
                let has = stored["metadata"]["resourceVersion"].clone();
                if !wanted.is_null() && wanted != has {
                    return Some(status(409, "Conflict", format!("Operation cannot be fulfilled on {what} \"{name}\": Precondition failed: ResourceVersion in precondition: {wanted}, ResourceVersion in object meta: {has}")));
                }
                store.objects.remove(&req.path);
                store.rv += 1;
                let mut gone = stored;
                gone["metadata"]["resourceVersion"] = json!(store.rv.to_string());
                store.notify(plural, "DELETED", &gone);
                Some((200, gone))
            }
            ("PATCH", true) => {
                let name = segments.last().unwrap().to_string();
                let body = req.json();
                let exists = store.objects.contains_key(&req.path);
                let mut object = store.objects.get(&req.path).cloned().unwrap_or_else(|| {
                    json!({"metadata": {"name": name, "namespace": segments[segments.len() - 3]}})
                });
                if req.content_type.starts_with("application/json-patch+json") {
                    if !exists {
                        return Some(status(
                            404,
                            "NotFound",
                            format!("{what} \"{name}\" not found"),
                        ));
                    }
                    let patch: json_patch::Patch = serde_json::from_value(body).ok()?;
                    if let Err(e) = json_patch::patch(&mut object, &patch) {
                        // What kube-apiserver answers when a JSON Patch cannot be applied.
                        let (code, mut answer) = status(
                            422,
                            "Invalid",
                            "the server rejected our request due to an error in our request"
                                .to_string(),
                        );
                        answer["details"] = json!({"causes": [{"reason": "UnexpectedServerResponse", "message": e.to_string()}]});
                        return Some((code, answer));
                    }
                } else {
                    if req.content_type.starts_with("application/apply-patch") && plural == "leases"
                    {
                        // Server-side apply: another manager's holderIdentity is a conflict.
                        let held = object["spec"]["holderIdentity"].clone();
                        let wanted = body["spec"]["holderIdentity"].clone();
                        if !held.is_null() && !wanted.is_null() && held != wanted {
                            return Some(status(409, "Conflict", format!("Apply failed with 1 conflict: conflict with \"kube-lease-manager-{}\": .spec.holderIdentity", held.as_str().unwrap_or(""))));
                        }
                    }
                    if !exists && !req.content_type.starts_with("application/apply-patch") {
                        return Some(status(
                            404,
                            "NotFound",
                            format!("{what} \"{name}\" not found"),
                        ));
                    }
                    let mut body = body;
                    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("resourceVersion");
                    }
                    json_patch::merge(&mut object, &body);
                }
                store.rv += 1;
                object["metadata"]["resourceVersion"] = json!(store.rv.to_string());
                store.objects.insert(req.path.clone(), object.clone());
                store.notify(plural, "MODIFIED", &object);
                Some((200, object))
            }
            _ => None,
        }
    }
}

impl Store {
    fn notify(&self, plural: &str, kind: &str, object: &Value) {
        if let Some(tx) = self.watches.get(plural) {
            let _ = tx.send(event_line(kind, object));
        }
    }
}

/// The captured cluster, its writes answered by `fake`, with live watches for the
/// kinds the tests change: (PeerAuthentications, DestinationRules, Services, Ingresses).
fn cluster(fake: &Fake) -> (ApiServer, UnboundedSender<String>, UnboundedSender<String>) {
    let api = ApiServer::captured();
    fake.install(&api);
    fake.stream("peerauthentications", api.live_watch(PEER_AUTHENTICATIONS));
    fake.stream("destinationrules", api.live_watch(DESTINATION_RULES));
    let services = api.live_watch(SERVICES);
    let ingresses = api.live_watch(INGRESSES);
    (api, services, ingresses)
}

fn options(identity: &str, exemptions: bool, rules: bool) -> ReconcileOptions {
    ReconcileOptions {
        exemptions,
        rules,
        identity: identity.to_string(),
        lease_duration: Duration::from_secs(2),
        lease_grace: Duration::from_secs(1),
        debounce: Duration::from_millis(100),
        ..ReconcileOptions::off("mtls-guard")
    }
}

async fn start(api: &ApiServer, reconcile: ReconcileOptions) -> TestServer {
    let config = ClusterConfig::new(api.client());
    TestServer::start_with(SnapshotSource::Cluster(Box::new(config)), move |c| {
        c.settings.ingress_gateway = IngressGateway::Absent;
        c.reconcile = reconcile;
    })
    .await
}

/// Polls `check` until it holds (bounded: 20 s).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

async fn metrics(server: &TestServer) -> String {
    plain_client()
        .get(server.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn expected_exemption(selector: Value) -> Value {
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {
            "name": PA_NAME,
            "namespace": "bookinfo",
            "labels": {"app.kubernetes.io/managed-by": "mtls-guard"},
        },
        "spec": {"selector": {"matchLabels": selector}, "mtls": {"mode": "PERMISSIVE"}},
    })
}

fn captured_service(name: &str) -> Value {
    list_item("14", name, "v1", "Service")
}

/// Create, then update when the Service's selector changes, then delete when the
/// Ingress goes (productpage no longer exempt); each write recorded as an Event
/// on the PeerAuthentication and counted.
#[tokio::test]
async fn s9_exemption_is_created_updated_and_deleted_with_events() {
    let fake = Fake::default();
    let (api, services, ingresses) = cluster(&fake);
    let server = start(&api, options("replica-a", true, false)).await;

    until("the exemption is created", || {
        !fake.writes("POST", "/peerauthentications").is_empty()
    })
    .await;
    let created = fake.writes("POST", "/peerauthentications");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(
        created[0],
        (
            "/apis/security.istio.io/v1/namespaces/bookinfo/peerauthentications".to_string(),
            expected_exemption(json!({"app": "productpage"}))
        )
    );
    until("the create is recorded", || {
        fake.events().iter().any(|(r, o, _)| {
            r == "ExemptionCreated" && o == "PeerAuthentication/mtls-guard-exempt-productpage"
        })
    })
    .await;
    let stored_rv = fake.get(PA_PATH).unwrap()["metadata"]["resourceVersion"].clone();

    // The Service now selects only v1's pods: the exemption follows.
    let mut service = captured_service("productpage");
    service["metadata"]["resourceVersion"] = json!("760");
    service["spec"]["selector"] = json!({"app": "productpage", "version": "v1"});
    services.send(event_line("MODIFIED", &service)).unwrap();
    until("the exemption is updated", || {
        !fake.writes("PUT", PA_PATH).is_empty()
    })
    .await;
    let updated = &fake.writes("PUT", PA_PATH)[0].1;
    assert_eq!(updated["metadata"]["resourceVersion"], stored_rv);
    assert_eq!(
        updated["spec"]["selector"]["matchLabels"],
        json!({"app": "productpage", "version": "v1"})
    );
    assert_eq!(
        updated["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "mtls-guard"
    );

    // The Ingress goes: productpage is no longer exempt, the exemption is deleted
    // with its current resourceVersion as precondition.
    let stored_rv = fake.get(PA_PATH).unwrap()["metadata"]["resourceVersion"].clone();
    let mut ingress = list_item("15", "bookinfo", "networking.k8s.io/v1", "Ingress");
    ingress["metadata"]["resourceVersion"] = json!("770");
    ingresses.send(event_line("DELETED", &ingress)).unwrap();
    until("the exemption is deleted", || fake.get(PA_PATH).is_none()).await;
    let deleted = fake.writes("DELETE", PA_PATH);
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].1["preconditions"]["resourceVersion"], stored_rv);
    until("the update and the delete are recorded", || {
        let reasons: Vec<String> = fake.events().into_iter().map(|(r, _, _)| r).collect();
        reasons == ["ExemptionCreated", "ExemptionUpdated", "ExemptionDeleted"]
    })
    .await;
    let text = metrics(&server).await;
    for action in ["create", "update", "delete"] {
        let series = format!(
            "mtls_guard_reconcile_exemption_writes_total{{action=\"{action}\",result=\"ok\"}}"
        );
        assert_eq!(metric_value(&text, &series), Some(1.0), "{series}\n{text}");
    }
    assert_eq!(
        metric_value(&text, "mtls_guard_reconcile_leader"),
        Some(1.0)
    );
    // Nothing else was written to the exemption kinds, and no rule was patched.
    assert_eq!(fake.writes("POST", "/peerauthentications").len(), 1);
    assert!(fake.writes("PATCH", "/destinationrules").is_empty());
    server.handle.stop().await;
}

/// A cluster that never stays quiet for the debounce time is still reconciled: with
/// an event every 30 ms (debounce 100 ms), the exemption follows a Service's new
/// selector within ten debounce times, while the events go on.
#[tokio::test]
async fn s9_a_steady_stream_of_changes_does_not_hold_passes_back() {
    let fake = Fake::default();
    let (api, services, _ingresses) = cluster(&fake);
    let server = start(&api, options("replica-a", true, false)).await;
    until("the exemption is created", || {
        !fake.writes("POST", "/peerauthentications").is_empty()
    })
    .await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = tokio::spawn({
        let (services, stop) = (services.clone(), stop.clone());
        async move {
            let mut reviews = captured_service("reviews");
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                sent += 1;
                reviews["metadata"]["resourceVersion"] = json!((10_000 + sent).to_string());
                reviews["metadata"]["labels"]["churn"] = json!(sent.to_string());
                services.send(event_line("MODIFIED", &reviews)).unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            sent
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut service = captured_service("productpage");
    service["metadata"]["resourceVersion"] = json!("760");
    service["spec"]["selector"] = json!({"app": "productpage", "version": "v1"});
    services.send(event_line("MODIFIED", &service)).unwrap();
    let sent_at = std::time::Instant::now();
    // Bounded well below the churn's length: the pass must not wait for quiet.
    let mut updated = false;
    while sent_at.elapsed() < Duration::from_secs(4) {
        if !fake.writes("PUT", PA_PATH).is_empty() {
            updated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = sent_at.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = churn.await.unwrap();
    assert!(
        updated,
        "no pass within {waited:?} while events kept coming ({sent} sent)"
    );
    assert_eq!(
        fake.writes("PUT", PA_PATH)[0].1["spec"]["selector"]["matchLabels"],
        json!({"app": "productpage", "version": "v1"})
    );
    server.handle.stop().await;
}

/// An object of the exemption's name without the managed-by label is never
/// changed or deleted; a warning Event says so.
#[tokio::test]
async fn s9_an_object_without_the_label_is_left_alone() {
    let fake = Fake::default();
    let (api, _services, _ingresses) = cluster(&fake);
    let theirs = json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": PA_NAME, "namespace": "bookinfo", "resourceVersion": "740",
                     "uid": "5d2f0a52-0000-4000-8000-000000000740",
                     "creationTimestamp": "2026-11-28T01:10:00Z", "labels": {"team": "shop"}},
        "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "mtls": {"mode": "STRICT"}},
    });
    fake.put(PA_PATH, theirs.clone());
    let mut list = fixture_json("11");
    list["items"].as_array_mut().unwrap().push(theirs.clone());
    api.set(PEER_AUTHENTICATIONS, Mode::Get, Reply::Json(list));
    let server = start(&api, options("replica-a", true, false)).await;

    until("the warning Event", || {
        fake.events().iter().any(|(r, o, _)| {
            r == "ExemptionNotManaged" && o == "PeerAuthentication/mtls-guard-exempt-productpage"
        })
    })
    .await;
    assert!(
        wait_for_metric_at(
            &server.admin_url("/metrics"),
            "mtls_guard_reconcile_notices_total{reason=\"ExemptionNotManaged\"}",
            1.0
        )
        .await
    );
    // A few more passes' worth of time: still nothing written to it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        assert!(
            fake.writes(method, "/peerauthentications").is_empty(),
            "{method}"
        );
    }
    assert_eq!(fake.get(PA_PATH), Some(theirs));
    server.handle.stop().await;
}

/// A Service without a selector gets no exemption and a warning Event on the Service.
#[tokio::test]
async fn s9_a_service_without_a_selector_gets_a_warning_event() {
    let fake = Fake::default();
    let (api, _services, _ingresses) = cluster(&fake);
    let mut list = fixture_json("14");
    for item in list["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "productpage" {
            item["spec"].as_object_mut().unwrap().remove("selector");
        }
    }
    api.set(SERVICES, Mode::Get, Reply::Json(list));
    let server = start(&api, options("replica-a", true, false)).await;
    until("the warning Event", || {
        fake.events()
            .iter()
            .any(|(r, o, _)| r == "ExemptionNoSelector" && o == "Service/productpage")
    })
    .await;
    let event = fake
        .writes("POST", "/events")
        .into_iter()
        .map(|(_, e)| e)
        .find(|e| e["reason"] == "ExemptionNoSelector")
        .unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["apiVersion"], "v1");
    assert_eq!(event["regarding"]["namespace"], "bookinfo");
    assert!(
        event["note"].as_str().unwrap().contains("no selector"),
        "{event}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fake.writes("POST", "/peerauthentications").is_empty());
    // Recorded once, not on every pass.
    assert_eq!(fake.events().len(), 1, "{:?}", fake.events());
    server.handle.stop().await;
}

/// A concurrent writer changed the productpage rule before the patch: its `test` of
/// the resourceVersion fails (422), the patch is not sent again as it was; once
/// the watch brings the new version, the rule is judged again and patched.
#[tokio::test]
async fn s9_a_concurrent_writer_makes_the_rule_patch_fail_its_test() {
    let fake = Fake::default();
    let (api, _services, _ingresses) = cluster(&fake);
    let path = "/apis/networking.istio.io/v1/namespaces/bookinfo/destinationrules/productpage";
    // The tutorial's productpage rule (ISTIO_MUTUAL towards an exempt service: a
    // patch to DISABLE), shaped as the captured rules are.
    let mut rule = list_item("10", "ratings", "networking.istio.io/v1", "DestinationRule");
    rule["metadata"]["name"] = json!("productpage");
    rule["metadata"]["resourceVersion"] = json!("735");
    rule["metadata"]["uid"] = json!("2a7d3f1e-0000-4000-8000-000000000735");
    rule["spec"] = json!({"host": "productpage", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                          "subsets": [{"name": "v1", "labels": {"version": "v1"}}]});
    let mut list = fixture_json("10");
    list["items"].as_array_mut().unwrap().push(rule.clone());
    api.set(DESTINATION_RULES, Mode::Get, Reply::Json(list));
    // Someone else's write landed first: the store holds a newer version.
    let mut theirs = rule.clone();
    theirs["metadata"]["resourceVersion"] = json!("900");
    theirs["metadata"]["labels"] = json!({"team": "shop"});
    fake.put(path, theirs.clone());
    let server = start(&api, options("replica-a", false, true)).await;

    until("the first patch", || !fake.writes("PATCH", path).is_empty()).await;
    let first = fake.writes("PATCH", path)[0].1.clone();
    assert_eq!(
        first,
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "735"},
            {"op": "add", "path": "/spec/trafficPolicy/tls/mode", "value": "DISABLE"},
        ])
    );
    assert!(
        wait_for_metric_at(
            &server.admin_url("/metrics"),
            "mtls_guard_reconcile_rule_patches_total{result=\"conflict\"}",
            1.0
        )
        .await
    );
    // Not retried blindly: the snapshot has not changed, so nothing more is sent.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.writes("PATCH", path).len(), 1);
    assert_eq!(
        fake.get(path).unwrap()["spec"]["trafficPolicy"]["tls"]["mode"],
        "ISTIO_MUTUAL"
    );

    // The watch brings the concurrent writer's version: judged again, patched.
    fake.0
        .lock()
        .unwrap()
        .notify("destinationrules", "MODIFIED", &theirs);
    until("the second patch", || fake.writes("PATCH", path).len() == 2).await;
    assert_eq!(fake.writes("PATCH", path)[1].1[0]["value"], "900");
    until("the rule is DISABLE", || {
        fake.get(path).unwrap()["spec"]["trafficPolicy"]["tls"]["mode"] == "DISABLE"
    })
    .await;
    let stored = fake.get(path).unwrap();
    assert_eq!(
        stored["metadata"]["labels"]["team"], "shop",
        "the other writer's change stays"
    );
    until("the patch is recorded", || {
        fake.events()
            .iter()
            .any(|(r, o, _)| r == "RulePatched" && o == "DestinationRule/productpage")
    })
    .await;
    assert!(
        wait_for_metric_at(
            &server.admin_url("/metrics"),
            "mtls_guard_reconcile_rule_patches_total{result=\"ok\"}",
            1.0
        )
        .await
    );
    // The patched version comes back through the watch: nothing left to do.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.writes("PATCH", path).len(), 2);
    server.handle.stop().await;
}

/// Two replicas: only the Lease holder writes; when it stops (releasing the
/// Lease), the other takes over and finds nothing left to do.
#[tokio::test]
async fn s9_only_the_lease_holder_acts() {
    let fake = Fake::default();
    let (api, _services, _ingresses) = cluster(&fake);
    let a = start(&api, options("replica-a", true, true)).await;
    let b = start(&api, options("replica-b", true, true)).await;

    until("one replica holds the Lease", || {
        fake.get(LEASE_PATH)
            .is_some_and(|l| l["spec"]["holderIdentity"].is_string())
    })
    .await;
    let holder = fake.get(LEASE_PATH).unwrap()["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    let (acting, idle) = if holder == "replica-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    until("the exemption is created", || fake.get(PA_PATH).is_some()).await;
    // Both see the same snapshot; give the other one time to (wrongly) act too.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.writes("POST", "/peerauthentications").len(), 1);
    let reporters: Vec<String> = fake.events().into_iter().map(|(_, _, i)| i).collect();
    assert_eq!(reporters, vec![holder.clone()]);
    let (acting_text, idle_text) = (metrics(acting).await, metrics(idle).await);
    assert_eq!(
        metric_value(&acting_text, "mtls_guard_reconcile_leader"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&idle_text, "mtls_guard_reconcile_leader"),
        Some(0.0)
    );
    assert_eq!(
        metric_value(
            &idle_text,
            "mtls_guard_reconcile_passes_total{result=\"ok\"}"
        ),
        Some(0.0)
    );

    // The holder stops and releases the Lease: the other takes over.
    let other = if holder == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    let (acting, idle) = if holder == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    acting.handle.stop().await;
    until("the other replica holds the Lease", || {
        fake.get(LEASE_PATH)
            .is_some_and(|l| l["spec"]["holderIdentity"] == other)
    })
    .await;
    assert!(
        wait_for_metric_at(
            &idle.admin_url("/metrics"),
            "mtls_guard_reconcile_passes_total{result=\"ok\"}",
            1.0
        )
        .await
    );
    // Its snapshot never saw the exemption (the PeerAuthentication watch went to
    // the first replica), but the managed list has it: nothing is written again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.writes("POST", "/peerauthentications").len(), 1);
    assert!(fake.writes("PUT", "/peerauthentications").is_empty());
    assert!(fake.writes("DELETE", "/peerauthentications").is_empty());
    idle.handle.stop().await;
}

/// A cluster that serves no PeerAuthentication (the captured discovery less
/// `security.istio.io`): the exemption is the tutorial's kind, a v1alpha1 Policy
/// targeting productpage without `peers`.
#[tokio::test]
async fn s9_without_peer_authentication_the_exemption_is_a_policy() {
    let fake = Fake::default();
    let (api, _services, _ingresses) = cluster(&fake);
    let mut discovery = fixture_json("04");
    discovery["items"]
        .as_array_mut()
        .unwrap()
        .retain(|g| g["metadata"]["name"] != "security.istio.io");
    api.set("/apis", Mode::Aggregated, Reply::Json(discovery));
    let policies = "/apis/authentication.istio.io/v1alpha1/namespaces/bookinfo/policies";
    let server = start(&api, options("replica-a", true, false)).await;
    until("the Policy is created", || {
        !fake.writes("POST", policies).is_empty()
    })
    .await;
    assert_eq!(
        fake.writes("POST", policies),
        vec![(
            policies.to_string(),
            json!({
                "apiVersion": "authentication.istio.io/v1alpha1",
                "kind": "Policy",
                "metadata": {"name": PA_NAME, "namespace": "bookinfo",
                             "labels": {"app.kubernetes.io/managed-by": "mtls-guard"}},
                "spec": {"targets": [{"name": "productpage"}]},
            })
        )]
    );
    until("the create is recorded", || {
        fake.events()
            .iter()
            .any(|(r, o, _)| r == "ExemptionCreated" && o == "Policy/mtls-guard-exempt-productpage")
    })
    .await;
    // Nothing was asked of an API the cluster does not serve.
    assert!(api
        .requests()
        .iter()
        .all(|r| !r.contains("peerauthentications?labelSelector")));
    server.handle.stop().await;
}

/// docs/metrics.md, section "Reconcilers": every series exists from start-up when
/// a reconciler is on.
#[tokio::test]
async fn every_documented_reconciler_series_exists_from_start_up() {
    let fake = Fake::default();
    let (api, _services, _ingresses) = cluster(&fake);
    let server = start(&api, options("replica-a", true, true)).await;
    let text = metrics(&server).await;
    let documented = documented_series(Some("Reconcilers"));
    assert!(documented.len() >= 10, "{documented:?}");
    for (series, _) in &documented {
        assert!(metric_value(&text, series).is_some(), "{series}\n{text}");
    }
    for family in text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE mtls_guard_reconcile"))
    {
        let name = format!("mtls_guard_reconcile{}", family.split(' ').next().unwrap());
        assert!(
            documented.iter().any(|(s, _)| s.starts_with(&name)),
            "{name} is not in docs/metrics.md"
        );
    }
    server.handle.stop().await;
}
