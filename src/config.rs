//! Envoy v3 configuration: loading the bootstrap (YAML or JSON in the proto3 JSON mapping),
//! the protobuf descriptor pool used for JSON/YAML and `/config_dump`, typed `Any` unpacking,
//! and the small value types every other module shares (addresses, durations, errors).
//!
//! This module is a leaf: it depends on no other module of tern. The protocol-buffer types are
//! envoy-types' (prost); validation of a resource into a compiled form happens once, when the
//! resource arrives, in the module that owns the compiled form, and its errors are
//! [`ConfigError`]s that name the resource and the field.

mod address;
mod any;
mod bootstrap;
mod cidr;
mod descriptor;
mod error;
pub mod istio;
mod string_match;
pub mod tern;

pub use address::{Address, socket_address_of};
pub use any::{
    TypedConfig, from_json, resource_from_json, struct_to_json, type_url, typed_config, unpack,
    unpack_named, unwrap_typed_struct,
};
pub use bootstrap::{BootstrapSource, decode_message_file, load_bootstrap, parse_bootstrap};
pub use cidr::Cidr;
pub use descriptor::{is_sensitive, pool, pool_for};
pub use error::{ConfigError, Within};
pub use string_match::StringMatch;
pub(crate) use string_match::{full_regex, starts_with_ignore_case};

use envoy_types::pb::google::protobuf;
use std::time::Duration;

/// A protobuf `Duration` as a std duration; negative or absent values are `None`.
pub fn duration(d: Option<&protobuf::Duration>) -> Option<Duration> {
    let d = d?;
    if d.seconds < 0 || d.nanos < 0 {
        return None;
    }
    Some(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// A protobuf `Duration` where zero means "disabled", as Envoy reads most timeouts.
pub fn timeout_or_disabled(
    d: Option<&protobuf::Duration>,
    default: Option<Duration>,
) -> Option<Duration> {
    match d {
        None => default,
        Some(_) => duration(d).filter(|d| !d.is_zero()),
    }
}

/// `google.protobuf.UInt32Value` with a default.
pub fn u32_or(v: Option<&protobuf::UInt32Value>, default: u32) -> u32 {
    v.map_or(default, |v| v.value)
}

/// `google.protobuf.BoolValue` with a default.
pub fn bool_or(v: Option<&protobuf::BoolValue>, default: bool) -> bool {
    v.map_or(default, |v| v.value)
}
