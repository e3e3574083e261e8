//! Certificates for the webhook: a CA and a serving certificate made with rcgen.
//!
//! Used by the `certs` command (files to put in a Secret, and the `caBundle` for the
//! webhook configurations) and by `serve` when it is given no certificate (a
//! self-signed CA and a serving certificate for `localhost` and the in-cluster names).
//!
//! The CA's private key is never written: it only lives while the serving certificate
//! is signed. Rotating means making a new pair (and a new `caBundle`), or using a real
//! issuer such as cert-manager; see `certs/README.md`.

use anyhow::Context;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use time::{Duration, OffsetDateTime};

/// File names inside a certificate folder (the names of a `kubernetes.io/tls` Secret, plus `ca.crt`).
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
/// Written by the `certs` command beside the others: `caBundle=BASE64` (a kustomize
/// env file; `deploy/overlays/mtls-guard-certs` copies it into the webhook configurations).
pub const CA_BUNDLE_ENV_FILE: &str = "ca-bundle.env";

/// Default Service name and namespace of the webhook in a cluster.
pub const DEFAULT_SERVICE: &str = "mtls-guard";
pub const DEFAULT_NAMESPACE: &str = "mtls-guard";

/// What `mtls-guard certs` was asked to write (built by the CLI layer from its flags).
#[derive(Debug, Clone)]
pub struct CertsOptions {
    /// Folder for ca.crt, tls.crt and tls.key.
    pub out: PathBuf,
    /// The webhook's Service name and namespace.
    pub service: String,
    pub namespace: String,
    pub cluster_domain: String,
    /// Extra subject alternative names (DNS names or IP addresses).
    pub extra_names: Vec<String>,
    /// Validity of the serving certificate (the CA gets ten times as long).
    pub days: u32,
    /// Overwrite existing files.
    pub force: bool,
}

/// A CA that can sign serving certificates (kept in memory only).
pub struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A serving certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct ServingPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServingPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Where [`write_bundle`] put the files.
#[derive(Debug, Clone)]
pub struct BundlePaths {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn validity_from_now(days: u32) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    // An hour back tolerates clocks that are a little behind.
    (
        now - Duration::hours(1),
        now + Duration::days(i64::from(days.max(1))),
    )
}

