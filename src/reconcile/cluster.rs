//! Carries the reconcilers' plans out in the cluster (contract section 9): only
//! the replica holding the Lease acts; a pass runs once the published snapshot
//! has not changed for the debounce time, or ten debounce times after the first
//! change not yet passed over (never from a webhook call), learnt from
//! [`SnapshotStore::subscribe`] as the audit learns it; each write
//! is logged, counted through a [`ReconcileObserver`] and recorded as an Event on
//! the object it changed.

use super::{
    plan_pass, ExemptionAction, ExemptionApi, Managed, Notice, NoticeReason, Plan, Reconcilers,
    RulePasses, RulePatch, MANAGED_BY, MANAGED_BY_LABEL,
};
use crate::model::{ObjectKind, ObjectRef};
use crate::source::cluster::{ClusterStatus, Served, Watched};
use crate::source::{SnapshotStore, View};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often at most the stored-rules reconciler judges every rule although the
/// changes reach only some (a safety net: a full pass of 100,000 rules took 0.5 to
/// 1 s of one core in benches/reconcile.rs).
pub const FULL_PASS_EVERY: Duration = Duration::from_secs(600);

/// The field manager and Event reporter of every write.
const MANAGER: &str = "mtls-guard";

/// What `serve` asks of the reconcilers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// `--reconcile-exemptions`.
    pub exemptions: bool,
    /// `--reconcile-rules`.
    pub rules: bool,
    /// The Lease that elects the acting replica: its namespace (mtls-guard's) and name.
    pub lease_namespace: String,
    pub lease_name: String,
    /// This replica's name in the Lease (the pod's name in a cluster).
    pub identity: String,
    /// How long a lost holder keeps the Lease, and how long before that it renews.
    pub lease_duration: Duration,
    pub lease_grace: Duration,
    /// A pass runs once the snapshot has been unchanged this long, or
    /// [`MAX_WAIT_DEBOUNCES`] times this long after the first change it has not
    /// seen, so that a steady stream of changes does not hold passes back for ever.
    pub debounce: Duration,
}

/// How many debounce times a pass waits at most for changes to settle.
pub const MAX_WAIT_DEBOUNCES: u32 = 10;

impl ReconcileOptions {
    /// Both reconcilers off, with the defaults of `serve`'s flags.
    pub fn off(lease_namespace: &str) -> ReconcileOptions {
        ReconcileOptions {
            exemptions: false,
            rules: false,
            lease_namespace: lease_namespace.to_string(),
            lease_name: "mtls-guard-reconcilers".to_string(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            lease_grace: Duration::from_secs(5),
            debounce: Duration::from_secs(2),
        }
    }

    pub fn any(&self) -> bool {
        self.exemptions || self.rules
    }
}

/// The pod's name (`POD_NAME`, else `HOSTNAME`, which a pod's is), else a random one.
fn default_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            format!("mtls-guard-{}-{nanos:x}", std::process::id())
        })
}

/// How a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteResult {
    Ok,
    /// Someone else changed the object first (409, or 422 for a failed `test`):
    /// nothing is retried, the next snapshot is judged again.
    Conflict,
    Error,
}

impl WriteResult {
    pub const ALL: [WriteResult; 3] = [WriteResult::Ok, WriteResult::Conflict, WriteResult::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            WriteResult::Ok => "ok",
            WriteResult::Conflict => "conflict",
            WriteResult::Error => "error",
        }
    }
}

