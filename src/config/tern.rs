//! prost types for tern's own extension configuration messages (`proto/tern/`), for
//! extensions Envoy has no message for. As with the Istio messages (`config::istio`), the
//! schema in `proto/` feeds the descriptor pool (JSON/YAML, `TypedStruct`, `/config_dump`)
//! and a test checks that these hand-written structs agree with it.

/// `tern.generic_proxy.codecs.bolt.v1`: the Bolt codec of `envoy.filters.network.generic_proxy`.
pub mod bolt {
    /// `BoltCodecConfig`: SOFARPC Bolt v1 as a generic_proxy `codec_config`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BoltCodecConfig {
        /// `max_frame_size`: the largest frame accepted, in bytes (0: 8 MiB).
        #[prost(uint32, tag = "1")]
        pub max_frame_size: u32,
    }

    impl prost::Name for BoltCodecConfig {
        const NAME: &'static str = "BoltCodecConfig";
        const PACKAGE: &'static str = "tern.generic_proxy.codecs.bolt.v1";
        fn full_name() -> String {
            "tern.generic_proxy.codecs.bolt.v1.BoltCodecConfig".into()
        }
        fn type_url() -> String {
            "type.googleapis.com/tern.generic_proxy.codecs.bolt.v1.BoltCodecConfig".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::{Message, Name};
    use prost_reflect::{DeserializeOptions, DynamicMessage};

    #[test]
    fn hand_written_structs_match_the_proto_schema() {
        let name = bolt::BoltCodecConfig::full_name();
        let pool = crate::config::pool_for([name.as_str()]);
        let desc = pool.get_message_by_name(&name).expect("in the pool");
        let json = serde_json::json!({"max_frame_size": 65536});
        let opts = DeserializeOptions::new().deny_unknown_fields(true);
        let dynamic = DynamicMessage::deserialize_with_options(desc.clone(), &json, &opts).unwrap();
        let typed = bolt::BoltCodecConfig::decode(dynamic.encode_to_vec().as_slice()).unwrap();
        assert_eq!(typed.max_frame_size, 65536);
        let back = DynamicMessage::decode(desc, typed.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, dynamic);
        assert!(
            bolt::BoltCodecConfig::type_url().ends_with(&name),
            "{}",
            bolt::BoltCodecConfig::type_url()
        );
    }
}
