//! `mtls-guard serve`: the admission webhook over TLS, and a plain-HTTP admin port.
//!
//! - webhook port (`--listen`, TLS 1.2/1.3, HTTP/1.1 and HTTP/2): `POST /mutate`,
//!   `POST /validate`, answered by the pure [`crate::admission::review`];
//! - admin port (`--admin-listen`): `GET /healthz`, `GET /readyz`, `GET /metrics`,
//!   `GET /audit` (the last [`audit`] of the stored DestinationRules).
//!
//! [`start`] binds both ports and returns a [`Handle`] with the bound addresses; the
//! command ([`run`]) and the tests both go through it.
//!
//! Modules: [`tls`] (rustls configuration and the swappable certificate), `reload`
//! (watching the certificate files), `listener` (TLS accept loop, HTTP serving,
//! drain), `webhook` (the two routes), `admin` (probes and metrics), [`metrics`],
//! `logging`. The mesh snapshot comes from [`crate::source`]; the server only reads it.

mod admin;
pub mod audit;
mod listener;
mod logging;
pub mod metrics;
mod reload;
pub mod tls;
mod webhook;

pub use crate::source::{SnapshotSource, SnapshotStore, Unsynced};
pub use listener::{serve_tls, ConnLimits};
pub use logging::{init_logging, LogFormat, ReviewLog};
pub use tls::{CertInfo, TlsFiles};
pub use webhook::http_status;

use crate::certs;
use crate::reconcile::cluster::ReconcileOptions;
use crate::settings::Settings;
use crate::source::{self, ClusterConfig, MeshOverrides, SourceObserver};
use anyhow::Context;
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest AdmissionReview body accepted (the API server's own limit is 3 MiB).
pub const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Parses `10s`, `500ms`, `2m` or a plain number of seconds.
pub(crate) fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string());
    }
    webhook::parse_go_duration(text)
        .ok_or_else(|| format!("expected a duration such as 10s, 500ms or 2m, got {text:?}"))
}

/// What `serve` was asked to do (built by the CLI layer from its flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The serving certificate and key; `None`: generate a pair in `cert_dir`.
    pub tls: Option<TlsFiles>,
    pub cert_dir: PathBuf,
    /// The webhook's Service name and namespace, for the generated certificate's names.
    pub service_name: String,
    pub service_namespace: String,
    /// Files and folders of mesh objects; empty: cluster mode.
    pub policies: Vec<PathBuf>,
    pub settings: Settings,
    /// Cluster mode: the mesh settings fixed by flags (the rest come from the mesh config).
    pub mesh_overrides: MeshOverrides,
    /// Cluster mode: the kubeconfig file and context (kube-rs's defaults when `None`).
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Cluster mode: the namespace of the `istio` ConfigMap.
    pub istio_namespace: String,
    pub unsynced: Unsynced,
    pub discovery_interval: Duration,
    pub watch_grace: Duration,
    pub log_format: LogFormat,
    /// Which reviews get an info log line.
    pub log_reviews: ReviewLog,
    /// `--client-ca`: require client certificates signed by these CAs.
    pub client_ca: Option<PathBuf>,
    pub limits: ConnLimits,
    pub review_timeout: Duration,
    /// How long to keep serving with `/readyz` failing before the drain.
    pub shutdown_delay: Duration,
    pub policies_poll_interval: Duration,
    pub cert_poll_interval: Duration,
    /// Cluster mode: the reconcilers of contract section 9 (off by default).
    pub reconcile: ReconcileOptions,
}

/// Everything [`start`] needs.
#[derive(Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: TlsFiles,
    pub source: SnapshotSource,
    pub settings: Settings,
    /// Cluster mode: how reviews are answered before every kind is listed.
    pub unsynced: Unsynced,
    pub limits: ConnLimits,
    /// Longest time to receive a request body and answer it.
    pub review_timeout: Duration,
    pub body_limit: usize,
    /// How often the `--policies` files are checked for changes.
    pub policies_poll_interval: Duration,
    pub cert_poll_interval: Duration,
    /// Which reviews get an info log line.
    pub log_reviews: ReviewLog,
    /// CA certificates (PEM) that a client certificate must be signed by; `None`:
    /// no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// Make `tls` a self-signed pair (or reuse the one there) once both ports are
    /// bound; `None`: `tls` is given.
    pub self_signed: Option<certs::SelfSigned>,
    /// Cluster mode: the reconcilers of contract section 9 (both off unless asked for).
    pub reconcile: ReconcileOptions,
    /// How long the snapshot must stay unchanged before it is audited again.
    pub audit_delay: Duration,
}

