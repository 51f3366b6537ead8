//! Dubbo and Bolt through tern's generic proxy (`envoy.filters.network.generic_proxy`): one
//! test binary, one module per protocol.

mod support;

#[path = "rpc/common.rs"]
mod common;

#[path = "rpc/bolt.rs"]
mod bolt;
#[path = "rpc/dubbo.rs"]
mod dubbo;
