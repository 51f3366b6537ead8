use prost_reflect::DescriptorPool;
use std::sync::OnceLock;

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The descriptor pool of every Envoy API message tern knows (and Istio's extension messages
/// from `proto/`), compiled by `build.rs`. Decoded on first use; cloning is cheap.
pub fn pool() -> DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTOR_SET).expect("build.rs wrote a valid descriptor set")
    })
    .clone()
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
        ] {
            assert!(pool.get_message_by_name(name).is_some(), "{name} missing");
        }
    }
}
