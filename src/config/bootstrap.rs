use super::ConfigError;
use super::descriptor::pool_for;
use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost::{Message, Name};
use prost_reflect::{DeserializeOptions, DynamicMessage};
use std::path::{Path, PathBuf};

/// Where the bootstrap comes from, as Envoy's `-c/--config-path` and `--config-yaml`.
#[derive(Debug, Clone, Default)]
pub struct BootstrapSource {
    /// `-c/--config-path`: a `.json`, `.yaml`/`.yml` or `.pb` (binary proto) file.
    pub path: Option<PathBuf>,
    /// `--config-yaml`: YAML merged over the file with protobuf `MergeFrom` semantics (singular
    /// fields replaced, messages merged, repeated fields appended).
    pub yaml: Option<String>,
    /// `--allow-unknown-static-fields`: unknown fields are ignored instead of rejected.
    pub allow_unknown_fields: bool,
}

/// Load and merge the bootstrap as Envoy does. The result is the envoy-types struct; it is
/// validated into tern's model by the modules that compile each part.
pub fn load_bootstrap(src: &BootstrapSource) -> Result<Bootstrap, ConfigError> {
    let mut merged = Bootstrap::default();
    let mut any = false;
    if let Some(path) = &src.path {
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::new("", format!("cannot read bootstrap {}: {e}", path.display()))
        })?;
        let wire = decode_file(path, &bytes, src.allow_unknown_fields)
            .map_err(|e| e.within(format!("bootstrap {}", path.display())))?;
        merge_into(&mut merged, &wire)?;
        any = true;
    }
    if let Some(yaml) = &src.yaml {
        let value = parse_text(yaml, Format::Yaml).map_err(|e| e.within("--config-yaml"))?;
        let wire =
            to_wire(value, src.allow_unknown_fields).map_err(|e| e.within("--config-yaml"))?;
        merge_into(&mut merged, &wire)?;
        any = true;
    }
    if !any {
        return Err(ConfigError::new(
            "",
            "no bootstrap: give -c/--config-path or --config-yaml",
        ));
    }
    Ok(merged)
}

/// Parse bootstrap text (`json` chooses strict JSON; anything else is YAML, which JSON is a
/// subset of).
pub fn parse_bootstrap(
    text: &str,
    json: bool,
    allow_unknown_fields: bool,
) -> Result<Bootstrap, ConfigError> {
    let fmt = if json { Format::Json } else { Format::Yaml };
    let wire = to_wire(parse_text(text, fmt)?, allow_unknown_fields)?;
    Bootstrap::decode(wire.as_slice())
        .map_err(|e| ConfigError::new("", format!("bootstrap does not decode: {e}")))
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Yaml,
}

/// The bootstrap of one file in protobuf wire form.
fn decode_file(path: &Path, bytes: &[u8], allow_unknown: bool) -> Result<Vec<u8>, ConfigError> {
    file_to_wire::<Bootstrap>(path, bytes, allow_unknown)
}

/// A message of type `M` from a file: binary proto for `.pb` (checked to decode), else JSON
/// (`.json`) or YAML in the proto3 JSON mapping; in wire form.
fn file_to_wire<M: Message + Name + Default>(
    path: &Path,
    bytes: &[u8],
    allow_unknown: bool,
) -> Result<Vec<u8>, ConfigError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "pb" {
        M::decode(bytes)
            .map_err(|e| ConfigError::new("", format!("binary proto does not decode: {e}")))?;
        return Ok(bytes.to_vec());
    }
    let text =
        std::str::from_utf8(bytes).map_err(|e| ConfigError::new("", format!("not UTF-8: {e}")))?;
    let fmt = if ext == "json" {
        Format::Json
    } else {
        Format::Yaml
    };
    to_wire_as(parse_text(text, fmt)?, &M::full_name(), allow_unknown)
}

fn parse_text(text: &str, fmt: Format) -> Result<serde_json::Value, ConfigError> {
    match fmt {
        Format::Json => serde_json::from_str(text)
            .map_err(|e| ConfigError::new("", format!("invalid JSON: {e}"))),
        Format::Yaml => serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::new("", format!("invalid YAML: {e}"))),
    }
}

/// Every `@type` in a JSON value.
fn type_urls(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("@type", serde_json::Value::String(t)) => out.push(t.clone()),
                    _ => type_urls(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| type_urls(v, out)),
        _ => {}
    }
}

