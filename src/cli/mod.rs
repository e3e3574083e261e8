//! The command line: clap's view of the flags, turned into the plain settings and
//! options the rest of the crate takes. Nothing outside this module knows clap.

mod certs;
mod check;
mod serve;

pub use certs::CertsArgs;
pub use check::CheckArgs;
pub use serve::ServeArgs;

use crate::settings::{parse_service_ref, IngressGateway, Mode, Settings};
use crate::source::MeshOverrides;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "mtls-guard",
    version,
    about = "Keeps Istio DestinationRule TLS consistent with mTLS policies"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge the DestinationRules in YAML/JSON files against the policies beside them,
    /// or (--cluster) the ones stored in a cluster.
    Check(CheckArgs),
    /// Serve the mutating and validating admission webhook over TLS.
    Serve(Box<ServeArgs>),
    /// Write a CA and a serving certificate for the webhook's Service.
    Certs(CertsArgs),
}

impl Cli {
    /// Runs the parsed command.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Check(args) => crate::check::run(args.into()),
            Command::Serve(args) => crate::server::run((*args).into()),
            Command::Certs(args) => crate::certs::run(args.into()),
        }
    }
}

/// The settings flags shared by `check` and `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct SettingsArgs {
    /// Istio's root namespace (mesh-wide PeerAuthentications, the ingress gateway)
    /// [default: istio-system; serve in cluster mode: the mesh config's rootNamespace,
    /// else --istio-namespace].
    #[arg(long, env = "MTLS_GUARD_ROOT_NAMESPACE", value_name = "NS")]
    pub root_namespace: Option<String>,
    /// The cluster's DNS domain, for FQDN hosts.
    #[arg(
        long,
        default_value = "cluster.local",
        env = "MTLS_GUARD_CLUSTER_DOMAIN"
    )]
    pub cluster_domain: String,
    /// Whether Istio auto mTLS is on, so that rules without TLS are fine: `--auto-mtls`
    /// (or `=true`) or `--auto-mtls=false`. Not given: off for files; serve in cluster
    /// mode reads the mesh config's enableAutoMtls (Istio's default: on).
    #[arg(
        long,
        env = "MTLS_GUARD_AUTO_MTLS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "true|false"
    )]
    pub auto_mtls: Option<bool>,
    /// Whether the Istio ingress gateway is present: detect (from a Service labelled
    /// istio=ingressgateway in the root namespace), present or absent.
    #[arg(long, default_value = "detect", value_name = "present|absent|detect")]
    pub ingress_gateway: IngressGateway,
    /// A service reached through a non-mesh ingress, as NAMESPACE/NAME (repeatable).
    #[arg(long = "ingress-service", value_name = "NS/NAME", value_parser = parse_service_ref)]
    pub ingress_services: Vec<(String, String)>,
    /// What to do with findings: enforce, warn or off (a namespace's
    /// mtls-guard.io/mode label overrides it).
    #[arg(long, default_value = "enforce", env = "MTLS_GUARD_MODE")]
    pub mode: Mode,
    /// A GatewayClass controllerName that belongs to the mesh, besides every
    /// istio.io/... one (repeatable; e.g. openshift.io/gateway-controller/v1): Gateways
    /// of its classes exempt no backend from mutual TLS.
    #[arg(long = "mesh-gateway-controller", value_name = "NAME")]
    pub mesh_gateway_controllers: Vec<String>,
}

impl SettingsArgs {
    /// The mesh settings given by flags, which win over the mesh config (cluster mode).
    pub fn mesh_overrides(&self) -> MeshOverrides {
        MeshOverrides {
            auto_mtls: self.auto_mtls,
            root_namespace: self.root_namespace.clone(),
        }
    }
}

impl From<SettingsArgs> for Settings {
    fn from(a: SettingsArgs) -> Settings {
        Settings {
            root_namespace: a
                .root_namespace
                .unwrap_or_else(|| Settings::default().root_namespace),
            cluster_domain: a.cluster_domain,
            auto_mtls: a.auto_mtls.unwrap_or(false),
            ingress_gateway: a.ingress_gateway,
            ingress_services: a.ingress_services,
            mode: a.mode,
            mesh_gateway_controllers: a.mesh_gateway_controllers,
            deny_breaking_changes: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_plain_settings() {
        let cli = Cli::try_parse_from([
            "mtls-guard",
            "check",
            "--mode",
            "warn",
            "--ingress-service",
            "shop/web",
            "--auto-mtls",
            "--mesh-gateway-controller",
            "openshift.io/gateway-controller/v1",
            "--mesh-gateway-controller",
            "example.com/mesh",
            "files",
        ])
        .unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check")
        };
        let options = crate::check::CheckOptions::from(args);
        assert_eq!(options.settings.mode, Mode::Warn);
        assert!(options.settings.auto_mtls);
        assert_eq!(
            options.settings.ingress_services,
            vec![("shop".to_string(), "web".to_string())]
        );
        assert_eq!(options.settings.root_namespace, "istio-system");
        assert_eq!(
            options.settings.mesh_gateway_controllers,
            ["openshift.io/gateway-controller/v1", "example.com/mesh"]
        );
    }

    #[test]
    fn check_reads_files_or_the_cluster() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["mtls-guard", "check"].iter().chain(args)).map(|cli| {
                let Command::Check(args) = cli.command else {
                    panic!("not check")
                };
                crate::check::CheckOptions::from(args)
            })
        };
        let files = parse(&["-n", "shop", "files"]).unwrap();
        assert_eq!(files.namespace, "shop");
        assert!(files.cluster.is_none());
        assert_eq!(parse(&["files"]).unwrap().namespace, "default");

        let cluster = parse(&[
            "--cluster",
            "-n",
            "bookinfo",
            "--context",
            "kind-dev",
            "--auto-mtls=false",
        ])
        .unwrap();
        let target = cluster.cluster.expect("--cluster");
        assert_eq!(target.namespace.as_deref(), Some("bookinfo"));
        assert_eq!(target.context.as_deref(), Some("kind-dev"));
        assert_eq!(target.istio_namespace, "istio-system");
        assert_eq!(target.overrides.auto_mtls, Some(false));
        assert!(parse(&["--cluster"])
            .unwrap()
            .cluster
            .unwrap()
            .namespace
            .is_none());

        // Files or the cluster, one of them; kubeconfig flags only with --cluster.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--cluster", "files"]).is_err());
        assert!(parse(&["--context", "x", "files"]).is_err());
        assert!(parse(&["--cluster", "--allow-empty"]).is_err());
    }
}
