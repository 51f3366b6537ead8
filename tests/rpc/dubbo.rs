//! Dubbo through tern.
