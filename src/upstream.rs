//! The upstream side: clusters, their host sets, load balancers and connection pools.
//!
//! Depends on `config`, `protocol`, `tls` and `stats` only; it never names a route or a listener.

pub mod host;
pub mod lb;
pub mod load_assignment;
