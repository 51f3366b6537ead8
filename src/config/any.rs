use super::ConfigError;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

/// The type URL of a message, from `prost::Name` (never written by hand).
pub fn type_url<T: Name>() -> String {
    T::type_url()
}

/// Decode an `Any` that must hold a `T`.
pub fn unpack<T: Message + Name + Default>(any: &Any) -> Result<T, ConfigError> {
    let want = T::type_url();
    if any.type_url != want {
        return Err(ConfigError::new(
            "typed_config",
            format!("expected {want}, got {}", any.type_url),
        ));
    }
    T::decode(any.value.as_slice())
        .map_err(|e| ConfigError::new("typed_config", format!("cannot decode {want}: {e}")))
}

/// Decode an optional `Any` that must hold a `T`; absent means `T::default()`.
pub fn unpack_named<T: Message + Name + Default>(
    any: Option<&Any>,
    what: &str,
) -> Result<T, ConfigError> {
    match any {
        Some(any) => unpack(any).map_err(|e| e.within(what)),
        None => Ok(T::default()),
    }
}
