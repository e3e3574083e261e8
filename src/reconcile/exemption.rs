//! The server-side exemption (contract section 9): for each service exempt by
//! case (a) or (c) of section 4 whose server side still requires mutual TLS on an
//! exempt port, the PeerAuthentication (or, where the cluster serves none, the
//! v1alpha1 Policy) that lets the ingress's plaintext in, compared with the
//! exemptions mtls-guard already manages.
//!
//! Services are judged without mtls-guard's own exemptions: once written, an
//! exemption makes its ports PERMISSIVE (or PLAINTEXT), and judged with it in place
//! the service would no longer need it and the next pass would delete it.

use crate::decision::{
    exemption::{exemption, ingress_gateway_present},
    server_mode, Exemption, PortScope, ServerMode, Subject,
};
use crate::gateway::is_mesh_controller;
use crate::model::{ObjectKind, ObjectRef};
use crate::settings::Settings;
use crate::snapshot::{NamespaceIndex, ServiceEntry, Snapshot, TargetPort};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The label that marks an object as mtls-guard's: only such objects are changed or deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "mtls-guard";
/// `mtls-guard-exempt-<service>`.
pub const NAME_PREFIX: &str = "mtls-guard-exempt-";

/// The API exemptions are written in: PeerAuthentication where the cluster serves
/// it, else the v1alpha1 Policy; `api_version` as served (`security.istio.io/v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptionApi {
    pub kind: ObjectKind,
    pub api_version: String,
}

impl ExemptionApi {
    pub fn peer_authentication(api_version: &str) -> ExemptionApi {
        ExemptionApi {
            kind: ObjectKind::PeerAuthentication,
            api_version: api_version.to_string(),
        }
    }

    pub fn policy(api_version: &str) -> ExemptionApi {
        ExemptionApi {
            kind: ObjectKind::Policy,
            api_version: api_version.to_string(),
        }
    }
}

/// An exemption object that carries mtls-guard's label, as the cluster stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    /// PeerAuthentication or Policy.
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
    /// The whole stored object (an update keeps its metadata, resourceVersion included).
    pub object: Value,
}

impl Managed {
    /// Reads a stored PeerAuthentication or Policy; `None` without mtls-guard's label.
    pub fn from_object(kind: ObjectKind, object: Value) -> Option<Managed> {
        let meta = object.get("metadata")?;
        let label = meta.pointer(&format!(
            "/labels/{}",
            MANAGED_BY_LABEL.replace('~', "~0").replace('/', "~1")
        ));
        if label.and_then(Value::as_str) != Some(MANAGED_BY) {
            return None;
        }
        Some(Managed {
            kind,
            namespace: meta.get("namespace")?.as_str()?.to_string(),
            name: meta.get("name")?.as_str()?.to_string(),
            object,
        })
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    fn resource_version(&self) -> Option<String> {
        self.object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// An exemption that should exist.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedExemption {
    pub object: ObjectRef,
    /// The Service it exempts.
    pub service: ObjectRef,
    /// The exempt Service ports whose server side requires mutual TLS without it.
    pub ports: Vec<u32>,
    /// Why the service is exempt (section 4's wording).
    pub reason: String,
    /// The object to create: apiVersion, kind, metadata (name, namespace, label), spec.
    pub manifest: Value,
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum ExemptionAction {
    Create(WantedExemption),
    /// `manifest` is the stored object with the wanted spec and label, its
    /// resourceVersion kept so that a concurrent change makes the write fail.
    Update {
        wanted: WantedExemption,
        manifest: Value,
    },
    Delete {
        object: ObjectRef,
        resource_version: Option<String>,
    },
}

impl ExemptionAction {
    /// The object written.
    pub fn object(&self) -> &ObjectRef {
        match self {
            ExemptionAction::Create(w) | ExemptionAction::Update { wanted: w, .. } => &w.object,
            ExemptionAction::Delete { object, .. } => object,
        }
    }
}

/// Why an exemption is not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoticeReason {
    /// The Service has no selector: no pods to select.
    NoSelector,
    /// An object of that name exists without mtls-guard's label: never touched.
    NotManaged,
    /// An exempt port's targetPort is a name: a PeerAuthentication's
    /// `portLevelMtls` needs the number.
    NamedTargetPort,
}

impl NoticeReason {
    pub const ALL: [NoticeReason; 3] = [
        NoticeReason::NoSelector,
        NoticeReason::NotManaged,
        NoticeReason::NamedTargetPort,
    ];

    /// The Event reason (PascalCase, as Kubernetes Events name them).
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeReason::NoSelector => "ExemptionNoSelector",
            NoticeReason::NotManaged => "ExemptionNotManaged",
            NoticeReason::NamedTargetPort => "ExemptionNamedTargetPort",
        }
    }
}

