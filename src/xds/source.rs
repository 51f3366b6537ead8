//! Where resources come from: the bootstrap's `dynamic_resources` and each `ConfigSource` a
//! resource names (an HCM's `rds.config_source`, a cluster's `eds_config`, a secret's
//! `sds_config`), resolved to a [`SourceKey`]. A source that names nothing usable (ADS without
//! `ads_config`, a gRPC cluster that is not a static cluster, REST) is a configuration error,
//! so the resource that names it is rejected.

use crate::config::ConfigError;
use crate::snapshot::World;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// One stream (or file) resources arrive on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKey {
    /// The aggregated stream of `ads_config`.
    Ads,
    /// A stream of its own to a static cluster (`api_config_source`), one per resource type.
    Grpc {
        /// `envoy_grpc.cluster_name`.
        cluster: String,
        /// `api_type: DELTA_GRPC`.
        delta: bool,
    },
    /// `path_config_source` (or the deprecated `path`): a file of resources.
    Path(PathBuf),
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKey::Ads => f.write_str("ads"),
            SourceKey::Grpc { cluster, delta } => {
                write!(f, "{}grpc:{cluster}", if *delta { "delta-" } else { "" })
            }
            SourceKey::Path(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// A resolved `ConfigSource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The stream.
    pub key: SourceKey,
    /// `initial_fetch_timeout` (default 15 s); `None` waits for ever (`0s`).
    pub initial_fetch_timeout: Option<Duration>,
}

/// How to talk to a gRPC control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcSettings {
    /// The static cluster serving it.
    pub cluster: String,
    /// Delta (incremental) rather than state of the world.
    pub delta: bool,
    /// `set_node_on_first_message_only`.
    pub set_node_on_first_message_only: bool,
    /// `grpc_services[0].initial_metadata`, sent with the stream's request headers.
    pub initial_metadata: Vec<(String, String)>,
    /// `rate_limit_settings`: (max_tokens, fill_rate per second).
    pub rate_limit: Option<(u32, f64)>,
}

/// The bootstrap's dynamic configuration, resolved.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// `ads_config`.
    pub ads: Option<GrpcSettings>,
    /// `lds_config`.
    pub lds: Option<Resolved>,
    /// `cds_config`.
    pub cds: Option<Resolved>,
    /// Static clusters (the only ones a gRPC source may name).
    pub static_clusters: BTreeSet<String>,
}

/// `ApiVersion.V2` (deprecated in the proto, so spelled as its number).
const API_V2: i32 = 1;

const DEFAULT_INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

impl Plan {
    /// Resolve `dynamic_resources` against the static clusters already compiled into `world`.
    pub fn from_bootstrap(b: &Bootstrap, world: &World) -> Result<Plan, ConfigError> {
        let mut plan = Plan {
            static_clusters: world
                .clusters
                .load()
                .keys()
                .map(|n| n.to_string())
                .collect(),
            ..Default::default()
        };
        let Some(dr) = &b.dynamic_resources else {
            return Ok(plan);
        };
        if !dr.lds_resources_locator.is_empty() || !dr.cds_resources_locator.is_empty() {
            return Err(ConfigError::new(
                "dynamic_resources",
                "xdstp resource locators are not supported",
            ));
        }
        if let Some(ads) = &dr.ads_config {
            plan.ads = Some(
                plan.grpc_settings_of(ads, true)
                    .map_err(|e| e.within("dynamic_resources.ads_config"))?,
            );
        }
        if let Some(lds) = &dr.lds_config {
            plan.lds = Some(
                plan.resolve(lds)
                    .map_err(|e| e.within("dynamic_resources.lds_config"))?,
            );
        }
        if let Some(cds) = &dr.cds_config {
            plan.cds = Some(
                plan.resolve(cds)
                    .map_err(|e| e.within("dynamic_resources.cds_config"))?,
            );
        }
        Ok(plan)
    }

    /// Resolve a `ConfigSource`.
    pub fn resolve(&self, cs: &core_pb::ConfigSource) -> Result<Resolved, ConfigError> {
        use core_pb::config_source::ConfigSourceSpecifier as S;
        let initial_fetch_timeout = match &cs.initial_fetch_timeout {
            None => Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
            Some(d) => crate::config::duration(Some(d)).filter(|d| !d.is_zero()),
        };
        if cs.resource_api_version == API_V2 {
            return Err(ConfigError::new(
                "resource_api_version",
                "the v2 xDS API is not supported",
            ));
        }
        let key = match &cs.config_source_specifier {
            Some(S::Ads(_)) | Some(S::Self_(_)) => {
                if self.ads.is_none() {
                    return Err(ConfigError::new(
                        "ads",
                        "ADS is named but dynamic_resources.ads_config is not set",
                    ));
                }
                SourceKey::Ads
            }
            Some(S::ApiConfigSource(api)) => {
                let s = self
                    .grpc_settings_of(api, false)
                    .within_path("api_config_source")?;
                SourceKey::Grpc {
                    cluster: s.cluster,
                    delta: s.delta,
                }
            }
            #[allow(deprecated)]
            Some(S::Path(p)) => SourceKey::Path(PathBuf::from(p)),
            Some(S::PathConfigSource(p)) => SourceKey::Path(PathBuf::from(&p.path)),
            None => return Err(ConfigError::new("config_source_specifier", "is required")),
        };
        Ok(Resolved {
            key,
            initial_fetch_timeout,
        })
    }