/// What the reconcilers report, for metrics; every method does nothing by default.
pub trait ReconcileObserver: Send + Sync {
    /// This replica holds the Lease (or no longer does).
    fn leader(&self, _holds: bool) {}
    /// A pass ran (`ok`) or could not read the managed exemptions.
    fn pass(&self, _ok: bool) {}
    /// An exemption was created, updated or deleted (`action`).
    fn exemption_write(&self, _action: &'static str, _result: WriteResult) {}
    /// A stored rule was patched.
    fn rule_patch(&self, _result: WriteResult) {}
    /// A new notice (a warning Event).
    fn notice(&self, _reason: NoticeReason) {}
}

impl ReconcileObserver for () {}

/// Runs the reconcilers until `stop` turns true; the Lease is released on the way out.
pub fn spawn(
    client: kube::Client,
    options: ReconcileOptions,
    store: SnapshotStore,
    status: Arc<ClusterStatus>,
    observer: Arc<dyn ReconcileObserver>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let lease = loop {
            let built = kube_lease_manager::LeaseManagerBuilder::new(
                client.clone(),
                options.lease_name.clone(),
            )
            .with_namespace(options.lease_namespace.clone())
            .with_identity(options.identity.clone())
            .with_duration(options.lease_duration.as_secs().max(2))
            .with_grace(options.lease_grace.as_secs().max(1))
            .with_field_manager(format!("{MANAGER}-{}", options.identity))
            .build();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                built = built => match built {
                    Ok(lease) => break lease,
                    Err(e) => {
                        tracing::warn!(error = %e, lease = %options.lease_name, namespace = %options.lease_namespace, "reconcilers: cannot use the Lease; retrying");
                    }
                },
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        };
        let (mut leader, lease_task) = lease.watch().await;
        tracing::info!(
            exemptions = options.exemptions,
            rules = options.rules,
            identity = %options.identity,
            lease = %format!("{}/{}", options.lease_namespace, options.lease_name),
            "reconcilers on: the replica holding the Lease acts"
        );
        let mut runner = Runner {
            client: client.clone(),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: MANAGER.to_string(),
                    instance: Some(options.identity.clone()),
                },
            ),
            options,
            status,
            observer,
            notices: HashSet::new(),
            patched: HashSet::new(),
            passes: RulePasses::default(),
            full_at: None,
        };
        runner.run(&store, &mut leader, &mut stop).await;
        // Dropping the receiver makes the Lease task release the Lease.
        drop(leader);
        match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "reconcilers: releasing the Lease failed"),
            Err(_) => tracing::warn!("reconcilers: releasing the Lease timed out"),
            _ => {}
        }
    })
}

struct Runner {
    client: kube::Client,
    recorder: Recorder,
    options: ReconcileOptions,
    status: Arc<ClusterStatus>,
    observer: Arc<dyn ReconcileObserver>,
    /// Notices already recorded as Events (again only once gone and back).
    notices: HashSet<Notice>,
    /// Rule patches sent, by rule and the resourceVersion they tested: the watch may
    /// not have brought the new version yet, and the same patch would only fail.
    patched: HashSet<(ObjectRef, String)>,
    /// The stored-rules reconciler's last pass, so that the next judges only the
    /// rules the changes since can reach.
    passes: RulePasses,
    /// When the last pass that judged every rule ran: one is made again after
    /// [`FULL_PASS_EVERY`], a safety net that costs one full pass now and then.
    full_at: Option<Instant>,
}

