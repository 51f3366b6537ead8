use prost::Message;
use prost_reflect::DescriptorPool;
use std::collections::{HashMap, HashSet};

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// Full names of the fields marked `(udpa.annotations.sensitive) = true`, one a line; listed
/// by `build.rs` (the descriptor set itself does not keep custom options).
static SENSITIVE_FIELDS: &str = include_str!(concat!(env!("OUT_DIR"), "/sensitive_fields.txt"));

/// Whether the field with this full name (`package.Message.field`) is marked
/// `udpa.annotations.sensitive`: `/config_dump` redacts it, as Envoy does.
pub fn is_sensitive(full_field_name: &str) -> bool {
    static SET: std::sync::OnceLock<HashSet<&'static str>> = std::sync::OnceLock::new();
    SET.get_or_init(|| SENSITIVE_FIELDS.lines().collect())
        .contains(full_field_name)
}

/// The descriptor pool of every Envoy API message tern knows (and Istio's extension messages
/// from `proto/`), compiled by `build.rs`. It is decoded on each call and not kept: it is large,
/// and the proxy needs it only to read configuration text and to render `/config_dump`.
pub fn pool() -> DescriptorPool {
    DescriptorPool::decode(DESCRIPTOR_SET).expect("build.rs wrote a valid descriptor set")
}

/// A pool holding just the files that define `messages` (full names, with or without the
/// `type.googleapis.com/` prefix) and their imports. Names tern does not know are left out;
/// looking them up in the pool then fails with the name in the error.
///
/// The descriptor set is read at the wire level: only each file's name, package, imports and
/// message names are decoded, so finding the subset costs little memory.
pub fn pool_for<'a>(messages: impl IntoIterator<Item = &'a str>) -> DescriptorPool {
    let set = RawSet::decode(bytes::Bytes::from_static(DESCRIPTOR_SET))
        .expect("build.rs wrote a valid descriptor set");
    let heads: Vec<FileHead> = set
        .file
        .iter()
        .map(|f| FileHead::decode(f.clone()).expect("build.rs wrote valid file descriptors"))
        .collect();
    let mut file_of_message: HashMap<String, usize> = HashMap::new();
    let mut file_by_name: HashMap<&str, usize> = HashMap::new();
    for (i, f) in heads.iter().enumerate() {
        file_by_name.insert(f.name.as_str(), i);
        let prefix = if f.package.is_empty() {
            String::new()
        } else {
            format!("{}.", f.package)
        };
        for m in &f.message_type {
            index_messages(m, &prefix, i, &mut file_of_message);
        }
    }
    let mut wanted: HashSet<usize> = HashSet::new();
    let mut stack: Vec<usize> = messages
        .into_iter()
        .map(|n| n.rsplit('/').next().unwrap_or(n))
        .filter_map(|n| file_of_message.get(n).copied())
        .collect();
    while let Some(i) = stack.pop() {
        if wanted.insert(i) {
            stack.extend(
                heads[i]
                    .dependency
                    .iter()
                    .filter_map(|d| file_by_name.get(d.as_str()).copied()),
            );
        }
    }
    // build.rs wrote every file after its imports, so keeping the original order keeps the
    // subset in dependency order.
    let subset = RawSet {
        file: set
            .file
            .iter()
            .enumerate()
            .filter(|(i, _)| wanted.contains(i))
            .map(|(_, f)| f.clone())
            .collect(),
    };
    DescriptorPool::decode(subset.encode_to_vec().as_slice())
        .expect("a closed subset of a valid descriptor set is valid")
}

/// `FileDescriptorSet` with each file left as bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSet {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    file: Vec<bytes::Bytes>,
}

/// The parts of a `FileDescriptorProto` needed to find a subset.
#[derive(Clone, PartialEq, prost::Message)]
struct FileHead {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    package: String,
    #[prost(string, repeated, tag = "3")]
    dependency: Vec<String>,
    #[prost(message, repeated, tag = "4")]
    message_type: Vec<MessageHead>,
}

/// The name and nested messages of a `DescriptorProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct MessageHead {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, repeated, tag = "3")]
    nested_type: Vec<MessageHead>,
}

fn index_messages(m: &MessageHead, prefix: &str, file: usize, out: &mut HashMap<String, usize>) {
    let full = format!("{prefix}{}", m.name);
    for nested in &m.nested_type {
        index_messages(nested, &format!("{full}."), file, out);
    }
    out.insert(full, file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_has_bootstrap_and_extensions() {
        let pool = pool();
        for name in [
            "envoy.config.bootstrap.v3.Bootstrap",
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "envoy.admin.v3.ConfigDump",
            "envoy.service.discovery.v3.DeltaDiscoveryRequest",
            "udpa.type.v1.TypedStruct",
            "xds.type.v3.TypedStruct",
            "stats.PluginConfig",
            "envoy.tcp.metadataexchange.config.MetadataExchange",
            "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
            "io.istio.http.peer_metadata.Config",
            "io.istio.network.authn.Config",
            "io.istio.http.connect_authority.Config",
            "io.istio.http.connect_baggage.Config",
            "istio.set_internal_dst_address.v1.Config",
        ] {
            assert!(pool.get_message_by_name(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn sensitive_fields_are_listed() {
        for f in [
            "envoy.extensions.transport_sockets.tls.v3.TlsCertificate.private_key",
            "envoy.extensions.transport_sockets.tls.v3.TlsCertificate.password",
            "envoy.extensions.transport_sockets.tls.v3.GenericSecret.secret",
            "envoy.extensions.transport_sockets.tls.v3.TlsSessionTicketKeys.keys",
        ] {
            assert!(is_sensitive(f), "{f}");
        }
        assert!(!is_sensitive(
            "envoy.extensions.transport_sockets.tls.v3.TlsCertificate.certificate_chain"
        ));
    }

    #[test]
    fn subset_pool_has_what_was_asked_and_its_imports_only() {
        let pool = pool_for([
            "envoy.config.bootstrap.v3.Bootstrap",
            "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "no.such.Message",
        ]);
        assert!(
            pool.get_message_by_name("envoy.config.bootstrap.v3.Bootstrap")
                .is_some()
        );
        assert!(
            pool.get_message_by_name("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy")
                .is_some()
        );
        assert!(
            pool.get_message_by_name("envoy.config.cluster.v3.Cluster")
                .is_some(),
            "an import of Bootstrap"
        );
        assert!(
            pool.get_message_by_name("envoy.extensions.filters.http.lua.v3.Lua")
                .is_none()
        );
        let (some, all) = (pool.files().count(), super::pool().files().count());
        assert!(some < all / 2, "{some} of {all} files");
    }
}