impl ServerConfig {
    /// The command's defaults, except both ports on 127.0.0.1 with ports picked by the system.
    pub fn local(tls: TlsFiles, source: SnapshotSource) -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls,
            source,
            settings: Settings::default(),
            unsynced: Unsynced::Deny,
            limits: ConnLimits::default(),
            review_timeout: Duration::from_secs(10),
            body_limit: BODY_LIMIT,
            cert_poll_interval: Duration::from_secs(5),
            policies_poll_interval: Duration::from_secs(2),
            log_reviews: ReviewLog::default(),
            client_ca: None,
            self_signed: None,
            reconcile: ReconcileOptions::off(certs::DEFAULT_NAMESPACE),
            audit_delay: AUDIT_DELAY,
        }
    }
}

/// `serve`'s [`ServerConfig::audit_delay`].
pub const AUDIT_DELAY: Duration = Duration::from_secs(1);

/// A running server.
#[derive(Debug)]
pub struct Handle {
    webhook_addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    done: JoinHandle<()>,
    store: SnapshotStore,
    resolver: Arc<tls::CertResolver>,
    metrics: Arc<Metrics>,
    /// Drives `/readyz`: the TLS listener is bound and not shutting down.
    listening: Arc<AtomicBool>,
}

impl Handle {
    /// Turns `/readyz` to 503 while the webhook keeps serving, so that the pod
    /// leaves the Service's endpoints before it stops accepting connections.
    pub fn set_unready(&self) {
        self.listening.store(false, Ordering::SeqCst);
    }

    /// The bound address of the TLS webhook port.
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook_addr
    }

    /// The bound address of the admin port.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The snapshot cell (publish a new snapshot through it).
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.store
    }

    /// The serving certificate new connections get.
    pub fn certificate(&self) -> CertInfo {
        self.resolver.info()
    }

    /// The server's metrics, as served on `/metrics`.
    pub fn metrics_text(&self) -> String {
        if let Some(status) = self.store.cluster() {
            self.metrics.read_watches(status);
        }
        self.metrics.encode()
    }

    /// Starts a graceful shutdown: stop accepting, drain, stop the admin port.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until the server has stopped (after [`Handle::shutdown`]).
    pub async fn wait(self) {
        let _ = self.done.await;
    }

    /// [`Handle::shutdown`], then [`Handle::wait`].
    pub async fn stop(self) {
        self.shutdown();
        self.wait().await;
    }
}

