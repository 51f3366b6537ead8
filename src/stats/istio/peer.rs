//! Workload metadata of a peer, and the wire forms Istio exchanges it in: the HTTP metadata
//! exchange headers (`x-envoy-peer-metadata-id`, `x-envoy-peer-metadata`: the base64 of a
//! serialized `google.protobuf.Struct` in the node-metadata shape), W3C `baggage` (Istio's
//! `k8s.*`/`service.*` keys) and the compact endpoint form istiod puts in an endpoint's
//! `filter_metadata.istio.workload` (`workload;namespace;canonical name;revision;cluster`).
//!
//! Everything here is a pure function over bytes or strings; bad input is an error, never a
//! panic. The encoding is deterministic (map keys sorted), as Istio's is, so the same node
//! metadata gives the same header value byte for byte.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use envoy_types::pb::google::protobuf::{Struct, value::Kind as PbKind};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The request/response header that carries the peer's node id.
pub const PEER_METADATA_ID_HEADER: &str = "x-envoy-peer-metadata-id";
/// The request/response header that carries the peer's metadata (base64 of a `Struct`).
pub const PEER_METADATA_HEADER: &str = "x-envoy-peer-metadata";
/// The W3C baggage header (Istio's `baggage` discovery and propagation).
pub const BAGGAGE_HEADER: &str = "baggage";

/// The kind of workload that owns the peer (from `OWNER`, the `type` field or a baggage key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkloadType {
    /// Not known.
    #[default]
    Unknown,
    /// A bare pod.
    Pod,
    /// A Deployment.
    Deployment,
    /// A Job.
    Job,
    /// A CronJob.
    CronJob,
}

impl WorkloadType {
    /// The word Istio uses for it (`pod`, `deployment`, `job`, `cronjob`).
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            WorkloadType::Unknown => None,
            WorkloadType::Pod => Some("pod"),
            WorkloadType::Deployment => Some("deployment"),
            WorkloadType::Job => Some("job"),
            WorkloadType::CronJob => Some("cronjob"),
        }
    }

    /// The type a word names.
    pub fn from_suffix(s: &str) -> Self {
        match s {
            "pod" => WorkloadType::Pod,
            "deployment" => WorkloadType::Deployment,
            "job" => WorkloadType::Job,
            "cronjob" => WorkloadType::CronJob,
            _ => WorkloadType::Unknown,
        }
    }

    /// The type in a Kubernetes owner reference such as
    /// `kubernetes://apis/apps/v1/namespaces/default/deployments/productpage-v1`.
    pub fn from_owner(owner: &str, workload: &str) -> Self {
        // Strip "s/<workload>"; the segment left after the last '/' names the kind.
        let Some(rest) = owner.len().checked_sub(workload.len() + 2) else {
            return WorkloadType::Unknown;
        };
        if rest == 0 || !owner.is_char_boundary(rest) {
            return WorkloadType::Unknown;
        }
        let head = &owner[..rest];
        match head.rfind('/') {
            Some(i) => WorkloadType::from_suffix(&head[i + 1..]),
            None => WorkloadType::Unknown,
        }
    }
}

/// What Istio knows about one workload (Istio's `WorkloadMetadataObject`). Empty strings mean
/// "not known".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkloadMetadata {
    /// `NAME`: the pod (instance) name.
    pub instance_name: Arc<str>,
    /// `CLUSTER_ID`.
    pub cluster_name: Arc<str>,
    /// `NAMESPACE`.
    pub namespace_name: Arc<str>,
    /// `WORKLOAD_NAME`.
    pub workload_name: Arc<str>,
    /// Label `service.istio.io/canonical-name`.
    pub canonical_name: Arc<str>,
    /// Label `service.istio.io/canonical-revision`.
    pub canonical_revision: Arc<str>,
    /// Label `app.kubernetes.io/name`, else `app`.
    pub app_name: Arc<str>,
    /// Label `app.kubernetes.io/version`, else `version`.
    pub app_version: Arc<str>,
    /// From `OWNER`.
    pub workload_type: WorkloadType,
    /// `IDENTITY`: the SPIFFE identity, when the peer sent it.
    pub identity: Arc<str>,
    /// `REGION`.
    pub region: Arc<str>,
    /// `AVAILABILITY_ZONE`.
    pub zone: Arc<str>,
    /// Other labels named by `additional_labels`, sorted by name.
    pub labels: Vec<(Arc<str>, Arc<str>)>,
}