impl Authority {
    /// A new self-signed CA named `common_name`, valid for `days`.
    pub fn generate(common_name: &str, days: u32) -> anyhow::Result<Authority> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "mtls-guard");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity_from_now(days);
        let cert = params
            .self_signed(&key)
            .context("self-signing the CA certificate")?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM encoded (what clients trust; the webhook's `caBundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A serving certificate for `names` (DNS names or IP addresses; the first is the
    /// common name), signed by this CA, valid for `days`.
    pub fn issue(&self, names: &[String], days: u32) -> anyhow::Result<ServingPair> {
        anyhow::ensure!(!names.is_empty(), "a serving certificate needs a name");
        let key = KeyPair::generate().context("generating the serving key")?;
        let mut params = CertificateParams::new(names.to_vec())
            .with_context(|| format!("invalid subject alternative names {names:?}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity_from_now(days);
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing the serving certificate")?;
        Ok(ServingPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A client certificate for `common_name` (extended key usage clientAuth only),
    /// signed by this CA, valid for `days`: what the API server presents to a
    /// webhook started with `--client-ca`.
    pub fn issue_client(&self, common_name: &str, days: u32) -> anyhow::Result<ServingPair> {
        let key = KeyPair::generate().context("generating the client key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity_from_now(days);
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing the client certificate")?;
        Ok(ServingPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The names a webhook Service is reached by: NAME, NAME.NS, NAME.NS.svc and
/// NAME.NS.svc.DOMAIN (the API server uses NAME.NS.svc).
pub fn service_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
        format!("{service}.{namespace}"),
        service.to_string(),
    ]
}

/// The names of `serve`'s generated certificate: the Service names plus `localhost`
/// and `127.0.0.1`, for trying the webhook locally.
pub fn local_and_service_names(
    service: &str,
    namespace: &str,
    cluster_domain: &str,
) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(service_names(service, namespace, cluster_domain));
    names
}

/// Writes `data` to `path`, readable by the owner only when `secret`. The file is
/// written beside its final name and renamed, so a watcher never reads half a file.
pub fn write_file(path: &Path, data: &[u8], secret: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp)?;
    // The mode given to open() only applies to a new file: set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(if secret {
            0o600
        } else {
            0o644
        }))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (0600) into `dir`, creating it.
pub fn write_bundle(
    dir: &Path,
    ca_cert_pem: &str,
    pair: &ServingPair,
) -> anyhow::Result<BundlePaths> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let paths = BundlePaths {
        dir: dir.to_path_buf(),
        ca_cert: dir.join(CA_CERT_FILE),
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
    };
    write_file(&paths.ca_cert, ca_cert_pem.as_bytes(), false)
        .with_context(|| format!("writing {}", paths.ca_cert.display()))?;
    // The key first: a watcher that sees the new certificate then finds its key.
    write_file(&paths.key, pair.key_pem.as_bytes(), true)
        .with_context(|| format!("writing {}", paths.key.display()))?;
    write_file(&paths.cert, pair.cert_pem.as_bytes(), false)
        .with_context(|| format!("writing {}", paths.cert.display()))?;
    Ok(paths)
}

/// Makes a CA and a serving certificate for `names` and writes them into `dir`.
pub fn generate_bundle(dir: &Path, names: &[String], days: u32) -> anyhow::Result<BundlePaths> {
    let ca = Authority::generate("mtls-guard webhook CA", days.saturating_mul(10))?;
    let pair = ca.issue(names, days)?;
    write_bundle(dir, ca.cert_pem(), &pair)
}

/// The self-signed bundle `serve` makes for itself when it is given no certificate.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub dir: PathBuf,
    /// Names the serving certificate must cover.
    pub names: Vec<String>,
    /// Validity of a new serving certificate.
    pub days: u32,
}

/// How long a reused serving certificate must still be valid.
const REUSE_MARGIN: Duration = Duration::days(1);

/// Reuses the bundle in `spec.dir` when it still serves (see [`reusable`]); otherwise
/// writes a new one. Returns whether it was reused. Nothing is written on reuse, so a
/// client that trusts the CA keeps trusting it across restarts.
pub fn ensure_self_signed(spec: &SelfSigned) -> anyhow::Result<bool> {
    match reusable(&spec.dir, &spec.names) {
        Ok(()) => {
            tracing::info!(dir = %spec.dir.display(), "reusing the self-signed CA and serving certificate");
            Ok(true)
        }
        Err(why) => {
            let paths = generate_bundle(&spec.dir, &spec.names, spec.days)?;
            tracing::warn!(
                dir = %paths.dir.display(),
                previous = %why,
                "no --tls-cert given: made a self-signed CA and serving certificate (for trying it out, not for production)"
            );
            Ok(false)
        }
    }
}