impl Runner {
    async fn run(
        &mut self,
        store: &SnapshotStore,
        leader: &mut watch::Receiver<bool>,
        stop: &mut watch::Receiver<bool>,
    ) {
        // Told of each view published, as the audit is (no polling).
        let mut published = store.subscribe();
        let mut holds = *leader.borrow();
        self.observer.leader(holds);
        // The view of the last pass; when the latest view was published (a pass
        // waits until no view has been published for the debounce time).
        let mut last: Option<Arc<View>> = None;
        let mut changed_at = Instant::now();
        // The first change since the last pass: a pass waits at most
        // MAX_WAIT_DEBOUNCES debounce times after it.
        let mut first_change_at: Option<Instant> = None;
        let mut retry_at: Option<Instant> = None;
        loop {
            // When a pass is due, if one is.
            let due = match store.current() {
                Some(current)
                    if holds && !last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &current)) =>
                {
                    // The first pass of a holder does not wait.
                    let quiet = if last.is_some() {
                        let settled = changed_at + self.options.debounce;
                        first_change_at.map_or(settled, |first| {
                            settled.min(first + self.options.debounce * MAX_WAIT_DEBOUNCES)
                        })
                    } else {
                        Instant::now()
                    };
                    Some(retry_at.map_or(quiet, |r| r.max(quiet)))
                }
                _ => None,
            };
            if due.is_some_and(|d| d <= Instant::now()) {
                let Some(current) = store.current() else {
                    continue;
                };
                let ok = self.pass(current.clone(), leader).await;
                self.observer.pass(ok);
                if ok {
                    last = Some(current);
                    retry_at = None;
                    first_change_at = None;
                } else {
                    retry_at =
                        Some(Instant::now() + self.options.debounce.max(Duration::from_secs(5)));
                }
                continue;
            }
            let wake = due.map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                changed = leader.changed() => {
                    if changed.is_err() {
                        tracing::error!("reconcilers: the Lease task stopped; not acting any more");
                        self.observer.leader(false);
                        return;
                    }
                    let now = *leader.borrow_and_update();
                    if now != holds {
                        tracing::info!(identity = %self.options.identity, holds = now, "reconcilers: Lease {}", if now { "acquired: acting" } else { "lost: not acting" });
                        holds = now;
                        self.observer.leader(now);
                        // A new holder starts from what the cluster has.
                        last = None;
                        self.notices.clear();
                        self.patched.clear();
                        self.passes.reset();
                    }
                }
                changed = published.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    changed_at = Instant::now();
                    first_change_at.get_or_insert(changed_at);
                }
                _ = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {}
            }
        }
    }

    /// The API of `kind` as the cluster source watches it.
    fn served(&self, kind: ObjectKind) -> Option<ApiResource> {
        match self.status.served(Watched::Mesh(kind)) {
            Served::At(api_version) => {
                let api = kind.info();
                let (group, version) = api_version
                    .split_once('/')
                    .unwrap_or(("", api_version.as_str()));
                Some(ApiResource {
                    group: group.to_string(),
                    version: version.to_string(),
                    api_version: api_version.clone(),
                    kind: kind.name().to_string(),
                    plural: api.plural.to_string(),
                })
            }
            Served::Missing | Served::Unknown => None,
        }
    }

    /// One pass over `view`; false when the managed exemptions could not be listed.
    async fn pass(&mut self, view: Arc<View>, leader: &watch::Receiver<bool>) -> bool {
        let exemption_kinds = [ObjectKind::PeerAuthentication, ObjectKind::Policy];
        let mut reconcilers = Reconcilers {
            exemptions: None,
            rules: self.options.rules,
        };
        let mut managed = Vec::new();
        if self.options.exemptions {
            reconcilers.exemptions = exemption_kinds.iter().find_map(|k| {
                let api = self.served(*k)?;
                Some(ExemptionApi {
                    kind: *k,
                    api_version: api.api_version,
                })
            });
            if reconcilers.exemptions.is_none() {
                tracing::warn!("reconcilers: neither PeerAuthentication nor Policy is served: no server-side exemption can be written");
            }
            // Managed objects of either kind: one of the kind no longer used is deleted.
            for kind in exemption_kinds {
                let Some(resource) = self.served(kind) else {
                    continue;
                };
                let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
                let params =
                    ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
                match api.list(&params).await {
                    Ok(list) => managed.extend(list.items.into_iter().filter_map(|o| {
                        let mut value = serde_json::to_value(o).ok()?;
                        value["apiVersion"] = resource.api_version.clone().into();
                        value["kind"] = kind.name().into();
                        Managed::from_object(kind, value)
                    })),
                    Err(e) => {
                        tracing::warn!(error = %e, kind = %kind, "reconcilers: cannot list the managed exemptions; the pass is retried");
                        return false;
                    }
                }
            }
        }
        if self.full_at.is_none_or(|t| t.elapsed() >= FULL_PASS_EVERY) {
            self.passes.reset();
        }
        let mut passes = std::mem::take(&mut self.passes);
        let planned = {
            let view = view.clone();
            tokio::task::spawn_blocking(move || {
                let (plan, report) = plan_pass(
                    &view.snapshot,
                    &view.settings,
                    &reconcilers,
                    &managed,
                    &mut passes,
                );
                (plan, report, passes)
            })
            .await
        };
        // A failed pass leaves `self.passes` empty: the next one judges every rule.
        let Ok((planned, report, passes)) = planned else {
            tracing::error!("reconcilers: planning failed");
            return false;
        };
        self.passes = passes;
        if report.full {
            self.full_at = Some(Instant::now());
        }
        if self.options.rules {
            tracing::debug!(
                full = report.full,
                judged = report.judged,
                "reconcilers: stored rules judged"
            );
        }
        self.carry_out(planned, leader).await;
        true
    }

    async fn carry_out(&mut self, planned: Plan, leader: &watch::Receiver<bool>) {
        let notices: HashSet<Notice> = planned.exemptions.notices.into_iter().collect();
        for notice in notices.difference(&self.notices) {
            tracing::warn!(object = %notice.object, reason = notice.reason.as_str(), "reconcilers: {}", notice.message);
            self.observer.notice(notice.reason);
            self.event(
                &notice.object,
                None,
                EventType::Warning,
                notice.reason.as_str(),
                "Exempt",
                &notice.message,
            )
            .await;
        }
        self.notices = notices;
        for action in planned.exemptions.actions {
            if !*leader.borrow() {
                return;
            }
            self.exemption(action).await;
        }
        for held in &planned.rules.held {
            tracing::debug!(rule = %held, "reconcilers: rule left alone: a conflict or an invalid mode remains (the audit reports it)");
        }
        let planned_keys: HashSet<(ObjectRef, String)> = planned
            .rules
            .patches
            .iter()
            .map(|p| (p.rule.clone(), p.resource_version.clone()))
            .collect();
        self.patched.retain(|k| planned_keys.contains(k));
        for patch in planned.rules.patches {
            if !*leader.borrow() {
                return;
            }
            let key = (patch.rule.clone(), patch.resource_version.clone());
            if self.patched.contains(&key) {
                continue;
            }
            if self.rule(patch).await {
                self.patched.insert(key);
            }
        }
    }

    async fn exemption(&mut self, action: ExemptionAction) {
        let object = action.object().clone();
        let Some(resource) = self.served(object.kind) else {
            return;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &object.namespace, &resource);
        let post = PostParams {
            field_manager: Some(MANAGER.to_string()),
            ..PostParams::default()
        };
        let (verb, reason, result) = match &action {
            ExemptionAction::Create(wanted) => {
                let result = match serde_json::from_value::<DynamicObject>(wanted.manifest.clone())
                {
                    Ok(body) => api.create(&post, &body).await.map(|o| o.metadata.uid),
                    Err(e) => Err(kube::Error::SerdeError(e)),
                };
                ("create", format!("created: {}", wanted.reason), result)
            }
            ExemptionAction::Update { wanted, manifest } => {
                let result = match serde_json::from_value::<DynamicObject>(manifest.clone()) {
                    Ok(body) => api
                        .replace(&object.name, &post, &body)
                        .await
                        .map(|o| o.metadata.uid),
                    Err(e) => Err(kube::Error::SerdeError(e)),
                };
                let ports: Vec<String> = wanted.ports.iter().map(u32::to_string).collect();
                (
                    "update",
                    format!(
                        "updated to the Service's selector and exempt ports ({}): {}",
                        ports.join(", "),
                        wanted.reason
                    ),
                    result,
                )
            }
            ExemptionAction::Delete {
                resource_version, ..
            } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: resource_version.clone(),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                let result = api.delete(&object.name, &params).await.map(|_| None);
                (
                    "delete",
                    "deleted: the service is no longer exempt by an ingress or a Gateway route, or its server side no longer requires mutual TLS without it".to_string(),
                    result,
                )
            }
        };
        let outcome = write_result(&result);
        self.observer.exemption_write(verb, outcome);
        match result {
            Ok(uid) => {
                tracing::info!(object = %object, action = verb, "reconcilers: exemption {verb}d; {reason}");
                let event_reason = match verb {
                    "create" => "ExemptionCreated",
                    "update" => "ExemptionUpdated",
                    _ => "ExemptionDeleted",
                };
                self.event(
                    &object,
                    uid,
                    EventType::Normal,
                    event_reason,
                    "Exempt",
                    &format!("mtls-guard {reason}"),
                )
                .await;
            }
            Err(e) if outcome == WriteResult::Conflict => {
                tracing::info!(object = %object, action = verb, error = %e, "reconcilers: changed concurrently; judged again on the next snapshot")
            }
            Err(e) => {
                tracing::warn!(object = %object, action = verb, error = %e, "reconcilers: exemption write failed")
            }
        }
    }

    /// Patches one rule; true when the patch was sent and taken.
    async fn rule(&mut self, patch: Arc<RulePatch>) -> bool {
        let Some(resource) = self.served(ObjectKind::DestinationRule) else {
            return false;
        };
        let object = patch.rule.clone();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &object.namespace, &resource);
        let params = PatchParams {
            field_manager: Some(MANAGER.to_string()),
            ..PatchParams::default()
        };
        let result = api
            .patch(
                &object.name,
                &params,
                &Patch::<()>::Json(patch.patch.clone()),
            )
            .await;
        let outcome = write_result(&result);
        self.observer.rule_patch(outcome);
        let changes: Vec<String> = patch.changes.iter().map(|c| c.warning()).collect();
        match result {
            Ok(updated) => {
                tracing::info!(rule = %object, resource_version = %patch.resource_version, changes = ?changes, "reconcilers: stored rule patched");
                self.event(
                    &object,
                    updated.metadata.uid,
                    EventType::Normal,
                    "RulePatched",
                    "Patch",
                    &changes.join("\n"),
                )
                .await;
                true
            }
            Err(e) if outcome == WriteResult::Conflict => {
                tracing::info!(rule = %object, resource_version = %patch.resource_version, error = %e, "reconcilers: the rule changed concurrently (its resourceVersion test failed); judged again on the next snapshot");
                false
            }
            Err(e) => {
                tracing::warn!(rule = %object, error = %e, "reconcilers: patching the stored rule failed");
                false
            }
        }
    }

    /// Records an Event on `object`; a failure is logged, never fatal.
    async fn event(
        &self,
        object: &ObjectRef,
        uid: Option<String>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let api_version = match object.kind {
            ObjectKind::Service => Some("v1".to_string()),
            kind => self.served(kind).map(|r| r.api_version),
        };
        let reference = ObjectReference {
            api_version,
            kind: Some(object.kind.name().to_string()),
            name: Some(object.name.clone()),
            namespace: Some(object.namespace.clone()),
            uid,
            ..ObjectReference::default()
        };
        // Events hold at most 1 kB of note.
        let mut note = note.to_string();
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(object = %object, reason, error = %e, "reconcilers: recording the Event failed");
        }
    }
}

/// 409 (a conflict, or a failed precondition), 404 (already gone) and 422 (a failed
/// JSON Patch `test`) mean someone else wrote first.
fn write_result<T>(result: &Result<T, kube::Error>) -> WriteResult {
    match result {
        Ok(_) => WriteResult::Ok,
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409 | 422) => {
            WriteResult::Conflict
        }
        Err(_) => WriteResult::Error,
    }
}
