//! `mtls-guard serve`'s flags.

use super::SettingsArgs;
use crate::certs::{DEFAULT_NAMESPACE, DEFAULT_SERVICE};
use crate::reconcile::cluster::ReconcileOptions;
use crate::server::{parse_duration_arg, ConnLimits, LogFormat, ReviewLog, ServeOptions, TlsFiles};
use crate::settings::Settings;
use crate::source::Unsynced;
use clap::builder::PossibleValue;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `mtls-guard serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the webhook's TLS port.
    #[arg(
        long,
        default_value = "0.0.0.0:8443",
        env = "MTLS_GUARD_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin port (/healthz, /readyz, /metrics).
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "MTLS_GUARD_ADMIN_LISTEN",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,
    /// Serving certificate chain (PEM). It is watched and reloaded when it changes.
    /// Without it, a self-signed CA and serving certificate are made in --cert-dir.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        env = "MTLS_GUARD_TLS_CERT"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "MTLS_GUARD_TLS_KEY"
    )]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that clients must present a certificate signed by: with
    /// it, only the API server (given such a certificate in its admission kubeconfig)
    /// gets answers. Read at start.
    #[arg(long, value_name = "FILE", env = "MTLS_GUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Where to write the generated certificate when --tls-cert is not given.
    #[arg(long, value_name = "DIR", default_value = "certs/generated")]
    pub cert_dir: PathBuf,
    /// The webhook's Service name (for the generated certificate's names).
    #[arg(long, default_value = DEFAULT_SERVICE)]
    pub service_name: String,
    /// The webhook's namespace (for the generated certificate's names).
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub service_namespace: String,
    /// YAML/JSON files or folders holding the mesh objects to judge against (read at
    /// start and again when they change; no cluster contact). Without it, serve
    /// watches the cluster (cluster mode).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub policies: Vec<PathBuf>,
    /// Cluster mode: the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config,
    /// then the in-cluster ServiceAccount).
    #[arg(long, value_name = "FILE", conflicts_with = "policies")]
    pub kubeconfig: Option<PathBuf>,
    /// Cluster mode: the kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME", conflicts_with = "policies")]
    pub context: Option<String>,
    /// Cluster mode: the namespace of Istio's `istio` ConfigMap (mesh settings;
    /// also the root namespace when neither the mesh config nor --root-namespace names one).
    #[arg(
        long,
        default_value = "istio-system",
        env = "MTLS_GUARD_ISTIO_NAMESPACE",
        value_name = "NS"
    )]
    pub istio_namespace: String,
    /// Cluster mode: how reviews are answered before every watched kind has been
    /// listed once: deny (with a message saying mtls-guard is still syncing) or
    /// allow (unjudged, with a warning).
    #[arg(
        long,
        default_value = "deny",
        value_name = "deny|allow",
        env = "MTLS_GUARD_UNSYNCED"
    )]
    pub unsynced: Unsynced,
    /// Cluster mode: how often API discovery runs again (CRDs installed or removed
    /// later are picked up).
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub discovery_interval: Duration,
    /// Cluster mode: how long a watch may fail before /readyz fails.
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub watch_grace_period: Duration,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Deny a change to a policy, Service, ingress or Gateway API object that breaks a
    /// DestinationRule in a namespace in mode enforce (by default such a change is
    /// allowed, with a warning naming the rules it breaks).
    #[arg(long, env = "MTLS_GUARD_DENY_BREAKING_CHANGES")]
    pub deny_breaking_changes: bool,
    /// Log format: text or json (one JSON object per line).
    #[arg(long, default_value = "text", env = "MTLS_GUARD_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Which reviews get an info log line: all; changes (patched, denied, or with
    /// warnings; plain allows at debug); none (all at debug). Every review is
    /// counted in the metrics, and unreadable requests are always logged.
    #[arg(long, default_value = "changes", env = "MTLS_GUARD_LOG_REVIEWS")]
    pub log_reviews: ReviewLog,
    /// Longest TLS handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub tls_handshake_timeout: Duration,
    /// HTTP/1.1: longest wait for a request's headers (also closes idle keep-alive connections).
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub header_read_timeout: Duration,
    /// A connection (HTTP/1.1 or HTTP/2) from which nothing arrives for this long is closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub idle_timeout: Duration,
    /// Longest time to receive a request body (the API server's `?timeout=`
    /// lowers it); a review itself takes microseconds.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub review_timeout: Duration,
    /// On SIGTERM/Ctrl-C, how long to keep serving with /readyz failing before
    /// draining (in a cluster, a few seconds, so endpoints drop the pod first).
    #[arg(long, default_value = "0s", value_parser = parse_duration_arg)]
    pub shutdown_delay: Duration,
    /// On SIGTERM/Ctrl-C, how long in-flight requests may take to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration_arg)]
    pub drain_timeout: Duration,
    /// How often the --policies files are checked for changes (then reloaded).
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub policies_poll_interval: Duration,
    /// How often the certificate files are re-read in case a change event was missed.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    pub cert_poll_interval: Duration,
    /// Connections served at once on the webhook port.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Reviews read and answered at once over all connections (bounds body memory).
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Cluster mode: write the server side of ingress exemptions (contract section 9):
    /// a PeerAuthentication (else a v1alpha1 Policy) `mtls-guard-exempt-<service>`,
    /// labelled `app.kubernetes.io/managed-by: mtls-guard`. Needs the RBAC of
    /// deploy/components/reconcilers.
    #[arg(
        long,
        conflicts_with = "policies",
        env = "MTLS_GUARD_RECONCILE_EXEMPTIONS"
    )]
    pub reconcile_exemptions: bool,
    /// Cluster mode: patch stored DestinationRules that have a fill or a patch, as
    /// the mutating webhook would (contract section 9). Needs the RBAC of
    /// deploy/components/reconcilers.
    #[arg(long, conflicts_with = "policies", env = "MTLS_GUARD_RECONCILE_RULES")]
    pub reconcile_rules: bool,
    /// Reconcilers: a pass runs once the cluster has been quiet this long (at the
    /// latest ten times this long after the first change it has not seen).
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub reconcile_debounce: Duration,
}

impl From<ServeArgs> for ServeOptions {
    fn from(a: ServeArgs) -> ServeOptions {
        let reconcile = ReconcileOptions {
            exemptions: a.reconcile_exemptions,
            rules: a.reconcile_rules,
            debounce: a.reconcile_debounce,
            // The Lease lives in mtls-guard's own namespace.
            ..ReconcileOptions::off(&a.service_namespace)
        };
        ServeOptions {
            listen: a.listen,
            admin_listen: a.admin_listen,
            tls: match (a.tls_cert, a.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            },
            cert_dir: a.cert_dir,
            service_name: a.service_name,
            service_namespace: a.service_namespace,
            policies: a.policies,
            mesh_overrides: a.settings.mesh_overrides(),
            settings: Settings {
                deny_breaking_changes: a.deny_breaking_changes,
                ..a.settings.into()
            },
            kubeconfig: a.kubeconfig,
            context: a.context,
            istio_namespace: a.istio_namespace,
            unsynced: a.unsynced,
            discovery_interval: a.discovery_interval,
            watch_grace: a.watch_grace_period,
            log_format: a.log_format,
            log_reviews: a.log_reviews,
            client_ca: a.client_ca,
            limits: ConnLimits {
                tls_handshake_timeout: a.tls_handshake_timeout,
                header_read_timeout: a.header_read_timeout,
                idle_timeout: a.idle_timeout,
                max_connections: a.max_connections,
                max_in_flight: a.max_in_flight,
                drain_timeout: a.drain_timeout,
            },
            review_timeout: a.review_timeout,
            shutdown_delay: a.shutdown_delay,
            policies_poll_interval: a.policies_poll_interval,
            cert_poll_interval: a.cert_poll_interval,
            reconcile,
        }
    }
}

impl clap::ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[LogFormat::Text, LogFormat::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }))
    }
}

impl clap::ValueEnum for ReviewLog {
    fn value_variants<'a>() -> &'a [Self] {
        &[ReviewLog::All, ReviewLog::Changes, ReviewLog::None]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            ReviewLog::All => "all",
            ReviewLog::Changes => "changes",
            ReviewLog::None => "none",
        }))
    }
}