/// Whether `dir` holds a bundle that still serves: `ca.crt` issued `tls.crt`, which
/// covers every name in `names`, is valid now and for a day more, and goes with `tls.key`.
pub fn reusable(dir: &Path, names: &[String]) -> Result<(), String> {
    let read = |name: &str| fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let (ca_pem, cert_pem, key_pem) = (read(CA_CERT_FILE)?, read(CERT_FILE)?, read(KEY_FILE)?);
    let parse = |name: &str, pem: &[u8]| {
        x509_parser::pem::parse_x509_pem(pem)
            .map(|(_, p)| p)
            .map_err(|e| format!("{name}: {e}"))
    };
    let (ca_pem, cert_pem) = (parse(CA_CERT_FILE, &ca_pem)?, parse(CERT_FILE, &cert_pem)?);
    let ca = ca_pem
        .parse_x509()
        .map_err(|e| format!("{CA_CERT_FILE}: {e}"))?;
    let cert = cert_pem
        .parse_x509()
        .map_err(|e| format!("{CERT_FILE}: {e}"))?;
    if cert.issuer() != ca.subject() {
        return Err(format!("{CERT_FILE} was not issued by {CA_CERT_FILE}"));
    }
    let now = OffsetDateTime::now_utc();
    let validity = cert.validity();
    if validity.not_before.to_datetime() > now
        || validity.not_after.to_datetime() < now + REUSE_MARGIN
    {
        return Err(format!("{CERT_FILE} is not valid for a day more"));
    }
    let covered = san_names(&cert);
    if let Some(missing) = names.iter().find(|n| !covered.contains(n)) {
        return Err(format!("{CERT_FILE} does not cover {missing}"));
    }
    let key_text = String::from_utf8(key_pem).map_err(|e| format!("{KEY_FILE}: {e}"))?;
    let key = KeyPair::from_pem(&key_text).map_err(|e| format!("{KEY_FILE}: {e}"))?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(format!("{KEY_FILE} does not go with {CERT_FILE}"));
    }
    Ok(())
}

/// The subject alternative names of `cert`, IP addresses written as usual.
pub fn san_names(cert: &x509_parser::certificate::X509Certificate) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(ip);
                    std::net::Ipv6Addr::from(b).to_string()
                }
                _ => format!("{ip:?}"),
            },
            other => other.to_string(),
        })
        .collect()
}

/// The CA certificate (PEM) in `path` when it holds one. When the certificates are
/// made again, the new caBundle trusts this one too: the API server gets the new
/// caBundle at once, while the pods serving the old certificate are replaced one by one.
fn previous_ca(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let end = "-----END CERTIFICATE-----";
    let first = &text[..text.find(end)? + end.len()];
    let (_, pem) = x509_parser::pem::parse_x509_pem(first.as_bytes()).ok()?;
    pem.parse_x509().ok()?;
    Some(format!("{}\n", first.trim_start()))
}

/// The `caBundle` value of a webhook configuration: the CA certificate PEM, base64.
pub fn ca_bundle(ca_cert_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_cert_pem.as_bytes())
}

