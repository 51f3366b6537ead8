//! prost types for the Istio extension configuration messages that envoy-types lacks. Their
//! schema is this repository's `proto/` tree (compiled into the descriptor pool by `build.rs`);
//! these hand-written structs carry the same field numbers, and a test checks that the two
//! agree. Only the messages tern reads are here.

/// `impl prost::Name` with the `type.googleapis.com/` type URL every xDS `Any` uses.
macro_rules! named {
    ($ty:ty, $package:literal, $name:literal) => {
        impl prost::Name for $ty {
            const NAME: &'static str = $name;
            const PACKAGE: &'static str = $package;
            fn full_name() -> String {
                concat!($package, ".", $name).into()
            }
            fn type_url() -> String {
                concat!("type.googleapis.com/", $package, ".", $name).into()
            }
        }
    };
}

/// `udpa.type.v1.TypedStruct` and `xds.type.v3.TypedStruct`.
pub mod typed_struct {
    use envoy_types::pb::google::protobuf::Struct;

    /// `udpa.type.v1.TypedStruct`: a configuration of type `type_url` in its JSON form.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UdpaTypedStruct {
        /// `type_url`: the real type.
        #[prost(string, tag = "1")]
        pub type_url: String,
        /// `value`: the message in the proto3 JSON mapping.
        #[prost(message, optional, tag = "2")]
        pub value: Option<Struct>,
    }
    named!(UdpaTypedStruct, "udpa.type.v1", "TypedStruct");

    /// `xds.type.v3.TypedStruct`, the same message under xDS's package.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct XdsTypedStruct {
        /// `type_url`: the real type.
        #[prost(string, tag = "1")]
        pub type_url: String,
        /// `value`: the message in the proto3 JSON mapping.
        #[prost(message, optional, tag = "2")]
        pub value: Option<Struct>,
    }
    named!(XdsTypedStruct, "xds.type.v3", "TypedStruct");
}

/// `stats.PluginConfig` (Istio's `istio.stats` HTTP and network filters).
pub mod stats {
    use envoy_types::pb::google::protobuf::Duration;
    use std::collections::HashMap;

    /// `stats.MetricConfig`: overrides of one standard metric.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricConfig {
        /// `dimensions`: tag name to value expression.
        #[prost(map = "string, string", tag = "1")]
        pub dimensions: HashMap<String, String>,
        /// `name`: the metric (empty for all).
        #[prost(string, tag = "2")]
        pub name: String,
        /// `tags_to_remove`.
        #[prost(string, repeated, tag = "3")]
        pub tags_to_remove: Vec<String>,
        /// `match`: a condition expression.
        #[prost(string, tag = "4")]
        pub r#match: String,
        /// `drop`: do not report the metric.
        #[prost(bool, tag = "5")]
        pub drop: bool,
    }

    /// `stats.MetricType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// `COUNTER`.
        Counter = 0,
        /// `GAUGE`.
        Gauge = 1,
        /// `HISTOGRAM`.
        Histogram = 2,
    }

    /// `stats.MetricDefinition`: a custom metric.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricDefinition {
        /// `name`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `value`: an expression.
        #[prost(string, tag = "2")]
        pub value: String,
        /// `type`.
        #[prost(enumeration = "MetricType", tag = "3")]
        pub r#type: i32,
    }

    /// `stats.Reporter`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Reporter {
        /// `UNSPECIFIED`: client or server by traffic direction.
        Unspecified = 0,
        /// `SERVER_GATEWAY`.
        ServerGateway = 1,
    }

    /// `stats.PluginConfig`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginConfig {
        /// `disable_host_header_fallback`.
        #[prost(bool, tag = "6")]
        pub disable_host_header_fallback: bool,
        /// `tcp_reporting_duration`.
        #[prost(message, optional, tag = "7")]
        pub tcp_reporting_duration: Option<Duration>,
        /// `metrics`.
        #[prost(message, repeated, tag = "8")]
        pub metrics: Vec<MetricConfig>,
        /// `definitions`.
        #[prost(message, repeated, tag = "9")]
        pub definitions: Vec<MetricDefinition>,
        /// `reporter`.
        #[prost(enumeration = "Reporter", tag = "10")]
        pub reporter: i32,
        /// `rotation_interval`.
        #[prost(message, optional, tag = "11")]
        pub rotation_interval: Option<Duration>,
        /// `graceful_deletion_interval`.
        #[prost(message, optional, tag = "12")]
        pub graceful_deletion_interval: Option<Duration>,
    }
    named!(PluginConfig, "stats", "PluginConfig");
}