/// Why a peer metadata value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerMetadataError {
    /// Not base64.
    #[error("peer metadata is not base64: {0}")]
    Base64(String),
    /// Not a serialized `google.protobuf.Struct`.
    #[error("peer metadata is not a protobuf Struct: {0}")]
    Protobuf(String),
}

/// `google.protobuf.Struct` with its map kept sorted, so encoding is deterministic.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SortedStruct {
    /// `fields`.
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, SortedValue>,
}

/// `google.protobuf.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SortedValue {
    /// `kind`.
    #[prost(oneof = "SortedKind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<SortedKind>,
}

/// `google.protobuf.Value.kind`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum SortedKind {
    /// `null_value`.
    #[prost(int32, tag = "1")]
    Null(i32),
    /// `number_value`.
    #[prost(double, tag = "2")]
    Number(f64),
    /// `string_value`.
    #[prost(string, tag = "3")]
    Str(String),
    /// `bool_value`.
    #[prost(bool, tag = "4")]
    Bool(bool),
    /// `struct_value`.
    #[prost(message, tag = "5")]
    Struct(SortedStruct),
    /// `list_value`.
    #[prost(message, tag = "6")]
    List(SortedList),
}

/// `google.protobuf.ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SortedList {
    /// `values`.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<SortedValue>,
}

fn string_value(s: &str) -> SortedValue {
    SortedValue {
        kind: Some(SortedKind::Str(s.to_owned())),
    }
}

/// A read-only view of a struct in either representation, for the node-metadata conversion.
trait Fields {
    fn str_field(&self, key: &str) -> Option<&str>;
    fn for_each_label(&self, f: &mut dyn FnMut(&str, &str));
    fn for_each_str(&self, f: &mut dyn FnMut(&str, &str));
}

impl Fields for SortedStruct {
    fn str_field(&self, key: &str) -> Option<&str> {
        match &self.fields.get(key)?.kind {
            Some(SortedKind::Str(s)) => Some(s),
            _ => None,
        }
    }
    fn for_each_label(&self, f: &mut dyn FnMut(&str, &str)) {
        if let Some(SortedValue {
            kind: Some(SortedKind::Struct(labels)),
        }) = self.fields.get("LABELS")
        {
            labels.for_each_str(f);
        }
    }
    fn for_each_str(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in &self.fields {
            if let Some(SortedKind::Str(s)) = &v.kind {
                f(k, s);
            }
        }
    }
}

impl Fields for Struct {
    fn str_field(&self, key: &str) -> Option<&str> {
        match &self.fields.get(key)?.kind {
            Some(PbKind::StringValue(s)) => Some(s),
            _ => None,
        }
    }
    fn for_each_label(&self, f: &mut dyn FnMut(&str, &str)) {
        if let Some(PbKind::StructValue(labels)) =
            self.fields.get("LABELS").and_then(|v| v.kind.as_ref())
        {
            labels.for_each_str(f);
        }
    }
    fn for_each_str(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in &self.fields {
            if let Some(PbKind::StringValue(s)) = &v.kind {
                f(k, s);
            }
        }
    }
}

fn from_fields(m: &dyn Fields, additional_labels: &[String]) -> WorkloadMetadata {
    let s = |k: &str| Arc::<str>::from(m.str_field(k).unwrap_or(""));
    let workload = m.str_field("WORKLOAD_NAME").unwrap_or("");
    let mut out = WorkloadMetadata {
        instance_name: s("NAME"),
        cluster_name: s("CLUSTER_ID"),
        namespace_name: s("NAMESPACE"),
        workload_name: workload.into(),
        identity: s("IDENTITY"),
        region: s("REGION"),
        zone: s("AVAILABILITY_ZONE"),
        workload_type: WorkloadType::from_owner(m.str_field("OWNER").unwrap_or(""), workload),
        ..Default::default()
    };
    let (mut app, mut app_q, mut version, mut version_q) = (None, None, None, None);
    m.for_each_label(&mut |k, v| match k {
        "service.istio.io/canonical-name" => out.canonical_name = v.into(),
        "service.istio.io/canonical-revision" => out.canonical_revision = v.into(),
        "app.kubernetes.io/name" => app_q = Some(Arc::<str>::from(v)),
        "app" => app = Some(Arc::<str>::from(v)),
        "app.kubernetes.io/version" => version_q = Some(Arc::<str>::from(v)),
        "version" => version = Some(Arc::<str>::from(v)),
        _ if additional_labels.iter().any(|l| l == k) => out.labels.push((k.into(), v.into())),
        _ => {}
    });
    // The qualified Kubernetes labels win over the short ones.
    out.app_name = app_q.or(app).unwrap_or_else(|| "".into());
    out.app_version = version_q.or(version).unwrap_or_else(|| "".into());
    out.labels.sort();
    out
}

