use super::ConfigError;
use super::bootstrap::{deserialize_json, to_wire_as};
use super::descriptor::pool_for;
use super::istio::typed_struct::{UdpaTypedStruct, XdsTypedStruct};
use envoy_types::pb::google::protobuf::{self, Any};
use prost::{Message, Name};
use prost_reflect::MessageDescriptor;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

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

/// A filter's or socket's `typed_config` with any `TypedStruct` wrapper taken off: the real
/// type URL, and the message either in wire form (a plain `Any`) or as the JSON a
/// `udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct` carries in its `value`. Registries
/// match on [`TypedConfig::type_url`] and decode with [`TypedConfig::decode`], so both forms of
/// the same type are accepted alike.
#[derive(Debug, Clone)]
pub struct TypedConfig<'a> {
    type_url: Cow<'a, str>,
    body: Body<'a>,
}

#[derive(Debug, Clone)]
enum Body<'a> {
    Wire(&'a [u8]),
    Json(serde_json::Value),
}

/// If `any` is a `udpa.type.v1.TypedStruct` or an `xds.type.v3.TypedStruct`, its inner
/// `type_url` and `value` (the message in the proto3 JSON mapping); `None` for any other
/// type. A wrapper that does not decode, or has no `type_url`, is an error.
pub fn unwrap_typed_struct(
    any: &Any,
) -> Result<Option<(String, Option<protobuf::Struct>)>, ConfigError> {
    let bad = |e: prost::DecodeError| {
        ConfigError::new(
            "typed_config",
            format!("cannot decode {}: {e}", any.type_url),
        )
    };
    let (type_url, value) = if any.type_url == UdpaTypedStruct::type_url() {
        let t = UdpaTypedStruct::decode(any.value.as_slice()).map_err(bad)?;
        (t.type_url, t.value)
    } else if any.type_url == XdsTypedStruct::type_url() {
        let t = XdsTypedStruct::decode(any.value.as_slice()).map_err(bad)?;
        (t.type_url, t.value)
    } else {
        return Ok(None);
    };
    if type_url.is_empty() {
        return Err(ConfigError::new(
            "typed_config.type_url",
            format!("{} without a type_url", any.type_url),
        ));
    }
    Ok(Some((type_url, value)))
}

/// Look through a `TypedStruct` (either package); any other `Any` is taken as it is.
pub fn typed_config(any: &Any) -> Result<TypedConfig<'_>, ConfigError> {
    Ok(match unwrap_typed_struct(any)? {
        None => TypedConfig {
            type_url: Cow::Borrowed(&any.type_url),
            body: Body::Wire(&any.value),
        },
        Some((type_url, value)) => TypedConfig {
            type_url: Cow::Owned(type_url),
            body: Body::Json(value.as_ref().map_or_else(
                || serde_json::Value::Object(Default::default()),
                struct_to_json,
            )),
        },
    })
}

impl TypedConfig<'_> {
    /// The real type URL (the inner one of a `TypedStruct`).
    pub fn type_url(&self) -> &str {
        &self.type_url
    }

    /// Whether the configuration came wrapped in a `TypedStruct`.
    pub fn is_typed_struct(&self) -> bool {
        matches!(self.body, Body::Json(_))
    }

    /// Decode as a `T`. The type URL must be `T`'s; a `TypedStruct`'s JSON goes through the
    /// descriptor pool, where a value of the wrong JSON type is an error and an unknown field
    /// is ignored (as unknown fields of the wire form are).
    pub fn decode<T: Message + Name + Default>(&self) -> Result<T, ConfigError> {
        let want = T::type_url();
        if *self.type_url != want {
            return Err(ConfigError::new(
                "typed_config",
                format!("expected {want}, got {}", self.type_url),
            ));
        }
        match &self.body {
            Body::Wire(bytes) => T::decode(*bytes).map_err(|e| {
                ConfigError::new("typed_config", format!("cannot decode {want}: {e}"))
            }),
            Body::Json(json) => {
                from_json::<T>(json.clone()).map_err(|e| e.within("typed_config.value"))
            }
        }
    }
}

/// A message from its proto3 JSON form, through the descriptor pool. Unknown fields are
/// ignored; values of the wrong type are errors naming the field.
pub fn from_json<T: Message + Name + Default>(json: serde_json::Value) -> Result<T, ConfigError> {
    let name = T::full_name();
    let desc = descriptor_of(&name)
        .ok_or_else(|| ConfigError::new("", format!("no schema for {name}")))?;
    let msg = deserialize_json(desc, json, true).map_err(|mut e| {
        e.reason = format!("{name}: {}", e.reason);
        e
    })?;
    T::decode(msg.encode_to_vec().as_slice())
        .map_err(|e| ConfigError::new("", format!("cannot decode {name}: {e}")))
}