/// A bootstrap in the proto3 JSON mapping (snake_case or lowerCamelCase names, `@type` in
/// `Any`) to protobuf wire form, with the field path of the first error. Reflection uses a
/// descriptor pool of just the Bootstrap and the `@type`s the text names.
fn to_wire(value: serde_json::Value, allow_unknown: bool) -> Result<Vec<u8>, ConfigError> {
    to_wire_as(value, &Bootstrap::full_name(), allow_unknown)
}

/// A message of type `full_name` from a YAML or JSON file (chosen by the extension; `.pb` is
/// binary), in the proto3 JSON mapping, errors with the field path.
pub fn decode_message_file<M: Message + Name + Default>(
    path: &Path,
    bytes: &[u8],
) -> Result<M, ConfigError> {
    let wire = file_to_wire::<M>(path, bytes, false)?;
    M::decode(wire.as_slice())
        .map_err(|e| ConfigError::new("", format!("{} does not decode: {e}", M::full_name())))
}

/// A message of type `full_name` from its proto3 JSON form, in wire form. The descriptor pool
/// holds the message and every `@type` the value names.
pub(super) fn to_wire_as(
    value: serde_json::Value,
    full_name: &str,
    allow_unknown: bool,
) -> Result<Vec<u8>, ConfigError> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    let mut types = vec![full_name.to_string()];
    type_urls(&value, &mut types);
    let pool = pool_for(types.iter().map(String::as_str));
    let desc = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| ConfigError::new("", format!("{full_name} is not in the descriptor set")))?;
    Ok(deserialize_json(desc, value, allow_unknown)?.encode_to_vec())
}

/// Proto3 JSON into a message of `desc`, with the field path of the first error.
pub(super) fn deserialize_json(
    desc: prost_reflect::MessageDescriptor,
    value: serde_json::Value,
    allow_unknown: bool,
) -> Result<DynamicMessage, ConfigError> {
    let opts = DeserializeOptions::new().deny_unknown_fields(!allow_unknown);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(desc, de, &opts).map_err(|e| {
        let path = track.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, e.to_string())
    })
}

/// Protobuf `MergeFrom`: singular fields replaced, messages merged, repeated fields appended.
fn merge_into(dst: &mut Bootstrap, wire: &[u8]) -> Result<(), ConfigError> {
    dst.merge(wire)
        .map_err(|e| ConfigError::new("", format!("merging bootstrap sources: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_camel_and_snake_case_and_any() {
        let b = parse_bootstrap(
            r#"
staticResources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: tcp
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: t
          cluster: c
"#,
            false,
            false,
        )
        .unwrap();
        let l = &b.static_resources.unwrap().listeners[0];
        assert_eq!(l.name, "l");
        let any = l.filter_chains[0].filters[0].config_type.clone().unwrap();
        let envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any) =
            any
        else {
            panic!("typed config")
        };
        assert!(any.type_url.ends_with("TcpProxy"));
    }

    #[test]
    fn unknown_field_names_its_path() {
        let e = parse_bootstrap(
            "static_resources: {clusters: [{name: c, bogus: 1}]}",
            false,
            false,
        )
        .unwrap_err();
        assert!(e.path.contains("clusters"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(
            parse_bootstrap(
                "static_resources: {clusters: [{name: c, bogus: 1}]}",
                false,
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn golden_istio_bootstrap_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/testdata/istio/bootstrap_default_golden.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let b = parse_bootstrap(&text, true, false).unwrap();
        assert!(
            b.static_resources
                .unwrap()
                .clusters
                .iter()
                .any(|c| c.name == "xds-grpc")
        );
    }

    #[test]
    fn config_yaml_merges_over_file() {
        let dir = std::env::temp_dir().join(format!("tern-bootstrap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("b.yaml");
        std::fs::write(
            &file,
            "node: {id: a, cluster: x}\nstatic_resources: {clusters: [{name: one}]}\n",
        )
        .unwrap();
        let b = load_bootstrap(&BootstrapSource {
            path: Some(file),
            yaml: Some("node: {id: b}\nstatic_resources: {clusters: [{name: two}]}".into()),
            allow_unknown_fields: false,
        })
        .unwrap();
        let node = b.node.unwrap();
        assert_eq!((node.id.as_str(), node.cluster.as_str()), ("b", "x"));
        let names: Vec<_> = b
            .static_resources
            .unwrap()
            .clusters
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["one", "two"]);
    }
}