/// `envoy.tcp.metadataexchange.config.MetadataExchange` (Istio's `istio.metadata_exchange`).
pub mod metadata_exchange {
    /// `MetadataExchange`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetadataExchange {
        /// `protocol`: the ALPN value that announces the exchange.
        #[prost(string, tag = "1")]
        pub protocol: String,
        /// `enable_discovery`.
        #[prost(bool, tag = "2")]
        pub enable_discovery: bool,
        /// `additional_labels`.
        #[prost(string, repeated, tag = "3")]
        pub additional_labels: Vec<String>,
    }
    named!(
        MetadataExchange,
        "envoy.tcp.metadataexchange.config",
        "MetadataExchange"
    );
}

/// `istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig` (Istio's `istio.alpn`).
pub mod alpn {
    /// `FilterConfig.Protocol`: the upstream HTTP protocol an override applies to.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Protocol {
        /// `HTTP10`.
        Http10 = 0,
        /// `HTTP11`.
        Http11 = 1,
        /// `HTTP2`.
        Http2 = 2,
    }

    /// `FilterConfig.AlpnOverride`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AlpnOverride {
        /// `upstream_protocol`.
        #[prost(enumeration = "Protocol", tag = "1")]
        pub upstream_protocol: i32,
        /// `alpn_override`: the ALPN values to offer.
        #[prost(string, repeated, tag = "2")]
        pub alpn_override: Vec<String>,
    }

    /// `FilterConfig`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FilterConfig {
        /// `alpn_override`.
        #[prost(message, repeated, tag = "1")]
        pub alpn_override: Vec<AlpnOverride>,
    }
    named!(
        FilterConfig,
        "istio.envoy.config.filter.http.alpn.v2alpha1",
        "FilterConfig"
    );
}

/// `io.istio.http.peer_metadata.Config`.
pub mod peer_metadata {
    /// `Config.IstioHeaders`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IstioHeaders {
        /// `skip_external_clusters`.
        #[prost(bool, tag = "1")]
        pub skip_external_clusters: bool,
    }

    /// `Config.UpstreamFilterState`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UpstreamFilterState {
        /// `peer_metadata_key`.
        #[prost(string, tag = "1")]
        pub peer_metadata_key: String,
    }

    /// `Config.Baggage` and `Config.WorkloadDiscovery` (no fields).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}

    /// `Config.DiscoveryMethod.method_specifier`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Discovery {
        /// `baggage`.
        #[prost(message, tag = "1")]
        Baggage(Empty),
        /// `workload_discovery`.
        #[prost(message, tag = "2")]
        WorkloadDiscovery(Empty),
        /// `istio_headers`.
        #[prost(message, tag = "3")]
        IstioHeaders(IstioHeaders),
        /// `upstream_filter_state`.
        #[prost(message, tag = "4")]
        UpstreamFilterState(UpstreamFilterState),
    }

    /// `Config.DiscoveryMethod`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DiscoveryMethod {
        /// `method_specifier`.
        #[prost(oneof = "Discovery", tags = "1, 2, 3, 4")]
        pub method_specifier: Option<Discovery>,
    }

    /// `Config.PropagationMethod.method_specifier`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Propagation {
        /// `istio_headers`.
        #[prost(message, tag = "1")]
        IstioHeaders(IstioHeaders),
        /// `baggage`.
        #[prost(message, tag = "2")]
        Baggage(Empty),
    }

    /// `Config.PropagationMethod`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PropagationMethod {
        /// `method_specifier`.
        #[prost(oneof = "Propagation", tags = "1, 2")]
        pub method_specifier: Option<Propagation>,
    }

    /// `Config`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Config {
        /// `downstream_discovery`.
        #[prost(message, repeated, tag = "1")]
        pub downstream_discovery: Vec<DiscoveryMethod>,
        /// `upstream_discovery`.
        #[prost(message, repeated, tag = "2")]
        pub upstream_discovery: Vec<DiscoveryMethod>,
        /// `downstream_propagation`.
        #[prost(message, repeated, tag = "3")]
        pub downstream_propagation: Vec<PropagationMethod>,
        /// `upstream_propagation`.
        #[prost(message, repeated, tag = "4")]
        pub upstream_propagation: Vec<PropagationMethod>,
        /// `shared_with_upstream`.
        #[prost(bool, tag = "5")]
        pub shared_with_upstream: bool,
        /// `additional_labels`.
        #[prost(string, repeated, tag = "6")]
        pub additional_labels: Vec<String>,
    }
    named!(Config, "io.istio.http.peer_metadata", "Config");
}

/// `io.istio.network.authn.Config` (Istio's `istio_authn` network filter).
pub mod authn {
    /// `Config`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Config {
        /// `shared`.
        #[prost(bool, tag = "1")]
        pub shared: bool,
    }
    named!(Config, "io.istio.network.authn", "Config");
}

