//! Admin responses in Envoy's JSON: a proto message rendered by reflection with its proto
//! field names (snake_case), pretty-printed with Envoy's one-space indent.

use prost::{Message, Name};
use prost_reflect::{DynamicMessage, SerializeOptions};
use std::sync::OnceLock;

/// The descriptor pool of the admin messages tern renders (kept: the admin renders them
/// again and again, and this subset is small).
fn admin_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: OnceLock<prost_reflect::DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        crate::config::pool_for([
            "envoy.admin.v3.ServerInfo",
            "envoy.admin.v3.Listeners",
            "envoy.admin.v3.Clusters",
            "envoy.admin.v3.Memory",
            "envoy.admin.v3.Certificates",
        ])
    })
}

/// Render `m` as JSON. With `defaults`, fields at their default value are printed too (Envoy
/// does so for `/server_info`), else they are left out (`/clusters`, `/listeners`).
pub fn to_json<M: Message + Name>(m: &M, defaults: bool) -> Result<serde_json::Value, String> {
    let desc = admin_pool()
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| format!("no descriptor for {}", M::full_name()))?;
    let dynamic = DynamicMessage::decode(desc, m.encode_to_vec().as_slice())
        .map_err(|e| format!("{}: {e}", M::full_name()))?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(!defaults)
        .stringify_64_bit_integers(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| format!("{}: {e}", M::full_name()))
}

/// Envoy's pretty JSON: one space per level, a newline at the end.
pub fn pretty(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing a Value into a Vec cannot fail.
    let _ = v.serialize(&mut ser);
    out.push(b'\n');
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::admin::v3::ServerInfo;

    #[test]
    fn defaults_are_printed_only_when_asked() {
        let info = ServerInfo {
            version: "tern/1".into(),
            ..Default::default()
        };
        let with = to_json(&info, true).unwrap();
        assert_eq!(with["state"], "LIVE");
        assert_eq!(with["hot_restart_version"], "");
        let without = to_json(&info, false).unwrap();
        assert!(without.get("state").is_none());
        assert_eq!(pretty(&without), "{\n \"version\": \"tern/1\"\n}\n");
    }
}