/// Binds the admin port, loads the certificate and the snapshot, binds the webhook
/// port and serves both until [`Handle::shutdown`].
pub async fn start(config: ServerConfig) -> anyhow::Result<Handle> {
    let cluster_status = match &config.source {
        SnapshotSource::Cluster(cluster) => Some(cluster.status()),
        _ => None,
    };
    let reconcile = config.reconcile.clone();
    if reconcile.any() && cluster_status.is_none() {
        anyhow::bail!("the reconcilers need cluster mode (serve without --policies)");
    }
    let metrics = Arc::new(match cluster_status {
        Some(_) => Metrics::for_cluster_with(reconcile.any()),
        None => Metrics::new(),
    });
    let observer: Arc<dyn SourceObserver> = metrics.clone();
    let store = match &cluster_status {
        Some(status) => SnapshotStore::for_cluster(config.settings.clone(), status.clone()),
        None => SnapshotStore::new(config.settings.clone()),
    };
    let listening = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Stops the admin port and the certificate watcher after the drain (or when
    // start fails below, by being dropped).
    let (after_tx, after_rx) = watch::channel(false);

    // The admin port first, so that probes answer (not ready) while the rest loads.
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding the admin port {}", config.admin_listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let audit_cell = Arc::new(audit::AuditCell::default());
    let admin_app = admin::router(Arc::new(admin::AdminState {
        store: store.clone(),
        metrics: metrics.clone(),
        listening: listening.clone(),
        audit: audit_cell.clone(),
    }));
    let admin_task = tokio::spawn({
        let stop = listener::wait_for(after_rx.clone());
        async move {
            if let Err(e) = axum::serve(admin_listener, admin_app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "admin port failed");
            }
        }
    });
    tracing::info!(addr = %admin_addr, "admin port listening (HTTP): /healthz /readyz /metrics /audit");

    // Given certificate files are read at once. A self-signed pair is made (or the
    // last one reused) only once both ports are bound: a second `serve` that cannot
    // bind must not touch the files the first one serves.
    let given = match config.self_signed {
        None => Some(load_certificate(&config.tls, &metrics)?),
        Some(_) => None,
    };
    let client_auth = match &config.client_ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the client CA {}", path.display()))?;
            let verifier = tls::client_verifier(&pem)
                .with_context(|| format!("loading the client CA {}", path.display()))?;
            tracing::info!(client_ca = %path.display(), "client certificates required: only clients with a certificate signed by the client CA are served");
            Some(verifier)
        }
        None => None,
    };

    let source = config.source;
    let watched = match &source {
        SnapshotSource::Files(paths) => Some(paths.clone()),
        _ => None,
    };
    let cluster = match (&source, cluster_status) {
        (SnapshotSource::Cluster(cluster), Some(status)) => Some(((**cluster).clone(), status)),
        _ => None,
    };
    if matches!(source, SnapshotSource::Empty) {
        tracing::warn!(
            "serving an EMPTY mesh snapshot, under which no policy requires mutual TLS, \
             so every DestinationRule is allowed unchanged"
        );
    }
    let first = tokio::task::spawn_blocking(move || source.initial())
        .await
        .context("loading the snapshot")??;
    if let Some(snapshot) = first {
        observer.published(snapshot.counts());
        store.publish(snapshot);
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the webhook port {}", config.listen))?;
    let webhook_addr = listener.local_addr()?;
    let (initial_files, pair) = match (given, config.self_signed) {
        (Some(loaded), _) => loaded,
        (None, Some(spec)) => {
            tokio::task::spawn_blocking(move || certs::ensure_self_signed(&spec))
                .await
                .context("making a certificate")??;
            load_certificate(&config.tls, &metrics)?
        }
        (None, None) => unreachable!("read above when no self-signed pair is asked for"),
    };
    let resolver = Arc::new(tls::CertResolver::new(pair));
    let tls_config = Arc::new(tls::server_config(resolver.clone(), client_auth)?);
    let app = webhook::router(Arc::new(webhook::WebhookState {
        store: store.clone(),
        settings: config.settings.clone(),
        unsynced: config.unsynced,
        metrics: metrics.clone(),
        review_timeout: config.review_timeout,
        slots: tokio::sync::Semaphore::new(config.limits.max_in_flight.max(1)),
        body_limit: config.body_limit,
        review_log: config.log_reviews,
    }));

    let policies_task = watched.map(|paths| {
        source::watch_files(
            paths,
            store.clone(),
            observer.clone(),
            config.policies_poll_interval,
            after_rx.clone(),
        )
    });
    let reconcile_task = match &cluster {
        Some((cluster, status)) if reconcile.any() => Some(crate::reconcile::cluster::spawn(
            cluster.client.clone(),
            reconcile,
            store.clone(),
            status.clone(),
            metrics.clone(),
            after_rx.clone(),
        )),
        _ => None,
    };
    let cluster_task = cluster.map(|(cluster, status)| {
        tracing::info!(
            istio_namespace = %cluster.istio_namespace,
            "cluster mode: watching the cluster; reviews are answered per --unsynced until every kind is listed"
        );
        source::cluster::spawn(
            cluster,
            config.settings.clone(),
            store.clone(),
            status,
            observer.clone(),
            after_rx.clone(),
        )
    });
    let audit_task = audit::spawn(
        store.clone(),
        metrics.clone(),
        audit_cell,
        config.audit_delay,
        after_rx.clone(),
    );
    let reload_task = reload::spawn(
        config.tls.clone(),
        resolver.clone(),
        metrics.clone(),
        config.cert_poll_interval,
        initial_files,
        after_rx,
    );

    listening.store(true, Ordering::SeqCst);
    tracing::info!(addr = %webhook_addr, "webhook port listening (HTTPS): POST /mutate, POST /validate");
    let done = tokio::spawn({
        let listening = listening.clone();
        let shutdown_seen = shutdown_rx.clone();
        let limits = config.limits;
        async move {
            let serve = listener::serve_tls(listener, tls_config, app, limits, shutdown_rx);
            tokio::pin!(serve);
            tokio::select! {
                _ = &mut serve => {}
                _ = listener::wait_for(shutdown_seen) => {
                    // Not ready from the moment the shutdown starts.
                    listening.store(false, Ordering::SeqCst);
                    serve.await;
                }
            }
            listening.store(false, Ordering::SeqCst);
            let _ = after_tx.send(true);
            let _ = reload_task.await;
            let _ = audit_task.await;
            if let Some(task) = policies_task {
                let _ = task.await;
            }
            if let Some(task) = reconcile_task {
                let _ = task.await;
            }
            if let Some(task) = cluster_task {
                let _ = task.await;
            }
            let _ = admin_task.await;
            tracing::info!("server stopped");
        }
    });
    Ok(Handle {
        webhook_addr,
        admin_addr,
        shutdown: shutdown_tx,
        done,
        store,
        resolver,
        metrics,
        listening,
    })
}

