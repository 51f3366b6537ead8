//! The admin API (Envoy's `/config_dump`, `/stats`, `/clusters`...). It reads snapshots, the
//! xDS store and stats; it never writes them.

pub mod config_dump;