impl WorkloadMetadata {
    /// Read node metadata (`NAME`, `NAMESPACE`, `WORKLOAD_NAME`, `CLUSTER_ID`, `OWNER`,
    /// `IDENTITY`, `LABELS`, ...) as Istio does; `additional_labels` keeps those labels too.
    pub fn from_node_metadata(metadata: &Struct, additional_labels: &[String]) -> Self {
        from_fields(metadata, additional_labels)
    }

    /// The node-metadata shaped struct Istio sends in `x-envoy-peer-metadata`.
    pub fn to_struct(&self) -> SortedStruct {
        let mut fields = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                fields.insert(k.to_owned(), string_value(v));
            }
        };
        put("NAME", &self.instance_name);
        put("NAMESPACE", &self.namespace_name);
        put("WORKLOAD_NAME", &self.workload_name);
        put("CLUSTER_ID", &self.cluster_name);
        put("IDENTITY", &self.identity);
        put("REGION", &self.region);
        put("AVAILABILITY_ZONE", &self.zone);
        if let Some(suffix) = self.workload_type.suffix() {
            let owner = format!(
                "kubernetes://apis/apps/v1/namespaces/{}/{suffix}s/{}",
                self.namespace_name, self.workload_name
            );
            fields.insert("OWNER".into(), string_value(&owner));
        }
        let mut labels = BTreeMap::new();
        for (k, v) in [
            ("service.istio.io/canonical-name", &self.canonical_name),
            (
                "service.istio.io/canonical-revision",
                &self.canonical_revision,
            ),
            ("app", &self.app_name),
            ("version", &self.app_version),
        ] {
            if !v.is_empty() {
                labels.insert(k.to_owned(), string_value(v));
            }
        }
        for (k, v) in &self.labels {
            labels.insert(k.to_string(), string_value(v));
        }
        fields.insert(
            "LABELS".into(),
            SortedValue {
                kind: Some(SortedKind::Struct(SortedStruct { fields: labels })),
            },
        );
        SortedStruct { fields }
    }

    /// The `x-envoy-peer-metadata` value: base64 (with padding) of the deterministic encoding
    /// of [`WorkloadMetadata::to_struct`].
    pub fn to_header_value(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_struct().encode_to_vec())
    }

    /// Read an `x-envoy-peer-metadata` value. Padding is optional, as in Envoy.
    pub fn from_header_value(
        value: &[u8],
        additional_labels: &[String],
    ) -> Result<Self, PeerMetadataError> {
        const LENIENT: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let bytes = LENIENT
            .decode(value)
            .map_err(|e| PeerMetadataError::Base64(e.to_string()))?;
        let s = SortedStruct::decode(bytes.as_slice())
            .map_err(|e| PeerMetadataError::Protobuf(e.to_string()))?;
        Ok(from_fields(&s, additional_labels))
    }

    /// Read the compact endpoint form `workload;namespace;canonical-name;revision;cluster`
    /// (`filter_metadata.istio.workload` of an endpoint). Fewer than five parts: `None`.
    pub fn from_endpoint_metadata(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split(';').collect();
        if parts.len() < 5 {
            return None;
        }
        Some(WorkloadMetadata {
            workload_name: parts[0].into(),
            namespace_name: parts[1].into(),
            canonical_name: parts[2].into(),
            canonical_revision: parts[3].into(),
            cluster_name: parts[4].into(),
            ..Default::default()
        })
    }

    /// Read Istio's baggage keys (`k8s.namespace.name`, `k8s.<type>.name`, `service.name`,
    /// `service.version`, `app.name`, ...). Unknown members are ignored.
    pub fn from_baggage(baggage: &str) -> Self {
        let mut out = WorkloadMetadata::default();
        for member in baggage.split(',') {
            let (key, value) = member.split_once('=').unwrap_or((member, ""));
            let (key, value) = (key.trim(), value.trim());
            match key {
                "k8s.namespace.name" => out.namespace_name = value.into(),
                "k8s.cluster.name" => out.cluster_name = value.into(),
                "service.name" => {
                    out.canonical_name = value.into();
                    if out.app_name.is_empty() {
                        out.app_name = value.into();
                    }
                }
                "service.version" => {
                    out.canonical_revision = value.into();
                    if out.app_version.is_empty() {
                        out.app_version = value.into();
                    }
                }
                "app.name" => {
                    out.app_name = value.into();
                    if out.canonical_name.is_empty() {
                        out.canonical_name = value.into();
                    }
                }
                "app.version" => {
                    out.app_version = value.into();
                    if out.canonical_revision.is_empty() {
                        out.canonical_revision = value.into();
                    }
                }
                "k8s.deployment.name" | "k8s.pod.name" | "k8s.cronjob.name" | "k8s.job.name" => {
                    out.workload_name = value.into();
                    let kind = key.split('.').nth(1).unwrap_or("");
                    out.workload_type = WorkloadType::from_suffix(kind);
                }
                "k8s.instance.name" => out.instance_name = value.into(),
                "cloud.region" => out.region = value.into(),
                "cloud.availability_zone" => out.zone = value.into(),
                _ => {}
            }
        }
        out
    }

    /// Istio's baggage value for this workload.
    pub fn to_baggage(&self) -> String {
        let mut parts = Vec::new();
        if !self.workload_name.is_empty() {
            let kind = self.workload_type.suffix().unwrap_or("pod");
            parts.push(format!("k8s.{kind}.name={}", self.workload_name));
        }
        let service = if self.canonical_name.is_empty() {
            &self.app_name
        } else {
            &self.canonical_name
        };
        if !service.is_empty() {
            parts.push(format!("service.name={service}"));
        }
        if !self.app_name.is_empty() && self.app_name != *service {
            parts.push(format!("app.name={}", self.app_name));
        }
        let revision = if self.canonical_revision.is_empty() {
            &self.app_version
        } else {
            &self.canonical_revision
        };
        if !revision.is_empty() {
            parts.push(format!("service.version={revision}"));
        }
        if !self.app_version.is_empty() && self.app_version != *revision {
            parts.push(format!("app.version={}", self.app_version));
        }
        for (key, value) in [
            ("k8s.namespace.name", &self.namespace_name),
            ("k8s.cluster.name", &self.cluster_name),
            ("k8s.instance.name", &self.instance_name),
            ("cloud.region", &self.region),
            ("cloud.availability_zone", &self.zone),
        ] {
            if !value.is_empty() {
                parts.push(format!("{key}={value}"));
            }
        }
        parts.join(",")
    }

    /// A field by the name Istio's CEL attributes use (`filter_state.upstream_peer.<name>`):
    /// `namespace`, `cluster`, `service`, `revision`, `app`, `version`, `workload`, `type`,
    /// `name`, `identity`, `region`, `availability_zone`. Empty fields are absent, as in the
    /// struct Istio stores.
    pub fn field(&self, name: &str) -> Option<&str> {
        let v: &str = match name {
            "namespace" => &self.namespace_name,
            "cluster" => &self.cluster_name,
            "service" => &self.canonical_name,
            "revision" => &self.canonical_revision,
            "app" => &self.app_name,
            "version" => &self.app_version,
            "workload" => &self.workload_name,
            "type" => self.workload_type.suffix().unwrap_or(""),
            "name" => &self.instance_name,
            "identity" => &self.identity,
            "region" => &self.region,
            "availability_zone" => &self.zone,
            _ => "",
        };
        (!v.is_empty()).then_some(v)
    }

    /// An additional label kept from the peer's `LABELS`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
    }
}

#[cfg(test)]
pub(crate) mod tests;
