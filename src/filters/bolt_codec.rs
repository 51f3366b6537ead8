//! The Bolt codec of `envoy.filters.network.generic_proxy`: tern's own `BoltCodecConfig`
//! (`proto/tern/generic_proxy/codecs/bolt/v1/bolt.proto`) compiled to the shared codec the
//! generic proxy's connections use.

use crate::config::tern::bolt::BoltCodecConfig;
use crate::config::{ConfigError, TypedConfig};
use crate::protocol::xprotocol::Codec;
use crate::protocol::xprotocol::bolt::{Bolt, DEFAULT_MAX_FRAME_SIZE, REQUEST_HEADER_LEN};
use prost::Name;
use std::sync::Arc;

/// The type URL of `tern.generic_proxy.codecs.bolt.v1.BoltCodecConfig`.
pub fn type_url() -> String {
    BoltCodecConfig::type_url()
}

/// Compile a `BoltCodecConfig` (`typed_config` of a `codec_config`).
pub fn compile(tc: &TypedConfig<'_>) -> Result<Codec, ConfigError> {
    let c: BoltCodecConfig = tc.decode()?;
    Ok(Arc::new(Bolt::new(max_frame_size(&c)?)))
}

/// `max_frame_size`: 0 is the default; anything below a request header is an error.
fn max_frame_size(c: &BoltCodecConfig) -> Result<usize, ConfigError> {
    match c.max_frame_size {
        0 => Ok(DEFAULT_MAX_FRAME_SIZE),
        n if (n as usize) < REQUEST_HEADER_LEN => Err(ConfigError::new(
            "max_frame_size",
            format!("{n} is smaller than a Bolt request header ({REQUEST_HEADER_LEN} bytes)"),
        )),
        n => Ok(n as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::typed_config;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn any(c: &BoltCodecConfig) -> Any {
        Any {
            type_url: type_url(),
            value: c.encode_to_vec(),
        }
    }

    #[test]
    fn compiles_with_default_and_explicit_limits() {
        let codec = compile(&typed_config(&any(&BoltCodecConfig::default())).unwrap()).unwrap();
        assert_eq!(codec.name(), "bolt");
        assert_eq!(
            max_frame_size(&BoltCodecConfig::default()).unwrap(),
            DEFAULT_MAX_FRAME_SIZE
        );
        let c = BoltCodecConfig {
            max_frame_size: 4096,
        };
        assert_eq!(max_frame_size(&c).unwrap(), 4096);
        compile(&typed_config(&any(&c)).unwrap()).unwrap();
        let err = compile(&typed_config(&any(&BoltCodecConfig { max_frame_size: 10 })).unwrap())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "max_frame_size: 10 is smaller than a Bolt request header (22 bytes)"
        );
    }

    /// The message arrives as YAML/JSON in a bootstrap or inside a `TypedStruct`: both go
    /// through the descriptor pool, which knows tern's own proto.
    #[test]
    fn decodes_from_a_typed_struct() {
        use crate::config::istio::typed_struct::XdsTypedStruct;
        let ts = XdsTypedStruct {
            type_url: type_url(),
            value: Some(envoy_types::pb::google::protobuf::Struct {
                fields: [(
                    "max_frame_size".to_owned(),
                    envoy_types::pb::google::protobuf::Value {
                        kind: Some(envoy_types::pb::google::protobuf::value::Kind::NumberValue(
                            1024.0,
                        )),
                    },
                )]
                .into(),
            }),
        };
        let a = Any {
            type_url: XdsTypedStruct::type_url(),
            value: ts.encode_to_vec(),
        };
        let c: BoltCodecConfig = typed_config(&a).unwrap().decode().unwrap();
        assert_eq!(c.max_frame_size, 1024);
    }
}