/// The certificate and key files as read, and the pair they make.
type Loaded = ((Vec<u8>, Vec<u8>), tls::LoadedPair);

/// Reads and checks the serving certificate and key, and publishes its expiry.
fn load_certificate(files: &TlsFiles, metrics: &Metrics) -> anyhow::Result<Loaded> {
    let initial_files = tls::read_files(files)?;
    let pair = tls::parse_pair(&initial_files.0, &initial_files.1).with_context(|| {
        format!(
            "loading the serving certificate {} and key {}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    metrics.set_cert_expiry(pair.info.not_after);
    tracing::info!(
        cert = %files.cert.display(),
        subject = %pair.info.subject,
        names = ?pair.info.names,
        not_after = pair.info.not_after,
        "serving certificate loaded"
    );
    Ok((initial_files, pair))
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this is
/// called, not when it is first awaited: `serve` calls it before the server turns
/// ready, so that a SIGTERM sent as soon as `/readyz` says ready is not handled by
/// the default action (exiting at once, without the drain).
fn termination() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = interrupt.recv() => "SIGINT",
                },
                (term, interrupt) => {
                    let e = term.err().or(interrupt.err());
                    tracing::warn!(error = ?e, "cannot listen for SIGTERM and SIGINT");
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// The `serve` command: returns when the server has drained after SIGTERM/Ctrl-C.
pub fn run(options: ServeOptions) -> ExitCode {
    init_logging(options.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "mtls-guard serve failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeOptions) -> anyhow::Result<()> {
    let terminated = termination();
    let shutdown_delay = args.shutdown_delay;
    let settings = args.settings;
    // Without a certificate, a self-signed pair in --cert-dir, made by `start` once
    // both ports are bound.
    let self_signed = match args.tls {
        Some(_) => None,
        None => Some(certs::SelfSigned {
            dir: args.cert_dir.clone(),
            names: certs::local_and_service_names(
                &args.service_name,
                &args.service_namespace,
                &settings.cluster_domain,
            ),
            days: 365,
        }),
    };
    let tls_files = args.tls.unwrap_or_else(|| TlsFiles {
        cert: args.cert_dir.join(certs::CERT_FILE),
        key: args.cert_dir.join(certs::KEY_FILE),
    });
    let ca_cert = self_signed
        .as_ref()
        .map(|s| (s.dir.clone(), s.dir.join(certs::CA_CERT_FILE)));
    let source = if args.policies.is_empty() {
        let client =
            source::cluster::connect(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        SnapshotSource::Cluster(Box::new(ClusterConfig {
            client,
            istio_namespace: args.istio_namespace,
            overrides: args.mesh_overrides,
            discovery_interval: args.discovery_interval,
            watch_grace: args.watch_grace,
        }))
    } else {
        SnapshotSource::Files(args.policies)
    };
    let config = ServerConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls: tls_files,
        source,
        settings,
        unsynced: args.unsynced,
        limits: args.limits,
        review_timeout: args.review_timeout,
        body_limit: BODY_LIMIT,
        cert_poll_interval: args.cert_poll_interval,
        policies_poll_interval: args.policies_poll_interval,
        log_reviews: args.log_reviews,
        client_ca: args.client_ca,
        self_signed,
        reconcile: args.reconcile,
        audit_delay: AUDIT_DELAY,
    };
    let handle = start(config).await?;
    if let Some((dir, ca_cert)) = ca_cert {
        println!(
            "self-signed certificate in {} (CA: {})",
            dir.display(),
            ca_cert.display()
        );
        // A review that ships with the repository, so the hint works as pasted from the clone.
        println!(
            "try (from the repository): curl --cacert {} -H 'Content-Type: application/json' --data @examples/reviews/10-create-destinationrule-reviews-v1-validating.json https://localhost:{}/validate",
            ca_cert.display(),
            handle.webhook_addr().port()
        );
    }
    let signal = terminated.await;
    handle.set_unready();
    if !shutdown_delay.is_zero() {
        tracing::info!(
            signal,
            delay_ms = shutdown_delay.as_millis() as u64,
            "not ready; still serving until the delay ends"
        );
        tokio::time::sleep(shutdown_delay).await;
    }
    tracing::info!(signal, "shutting down: draining in-flight requests");
    handle.stop().await;
    Ok(())
}