    /// The settings of a gRPC source (ADS or a cluster of its own).
    pub fn grpc_settings(&self, key: &SourceKey) -> Option<GrpcSettings> {
        match key {
            SourceKey::Ads => self.ads.clone(),
            SourceKey::Grpc { cluster, delta } => Some(GrpcSettings {
                cluster: cluster.clone(),
                delta: *delta,
                set_node_on_first_message_only: false,
                initial_metadata: Vec::new(),
                rate_limit: None,
            }),
            SourceKey::Path(_) => None,
        }
    }

    /// The sources the bootstrap itself names (LDS, CDS).
    pub fn bootstrap_sources(&self) -> Vec<SourceKey> {
        let mut v: Vec<SourceKey> = [&self.cds, &self.lds]
            .into_iter()
            .flatten()
            .map(|r| r.key.clone())
            .collect();
        v.dedup();
        v
    }

    fn grpc_settings_of(
        &self,
        api: &core_pb::ApiConfigSource,
        aggregated: bool,
    ) -> Result<GrpcSettings, ConfigError> {
        use core_pb::api_config_source::ApiType;
        let delta = match ApiType::try_from(api.api_type) {
            Ok(ApiType::Grpc) => false,
            Ok(ApiType::DeltaGrpc) => true,
            Ok(ApiType::AggregatedGrpc) if aggregated => false,
            Ok(ApiType::AggregatedDeltaGrpc) if aggregated => true,
            Ok(t) => {
                return Err(ConfigError::new(
                    "api_type",
                    format!(
                        "{} is not supported (use GRPC or DELTA_GRPC)",
                        t.as_str_name()
                    ),
                ));
            }
            Err(_) => {
                return Err(ConfigError::new(
                    "api_type",
                    format!("unknown API type {}", api.api_type),
                ));
            }
        };
        if api.transport_api_version == API_V2 {
            return Err(ConfigError::new(
                "transport_api_version",
                "the v2 xDS transport is not supported",
            ));
        }
        if !api.cluster_names.is_empty() {
            return Err(ConfigError::new(
                "cluster_names",
                "only REST sources take cluster_names; gRPC sources use grpc_services",
            ));
        }
        let [svc] = api.grpc_services.as_slice() else {
            return Err(ConfigError::new(
                "grpc_services",
                format!(
                    "exactly one gRPC service is required, found {}",
                    api.grpc_services.len()
                ),
            ));
        };
        use core_pb::grpc_service::TargetSpecifier;
        let cluster = match &svc.target_specifier {
            Some(TargetSpecifier::EnvoyGrpc(g)) => g.cluster_name.clone(),
            Some(TargetSpecifier::GoogleGrpc(_)) => {
                return Err(ConfigError::new(
                    "grpc_services[0].google_grpc",
                    "google_grpc is not supported; use envoy_grpc naming a static cluster",
                ));
            }
            None => {
                return Err(ConfigError::new(
                    "grpc_services[0]",
                    "envoy_grpc.cluster_name is required",
                ));
            }
        };
        if !self.static_clusters.contains(&cluster) {
            return Err(ConfigError::new(
                "grpc_services[0].envoy_grpc.cluster_name",
                format!("{cluster} is not a static cluster"),
            ));
        }
        let initial_metadata = svc
            .initial_metadata
            .iter()
            .map(|h| {
                let value = if h.raw_value.is_empty() {
                    h.value.clone()
                } else {
                    String::from_utf8_lossy(&h.raw_value).into_owned()
                };
                (h.key.to_ascii_lowercase(), value)
            })
            .collect();
        let rate_limit = api.rate_limit_settings.as_ref().map(|r| {
            (
                r.max_tokens.as_ref().map_or(100, |v| v.value),
                r.fill_rate.as_ref().map_or(10.0, |v| v.value),
            )
        });
        Ok(GrpcSettings {
            cluster,
            delta,
            set_node_on_first_message_only: api.set_node_on_first_message_only,
            initial_metadata,
            rate_limit,
        })
    }
}

trait WithinPath<T> {
    fn within_path(self, p: &str) -> Result<T, ConfigError>;
}

impl<T> WithinPath<T> for Result<T, ConfigError> {
    fn within_path(self, p: &str) -> Result<T, ConfigError> {
        self.map_err(|e| e.within(p))
    }
}