/// `io.istio.http.connect_authority.Config`.
pub mod connect_authority {
    /// `Config`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Config {
        /// `enabled`.
        #[prost(bool, tag = "1")]
        pub enabled: bool,
        /// `port`.
        #[prost(uint32, tag = "2")]
        pub port: u32,
    }
    named!(Config, "io.istio.http.connect_authority", "Config");
}

/// `io.istio.http.connect_baggage.Config` (no fields).
pub mod connect_baggage {
    /// `Config`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Config {}
    named!(Config, "io.istio.http.connect_baggage", "Config");
}

/// `istio.set_internal_dst_address.v1.Config` (no fields).
pub mod set_internal_dst_address {
    /// `Config`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Config {}
    named!(Config, "istio.set_internal_dst_address.v1", "Config");
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::{Message, Name};
    use prost_reflect::{DeserializeOptions, DynamicMessage};

    /// Every field set in JSON through the descriptor pool (the `proto/` schema) decodes with
    /// the hand-written struct and encodes back to the same bytes: field numbers and types
    /// agree.
    fn same_wire<T: Message + Name + Default>(json: serde_json::Value) -> T {
        let pool = crate::config::pool_for([T::full_name().as_str()]);
        let desc = pool
            .get_message_by_name(&T::full_name())
            .unwrap_or_else(|| panic!("{} not in the pool", T::full_name()));
        let opts = DeserializeOptions::new().deny_unknown_fields(true);
        let dynamic = DynamicMessage::deserialize_with_options(desc.clone(), &json, &opts)
            .unwrap_or_else(|e| panic!("{}: {e}", T::full_name()));
        let wire = dynamic.encode_to_vec();
        let typed = T::decode(wire.as_slice()).unwrap();
        let back = DynamicMessage::decode(desc, typed.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, dynamic, "{}", T::full_name());
        typed
    }

    #[test]
    fn hand_written_structs_match_the_proto_schema() {
        let s: stats::PluginConfig = same_wire(serde_json::json!({
            "disable_host_header_fallback": true,
            "tcp_reporting_duration": "15s",
            "metrics": [{"dimensions": {"a": "b"}, "name": "requests_total",
                         "tags_to_remove": ["x"], "match": "true", "drop": true}],
            "definitions": [{"name": "n", "value": "1", "type": "GAUGE"}],
            "reporter": "SERVER_GATEWAY",
            "rotation_interval": "1s",
            "graceful_deletion_interval": "2s",
        }));
        assert_eq!(s.reporter, stats::Reporter::ServerGateway as i32);
        let m: metadata_exchange::MetadataExchange = same_wire(serde_json::json!({
            "protocol": "istio-peer-exchange", "enable_discovery": true,
            "additional_labels": ["l"],
        }));
        assert!(m.enable_discovery);
        let a: alpn::FilterConfig = same_wire(serde_json::json!({
            "alpn_override": [{"upstream_protocol": "HTTP2", "alpn_override": ["istio-h2", "h2"]}],
        }));
        assert_eq!(a.alpn_override[0].upstream_protocol, 2);
        let p: peer_metadata::Config = same_wire(serde_json::json!({
            "downstream_discovery": [{"baggage": {}}, {"workload_discovery": {}},
                                     {"istio_headers": {"skip_external_clusters": true}},
                                     {"upstream_filter_state": {"peer_metadata_key": "k"}}],
            "upstream_discovery": [{"workload_discovery": {}}],
            "downstream_propagation": [{"istio_headers": {}}],
            "upstream_propagation": [{"baggage": {}}],
            "shared_with_upstream": true,
            "additional_labels": ["x"],
        }));
        assert_eq!(p.downstream_discovery.len(), 4);
        let n: authn::Config = same_wire(serde_json::json!({"shared": true}));
        assert!(n.shared);
        let c: connect_authority::Config =
            same_wire(serde_json::json!({"enabled": true, "port": 15008}));
        assert_eq!(c.port, 15008);
        let _: connect_baggage::Config = same_wire(serde_json::json!({}));
        let _: set_internal_dst_address::Config = same_wire(serde_json::json!({}));
        let t: typed_struct::UdpaTypedStruct = same_wire(serde_json::json!({
            "type_url": "type.googleapis.com/x.Y", "value": {"a": [1, "b", null, {"c": true}]},
        }));
        assert_eq!(t.type_url, "type.googleapis.com/x.Y");
        let _: typed_struct::XdsTypedStruct =
            same_wire(serde_json::json!({"type_url": "t", "value": {}}));
    }
}
