//! `mtls-guard certs`' flags.

use crate::certs::{CertsOptions, DEFAULT_NAMESPACE, DEFAULT_SERVICE};
use std::path::PathBuf;

/// `mtls-guard certs`: write a CA and a serving certificate for the webhook's Service.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Folder to write ca.crt, tls.crt and tls.key into (created if missing; keys get mode 0600).
    #[arg(long, value_name = "DIR", default_value = "certs/generated")]
    pub out: PathBuf,
    /// The webhook's Service name.
    #[arg(long, default_value = DEFAULT_SERVICE)]
    pub service: String,
    /// The webhook's namespace.
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The cluster's DNS domain (for NAME.NS.svc.DOMAIN).
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Extra subject alternative names (DNS names or IP addresses), repeatable.
    #[arg(long = "san", value_name = "NAME")]
    pub extra_names: Vec<String>,
    /// Validity of the serving certificate, in days (the CA gets ten times as long).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Overwrite existing files in --out.
    #[arg(long)]
    pub force: bool,
}

impl From<CertsArgs> for CertsOptions {
    fn from(a: CertsArgs) -> CertsOptions {
        CertsOptions {
            out: a.out,
            service: a.service,
            namespace: a.namespace,
            cluster_domain: a.cluster_domain,
            extra_names: a.extra_names,
            days: a.days,
            force: a.force,
        }
    }
}