/// Something the operator should hear about (a warning Event on `object`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Notice {
    pub object: ObjectRef,
    pub reason: NoticeReason,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExemptionPlan {
    /// Every exemption that should exist, by namespace and name.
    pub wanted: Vec<WantedExemption>,
    pub actions: Vec<ExemptionAction>,
    pub notices: Vec<Notice>,
}

/// Plans the server-side exemptions; see [`super::plan`], which also judges rules.
pub fn plan_exemptions(
    snapshot: &Snapshot,
    settings: &Settings,
    api: &ExemptionApi,
    managed: &[Managed],
) -> ExemptionPlan {
    plan(snapshot, settings, api, managed).0
}

/// The plan, and the snapshot without the managed exemptions (what services were judged against).
pub(super) fn plan(
    snapshot: &Snapshot,
    settings: &Settings,
    api: &ExemptionApi,
    managed: &[Managed],
) -> (ExemptionPlan, Snapshot) {
    let mut base = snapshot.clone();
    for m in managed {
        base.delete(m.kind, &m.namespace, &m.name);
    }
    let gateway_present = ingress_gateway_present(&base, settings);
    let mut out = ExemptionPlan::default();
    let mut services: Vec<(&str, &NamespaceIndex, &ServiceEntry)> = base
        .namespaces()
        .flat_map(|(ns, idx)| idx.services.values().map(move |s| (ns, idx, &**s)))
        .filter(|(ns, idx, svc)| may_be_exempt(&base, settings, gateway_present, ns, idx, svc))
        .collect();
    services.sort_by(|a, b| (a.0, &a.2.name).cmp(&(b.0, &b.2.name)));
    for (ns, idx, svc) in services {
        want(
            &base,
            settings,
            api,
            gateway_present,
            ns,
            idx,
            svc,
            &mut out,
        );
    }

    let mut stored: BTreeMap<(ObjectKind, &str, &str), &Managed> = managed
        .iter()
        .map(|m| ((m.kind, m.namespace.as_str(), m.name.as_str()), m))
        .collect();
    for wanted in &out.wanted {
        let key = (
            wanted.object.kind,
            wanted.object.namespace.as_str(),
            wanted.object.name.as_str(),
        );
        match stored.remove(&key) {
            None => out.actions.push(ExemptionAction::Create(wanted.clone())),
            Some(m) if up_to_date(m, wanted) => {}
            Some(m) => {
                let mut manifest = m.object.clone();
                manifest["spec"] = wanted.manifest["spec"].clone();
                manifest["metadata"]["labels"][MANAGED_BY_LABEL] = json!(MANAGED_BY);
                out.actions.push(ExemptionAction::Update {
                    wanted: wanted.clone(),
                    manifest,
                });
            }
        }
    }
    for m in stored.into_values() {
        out.actions.push(ExemptionAction::Delete {
            object: m.object_ref(),
            resource_version: m.resource_version(),
        });
    }
    (out, base)
}

/// A cheap first look: could a port of `svc` be exempt by (a) or (c)?
fn may_be_exempt(
    snapshot: &Snapshot,
    settings: &Settings,
    gateway_present: bool,
    ns: &str,
    idx: &NamespaceIndex,
    svc: &ServiceEntry,
) -> bool {
    let by_ingress = !gateway_present
        && (svc.ingress_exposed
            || idx.ingress_backends.contains_key(svc.name.as_str())
            || settings
                .ingress_services
                .iter()
                .any(|(n, s)| n == ns && *s == svc.name));
    by_ingress
        || svc.ports.iter().any(|p| {
            snapshot
                .gateway()
                .backends(ns, &svc.name, p.port)
                .iter()
                .any(|b| !is_mesh_controller(&b.controller, &settings.mesh_gateway_controllers))
        })
}