/// The `certs` command.
pub fn run(args: CertsOptions) -> ExitCode {
    match run_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtls-guard certs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: &CertsOptions) -> anyhow::Result<()> {
    if !args.force {
        for name in [CA_CERT_FILE, CERT_FILE, KEY_FILE, CA_BUNDLE_ENV_FILE] {
            let path = args.out.join(name);
            anyhow::ensure!(
                !path.exists(),
                "{} already exists; pass --force to overwrite it",
                path.display()
            );
        }
    }
    let mut names = service_names(&args.service, &args.namespace, &args.cluster_domain);
    for extra in &args.extra_names {
        if !names.contains(extra) {
            names.push(extra.clone());
        }
    }
    // Read before ca.crt is replaced: the bundle keeps trusting it (see previous_ca).
    let previous = previous_ca(&args.out.join(CA_CERT_FILE));
    let ca = Authority::generate("mtls-guard webhook CA", args.days.saturating_mul(10))?;
    let pair = ca.issue(&names, args.days)?;
    let paths = write_bundle(&args.out, ca.cert_pem(), &pair)?;
    let bundle = ca_bundle(&format!(
        "{}{}",
        ca.cert_pem(),
        previous.as_deref().unwrap_or("")
    ));
    let env_file = args.out.join(CA_BUNDLE_ENV_FILE);
    write_file(&env_file, format!("caBundle={bundle}\n").as_bytes(), false)
        .with_context(|| format!("writing {}", env_file.display()))?;
    eprintln!(
        "wrote {}, {}, {} (key mode 0600) and {} for {}",
        paths.ca_cert.display(),
        paths.cert.display(),
        paths.key.display(),
        env_file.display(),
        names.join(", ")
    );
    eprintln!(
        "create the Secret with: kubectl -n {} create secret tls {}-tls --cert={} --key={}",
        args.namespace,
        args.service,
        paths.cert.display(),
        paths.key.display()
    );
    if previous.is_some() {
        eprintln!(
            "the caBundle also holds the previous CA, so that pods still serving its certificate are trusted until they are replaced; the next run drops it"
        );
    }
    eprintln!("caBundle for the webhook configurations:");
    println!("{bundle}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_cover_the_in_cluster_forms() {
        let names = service_names("mtls-guard", "ops", "cluster.local");
        assert!(names.contains(&"mtls-guard.ops.svc".to_string()));
        assert!(names.contains(&"mtls-guard.ops.svc.cluster.local".to_string()));
        assert!(names.contains(&"mtls-guard.ops".to_string()));
        assert!(names.contains(&"mtls-guard".to_string()));
    }

    #[test]
    fn issued_certificate_has_the_names_and_is_signed_by_the_ca() {
        let ca = Authority::generate("test CA", 10).unwrap();
        let pair = ca
            .issue(&["localhost".into(), "127.0.0.1".into()], 1)
            .unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pair.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let text = format!("{:?}", san.value.general_names);
        assert!(text.contains("localhost"), "{text}");
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
    }

    #[test]
    fn a_new_run_keeps_trusting_the_previous_ca_and_only_that_one() {
        let dir = tempfile::tempdir().unwrap();
        let options = CertsOptions {
            out: dir.path().to_path_buf(),
            service: DEFAULT_SERVICE.into(),
            namespace: DEFAULT_NAMESPACE.into(),
            cluster_domain: "cluster.local".into(),
            extra_names: Vec::new(),
            days: 1,
            force: true,
        };
        let bundle = || {
            let env = fs::read_to_string(dir.path().join(CA_BUNDLE_ENV_FILE)).unwrap();
            let b64 = env
                .trim_end()
                .strip_prefix("caBundle=")
                .unwrap()
                .to_string();
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            String::from_utf8(pem).unwrap()
        };
        let ca = || fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap();
        run_inner(&options).unwrap();
        let first = ca();
        assert_eq!(bundle(), first);
        run_inner(&options).unwrap();
        let second = ca();
        assert_ne!(first, second);
        assert_eq!(bundle(), format!("{second}{first}"));
        run_inner(&options).unwrap();
        assert_eq!(bundle(), format!("{}{second}", ca()));
    }

    #[cfg(unix)]
    #[test]
    fn bundle_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = generate_bundle(dir.path(), &["localhost".into()], 1).unwrap();
        let mode = fs::metadata(&paths.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(fs::read_to_string(&paths.ca_cert)
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn a_bundle_is_reused_only_while_it_still_serves_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        assert!(reusable(dir.path(), &names)
            .unwrap_err()
            .contains(CA_CERT_FILE));
        generate_bundle(dir.path(), &names, 30).unwrap();
        assert_eq!(reusable(dir.path(), &names), Ok(()));
        let spec = SelfSigned {
            dir: dir.path().to_path_buf(),
            names: names.clone(),
            days: 30,
        };
        let before = fs::read(dir.path().join(CERT_FILE)).unwrap();
        assert!(ensure_self_signed(&spec).unwrap());
        assert_eq!(fs::read(dir.path().join(CERT_FILE)).unwrap(), before);

        let more = vec!["localhost".to_string(), "mtls-guard.other.svc".to_string()];
        assert!(reusable(dir.path(), &more)
            .unwrap_err()
            .contains("mtls-guard.other.svc"));
        // A key from another bundle.
        let other = tempfile::tempdir().unwrap();
        generate_bundle(other.path(), &names, 30).unwrap();
        fs::copy(other.path().join(KEY_FILE), dir.path().join(KEY_FILE)).unwrap();
        assert!(reusable(dir.path(), &names)
            .unwrap_err()
            .contains("does not go with"));
        // Not reusable: a new bundle is written, and then it is reusable.
        assert!(!ensure_self_signed(&spec).unwrap());
        assert_ne!(fs::read(dir.path().join(CERT_FILE)).unwrap(), before);
        assert_eq!(reusable(dir.path(), &names), Ok(()));
    }
}
