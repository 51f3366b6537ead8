//! Dubbo 2 (placeholder until the codec lands; implements [`super::XProtocol`]).
