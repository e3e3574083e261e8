//! Who the API server calls: Mutating- and ValidatingWebhookConfigurations
//! (admissionregistration.k8s.io/v1) and APIServices (apiregistration.k8s.io/v1),
//! read only for the Services they call (contract section 8: the API server is not
//! in the mesh, so such a Service under STRICT refuses its plaintext calls).

use super::null_default;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// The port the API server calls a Service on when the reference gives none.
pub const DEFAULT_BACKEND_PORT: u32 = 443;

/// A Mutating- or ValidatingWebhookConfiguration: both read the same.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WebhookConfiguration {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub client_config: ClientConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientConfig {
    /// `None` for a webhook called by URL (outside the cluster's Services).
    #[serde(default)]
    pub service: Option<ServiceReference>,
}

/// `clientConfig.service` of a webhook, `spec.service` of an APIService.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceReference {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// The Service port; [`DEFAULT_BACKEND_PORT`] when absent.
    #[serde(default)]
    pub port: Option<i32>,
}

impl ServiceReference {
    /// The Service port called; `None` for a port that is no port number.
    pub fn port(&self) -> Option<u32> {
        match self.port {
            None => Some(DEFAULT_BACKEND_PORT),
            Some(p) => u32::try_from(p).ok(),
        }
    }
}

/// An APIService: an aggregated API served by a Service (`spec.service`), or by the
/// API server itself (no service).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiService {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: ApiServiceSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiServiceSpec {
    #[serde(default)]
    pub service: Option<ServiceReference>,
}