/// Adds the exemption `svc` needs, if any, or says why it gets none.
#[allow(clippy::too_many_arguments)]
fn want(
    snapshot: &Snapshot,
    settings: &Settings,
    api: &ExemptionApi,
    gateway_present: bool,
    ns: &str,
    idx: &NamespaceIndex,
    svc: &ServiceEntry,
    out: &mut ExemptionPlan,
) {
    let subject = Subject::Service {
        namespace: ns,
        name: &svc.name,
        entry: Some(svc),
    };
    // The ports exempt by (a) or (c), and whether their server side is STRICT.
    let mut exempt: Vec<(u32, &TargetPort, bool)> = Vec::new();
    let mut reason = None;
    for port in &svc.ports {
        let scope = PortScope::Port {
            number: port.port,
            name: port.name.clone(),
        };
        // Warnings are the decision's to give (MG206 and the rest): not repeated here.
        let server = server_mode(
            snapshot,
            &settings.root_namespace,
            subject,
            &scope,
            &mut Vec::new(),
        );
        let ex = exemption(
            snapshot,
            settings,
            gateway_present,
            ns,
            &svc.name,
            Some(port.port),
            &server,
        );
        if let Some(ex @ (Exemption::Ingress(_) | Exemption::Gateway { .. })) = ex {
            let strict = server.mode == ServerMode::Strict;
            if strict && reason.is_none() {
                reason = Some(ex.reason(&svc.name));
            }
            exempt.push((port.port, &port.target_port, strict));
        }
    }
    let Some(reason) = reason else {
        return;
    };
    let service = ObjectRef {
        kind: ObjectKind::Service,
        namespace: ns.to_string(),
        name: svc.name.clone(),
    };
    if svc.selector.is_empty() {
        out.notices.push(Notice {
            object: service,
            reason: NoticeReason::NoSelector,
            message: format!(
                "{reason}, and its server side requires mutual TLS, but the Service has no selector: mtls-guard cannot select its pods for a server-side exemption; add one by hand"
            ),
        });
        return;
    }
    let object = ObjectRef {
        kind: api.kind,
        namespace: ns.to_string(),
        name: format!("{NAME_PREFIX}{}", svc.name),
    };
    // Managed objects were taken out of `snapshot`: one still there is someone else's.
    if idx.names(api.kind).iter().any(|n| **n == *object.name) {
        out.notices.push(Notice {
            message: format!(
                "{object} exists without the label {MANAGED_BY_LABEL}={MANAGED_BY}: mtls-guard leaves it alone and writes no exemption for {service} ({reason})"
            ),
            object,
            reason: NoticeReason::NotManaged,
        });
        return;
    }
    let all = exempt.len() == svc.ports.len();
    let ports: Vec<u32> = exempt.iter().map(|(p, _, _)| *p).collect();
    let spec = match api.kind {
        ObjectKind::PeerAuthentication => {
            let mut spec = Map::new();
            spec.insert(
                "selector".into(),
                json!({ "matchLabels": svc.selector.clone() }),
            );
            if all {
                spec.insert("mtls".into(), json!({ "mode": "PERMISSIVE" }));
            } else {
                let mut by_target = Map::new();
                for (port, target, _) in &exempt {
                    match target {
                        TargetPort::Number(t) => {
                            by_target.insert(t.to_string(), json!({ "mode": "PERMISSIVE" }));
                        }
                        TargetPort::Name(name) => out.notices.push(Notice {
                            object: service.clone(),
                            reason: NoticeReason::NamedTargetPort,
                            message: format!(
                                "{reason}, but port {port}'s targetPort {name:?} is a name: a PeerAuthentication's portLevelMtls needs the container port number, so {object} leaves that port out"
                            ),
                        }),
                    }
                }
                if by_target.is_empty() {
                    return;
                }
                spec.insert("portLevelMtls".into(), Value::Object(by_target));
            }
            Value::Object(spec)
        }
        _ => {
            let mut target = Map::new();
            target.insert("name".into(), json!(svc.name));
            if !all {
                let numbers: Vec<Value> = ports.iter().map(|p| json!({ "number": p })).collect();
                target.insert("ports".into(), Value::Array(numbers));
            }
            json!({ "targets": [target] })
        }
    };
    let manifest = json!({
        "apiVersion": api.api_version,
        "kind": api.kind.name(),
        "metadata": {
            "name": object.name,
            "namespace": ns,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY },
        },
        "spec": spec,
    });
    out.wanted.push(WantedExemption {
        object,
        service,
        ports,
        reason,
        manifest,
    });
}

/// The stored object has the wanted spec and still carries the label.
fn up_to_date(stored: &Managed, wanted: &WantedExemption) -> bool {
    stored.object.get("spec") == wanted.manifest.get("spec")
}
