//! The protocol layer: codecs that turn bytes into streams. HTTP/1.1 and HTTP/2 are hyper's;
//! this module holds what tern adds around them (the body type shared by both directions,
//! protocol detection, hop-by-hop header rules) and the RPC codecs (`xprotocol`: Dubbo,
//! Bolt). It knows nothing about routes or clusters.

pub mod body;
pub mod client_hello;
pub mod detect;
pub mod headers;
pub mod query;
pub mod xprotocol;
