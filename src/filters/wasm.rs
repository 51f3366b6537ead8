//! Wasm filters (`envoy.extensions.filters.{http,network}.wasm.v3.Wasm`). tern runs no Wasm
//! VM. Istio configures its built-in plugins as Wasm filters on Envoy's `null` runtime (native
//! code named by `vm_config.code`): those are recognised by name and their `configuration` is
//! decoded. A filter on a real runtime (v8, wamr, wasmtime...) is skipped, with a warning and
//! `tern.config.skipped.<filter name>`, when its failure policy lets traffic through
//! (`failure_policy: FAIL_OPEN`, the deprecated `fail_open`) or the filter `is_optional`;
//! otherwise it is an error, so a policy plugin is never silently dropped.

use crate::config::istio::metadata_exchange::MetadataExchange;
use crate::config::istio::stats::PluginConfig as StatsConfig;
use crate::config::{self, ConfigError, Within};
use crate::stats::Store;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::extensions::wasm::v3 as wasm_pb;
use envoy_types::pb::google::protobuf::{Any, StringValue};
use prost::{Message, Name};

/// Envoy's runtime name for native plugins compiled into the proxy.
pub const NULL_RUNTIME: &str = "envoy.wasm.runtime.null";

/// An Istio plugin of the `null` runtime, with its decoded configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum NullVmPlugin {
    /// `envoy.wasm.metadata_exchange`.
    MetadataExchange(MetadataExchange),
    /// `envoy.wasm.stats`.
    Stats(Box<StatsConfig>),
}

/// Compile a Wasm filter's `config`. `Ok(None)`: skipped (a real VM, allowed to fail open).
pub(crate) fn compile(
    config: Option<&wasm_pb::PluginConfig>,
    filter_name: &str,
    is_optional: bool,
    store: &Store,
) -> Result<Option<NullVmPlugin>, ConfigError> {
    let config = config.ok_or_else(|| ConfigError::new("config", "is required"))?;
    let Some(wasm_pb::plugin_config::Vm::VmConfig(vm)) = &config.vm else {
        return Err(ConfigError::new("config.vm_config", "is required"));
    };
    if vm.runtime != NULL_RUNTIME {
        #[allow(deprecated)] // fail_open: still what Istio's WasmPlugin sets
        let fail_open =
            config.fail_open || config.failure_policy == wasm_pb::FailurePolicy::FailOpen as i32;
        if fail_open || is_optional {
            tracing::warn!(
                filter = filter_name,
                runtime = %vm.runtime,
                "Wasm filter skipped: tern runs no Wasm VM, and the filter may fail open"
            );
            store
                .counter(format!("tern.config.skipped.{filter_name}"))
                .inc();
            return Ok(None);
        }
        return Err(ConfigError::new(
            "config.vm_config.runtime",
            format!(
                "Wasm runtime {} is not supported (tern runs no Wasm VM); \
                 set failure_policy FAIL_OPEN or is_optional to skip the filter",
                vm.runtime
            ),
        ));
    }
    let code = null_vm_code(vm).within("config.vm_config.code")?;
    let configuration = config.configuration.as_ref();
    match code {
        "envoy.wasm.metadata_exchange" => Ok(Some(NullVmPlugin::MetadataExchange(
            plugin_configuration(configuration).within("config.configuration")?,
        ))),
        "envoy.wasm.stats" => Ok(Some(NullVmPlugin::Stats(Box::new(
            plugin_configuration(configuration).within("config.configuration")?,
        )))),
        other => Err(ConfigError::new(
            "config.vm_config.code",
            format!("null-VM plugin {other} is not known"),
        )),
    }
}

/// The plugin name of a `null` VM: `code.local.inline_string`.
fn null_vm_code(vm: &wasm_pb::VmConfig) -> Result<&str, ConfigError> {
    use core_pb::async_data_source::Specifier;
    use core_pb::data_source::Specifier as Data;
    match vm.code.as_ref().and_then(|c| c.specifier.as_ref()) {
        Some(Specifier::Local(core_pb::DataSource {
            specifier: Some(Data::InlineString(s)),
            ..
        })) => Ok(s.as_str()),
        _ => Err(ConfigError::new(
            "local.inline_string",
            "a null-VM plugin is named by local.inline_string",
        )),
    }
}

/// A plugin's `configuration`: absent (defaults), the message itself (plain or in a
/// `TypedStruct`), or its JSON in a `google.protobuf.StringValue` (older Istio releases).
fn plugin_configuration<T: Message + Name + Default>(any: Option<&Any>) -> Result<T, ConfigError> {
    let Some(any) = any else {
        return Ok(T::default());
    };
    if any.type_url == StringValue::type_url() {
        let text = StringValue::decode(any.value.as_slice())
            .map_err(|e| ConfigError::new("", format!("cannot decode StringValue: {e}")))?
            .value;
        if text.trim().is_empty() {
            return Ok(T::default());
        }
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ConfigError::new("value", format!("invalid JSON: {e}")))?;
        return config::from_json(json).within("value");
    }
    config::typed_config(any)?.decode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(runtime: &str, code: &str, configuration: Option<Any>) -> wasm_pb::PluginConfig {
        use core_pb::async_data_source::Specifier;
        use core_pb::data_source::Specifier as Data;
        wasm_pb::PluginConfig {
            vm: Some(wasm_pb::plugin_config::Vm::VmConfig(wasm_pb::VmConfig {
                runtime: runtime.into(),
                code: Some(core_pb::AsyncDataSource {
                    specifier: Some(Specifier::Local(core_pb::DataSource {
                        specifier: Some(Data::InlineString(code.into())),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            configuration,
            ..Default::default()
        }
    }

    #[test]
    fn null_vm_plugins_decode_their_configuration() {
        let store = Store::new();
        let mx = MetadataExchange {
            protocol: "istio-peer-exchange".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: MetadataExchange::type_url(),
            value: mx.encode_to_vec(),
        };
        let p = plugin(NULL_RUNTIME, "envoy.wasm.metadata_exchange", Some(any));
        assert_eq!(
            compile(Some(&p), "istio.metadata_exchange", false, &store).unwrap(),
            Some(NullVmPlugin::MetadataExchange(mx))
        );
        let json = Any {
            type_url: StringValue::type_url(),
            value: StringValue {
                value: r#"{"disable_host_header_fallback": true}"#.into(),
            }
            .encode_to_vec(),
        };
        let p = plugin(NULL_RUNTIME, "envoy.wasm.stats", Some(json));
        let Some(NullVmPlugin::Stats(s)) = compile(Some(&p), "istio.stats", false, &store).unwrap()
        else {
            panic!("stats plugin expected");
        };
        assert!(s.disable_host_header_fallback);
        let p = plugin(NULL_RUNTIME, "envoy.wasm.unknown", None);
        assert!(compile(Some(&p), "x", false, &store).is_err());
    }

    #[test]
    fn real_vms_fail_closed_unless_allowed_to_fail_open() {
        let store = Store::new();
        let mut p = plugin("envoy.wasm.runtime.v8", "", None);
        let e = compile(Some(&p), "acme.authz", false, &store).unwrap_err();
        assert!(e.to_string().contains("envoy.wasm.runtime.v8"), "{e}");
        assert_eq!(compile(Some(&p), "acme.authz", true, &store).unwrap(), None);
        p.failure_policy = wasm_pb::FailurePolicy::FailOpen as i32;
        assert_eq!(
            compile(Some(&p), "acme.authz", false, &store).unwrap(),
            None
        );
        assert_eq!(
            store.counter_value("tern.config.skipped.acme.authz"),
            Some(2)
        );
    }
}
