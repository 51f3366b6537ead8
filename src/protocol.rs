//! The protocol layer: codecs that turn bytes into streams. HTTP/2 is hyper's; HTTP/1.1 is
//! tern's own (`http1`, both sides);
//! this module holds what tern adds around them (the body type shared by both directions,
//! protocol detection, hop-by-hop header rules) and the RPC codecs (`xprotocol`: Dubbo,
//! Bolt). It knows nothing about routes or clusters.

pub mod body;
pub mod client_hello;
pub mod detect;
pub mod headers;
pub mod http1;
pub mod query;
pub mod xprotocol;
