//! tern: a service-mesh data plane that takes Envoy's place as an Istio sidecar.
//!
//! The layers follow MOSN: a network layer (`listener`), a protocol layer that turns bytes into
//! streams (`protocol`), a stream layer with filter phases and a proxy layer that routes each
//! stream upstream (`proxy`), over compiled configuration snapshots (`snapshot`) that the data
//! path reads lock-free. See `ARCHITECTURE.md` in the shared folder for the module graph.
#![warn(clippy::unwrap_used)]

pub mod access_log;
pub mod admin;
pub mod config;
pub mod filters;
pub mod format;
#[doc(hidden)]
pub mod fuzz_api;
pub mod listener;
pub mod protocol;
pub mod proxy;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod stream_info;
pub mod tls;
pub mod trace_context;
pub mod upstream;
pub mod xds;