/// A resource (a `Listener`, a `Cluster`...) from its proto3 JSON form, as `/config_dump` and
/// istiod's debug output print it: snake_case or lowerCamelCase names, `@type` in every `Any`
/// (and on the resource itself, which is ignored). Unknown fields are an error when
/// `deny_unknown`.
pub fn resource_from_json<T: Message + Name + Default>(
    json: &serde_json::Value,
    deny_unknown: bool,
) -> Result<T, ConfigError> {
    let mut json = json.clone();
    if let Some(m) = json.as_object_mut() {
        m.remove("@type");
    }
    let name = T::full_name();
    let wire = to_wire_as(json, &name, !deny_unknown)?;
    T::decode(wire.as_slice())
        .map_err(|e| ConfigError::new("", format!("cannot decode {name}: {e}")))
}

/// The descriptor of a message, from a small pool per message kept for the process (the
/// messages tern decodes from JSON at run time are few: Istio's filter configs).
fn descriptor_of(full_name: &str) -> Option<MessageDescriptor> {
    static CACHE: OnceLock<Mutex<HashMap<String, MessageDescriptor>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(d) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(full_name)
    {
        return Some(d.clone());
    }
    let desc = pool_for([full_name]).get_message_by_name(full_name)?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(full_name.to_owned(), desc.clone());
    Some(desc)
}

/// `google.protobuf.Struct` as JSON. Whole numbers become JSON integers, so that integer
/// fields accept them.
pub fn struct_to_json(s: &protobuf::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(v: &protobuf::Value) -> serde_json::Value {
    use protobuf::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(value_to_json).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::istio::metadata_exchange::MetadataExchange;
    use protobuf::value::Kind;

    fn string(s: &str) -> protobuf::Value {
        protobuf::Value {
            kind: Some(Kind::StringValue(s.into())),
        }
    }

    fn wrapped(inner: &str, fields: protobuf::Struct) -> Any {
        let t = UdpaTypedStruct {
            type_url: inner.into(),
            value: Some(fields),
        };
        Any {
            type_url: UdpaTypedStruct::type_url(),
            value: t.encode_to_vec(),
        }
    }

    #[test]
    fn typed_struct_and_plain_any_decode_alike() {
        let plain = MetadataExchange {
            protocol: "istio-peer-exchange".into(),
            enable_discovery: true,
            additional_labels: vec![],
        };
        let any = Any {
            type_url: MetadataExchange::type_url(),
            value: plain.encode_to_vec(),
        };
        let fields = protobuf::Struct {
            fields: [
                ("protocol".to_string(), string("istio-peer-exchange")),
                (
                    "enable_discovery".to_string(),
                    protobuf::Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                ),
                ("a_field_from_the_future".to_string(), string("ignored")),
            ]
            .into_iter()
            .collect(),
        };
        let udpa = wrapped(&MetadataExchange::type_url(), fields.clone());
        let xds = Any {
            type_url: XdsTypedStruct::type_url(),
            value: XdsTypedStruct {
                type_url: MetadataExchange::type_url(),
                value: Some(fields),
            }
            .encode_to_vec(),
        };
        for a in [&any, &udpa, &xds] {
            let tc = typed_config(a).unwrap();
            assert_eq!(tc.type_url(), MetadataExchange::type_url());
            assert_eq!(tc.decode::<MetadataExchange>().unwrap(), plain);
        }
        assert!(unwrap_typed_struct(&any).unwrap().is_none());
        let (inner, value) = unwrap_typed_struct(&udpa).unwrap().unwrap();
        assert_eq!(inner, MetadataExchange::type_url());
        assert_eq!(value.unwrap().fields.len(), 3);
        assert!(!typed_config(&any).unwrap().is_typed_struct());
        assert!(typed_config(&xds).unwrap().is_typed_struct());
    }

    #[test]
    fn malformed_configs_are_errors() {
        // A bool where a string belongs.
        let bad_json = wrapped(
            &MetadataExchange::type_url(),
            protobuf::Struct {
                fields: [(
                    "protocol".to_string(),
                    protobuf::Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                )]
                .into_iter()
                .collect(),
            },
        );
        let e = typed_config(&bad_json)
            .unwrap()
            .decode::<MetadataExchange>()
            .unwrap_err();
        assert!(e.to_string().contains("MetadataExchange"), "{e}");
        // Not a protobuf message at all.
        let bad_wire = Any {
            type_url: MetadataExchange::type_url(),
            value: vec![0xff, 0xff, 0xff],
        };
        let e = typed_config(&bad_wire)
            .unwrap()
            .decode::<MetadataExchange>()
            .unwrap_err();
        assert!(e.to_string().contains("cannot decode"), "{e}");
        let bad_wrapper = Any {
            type_url: UdpaTypedStruct::type_url(),
            value: vec![0x0a, 0x05],
        };
        assert!(typed_config(&bad_wrapper).is_err());
        let no_type = wrapped("", Default::default());
        assert!(typed_config(&no_type).is_err());
    }
}
