use super::ConfigError;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A resolved `envoy.config.core.v3.Address`: an IP socket address, a Unix socket (`pipe`), or
/// an Envoy internal address (a listener reached in-process by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `socket_address` with an IP literal.
    Tcp(SocketAddr),
    /// `pipe.path`; a leading `@` means the Linux abstract namespace.
    Pipe(PathBuf),
    /// `envoy_internal_address.server_listener_name`.
    Internal(String),
}

impl Address {
    /// Convert an `Address` whose socket address must be an IP literal (listeners, STATIC
    /// cluster endpoints).
    pub fn from_proto(a: &core_pb::Address) -> Result<Self, ConfigError> {
        use core_pb::address::Address as A;
        match &a.address {
            Some(A::SocketAddress(sa)) => {
                let (host, port) = socket_address_of(sa)?;
                let ip: IpAddr = host.parse().map_err(|_| {
                    ConfigError::new(
                        "socket_address.address",
                        format!("malformed IP address: {host}"),
                    )
                })?;
                Ok(Address::Tcp(SocketAddr::new(ip, port)))
            }
            Some(A::Pipe(p)) => {
                if p.path.is_empty() {
                    return Err(ConfigError::new("pipe.path", "must not be empty"));
                }
                Ok(Address::Pipe(PathBuf::from(&p.path)))
            }
            Some(A::EnvoyInternalAddress(i)) => {
                use core_pb::envoy_internal_address::AddressNameSpecifier as N;
                match &i.address_name_specifier {
                    Some(N::ServerListenerName(n)) => Ok(Address::Internal(n.clone())),
                    None => Err(ConfigError::new(
                        "envoy_internal_address",
                        "server_listener_name is required",
                    )),
                }
            }
            None => Err(ConfigError::new(
                "address",
                "one of socket_address, pipe or envoy_internal_address is required",
            )),
        }
    }

    /// The IP socket address, if this is one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(a) => Some(*a),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    /// Envoy's rendering: `1.2.3.4:80`, `[::1]:80`, the pipe path, `envoy://name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Pipe(p) => write!(f, "{}", p.display()),
            Address::Internal(n) => write!(f, "envoy://{n}"),
        }
    }
}

/// Host string and port of a `SocketAddress` (named ports are not supported, as in Envoy
/// without a custom resolver).
pub fn socket_address_of(sa: &core_pb::SocketAddress) -> Result<(&str, u16), ConfigError> {
    use core_pb::socket_address::PortSpecifier;
    if sa.protocol != core_pb::socket_address::Protocol::Tcp as i32 {
        return Err(ConfigError::new(
            "socket_address.protocol",
            "only TCP is supported",
        ));
    }
    let port = match &sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(*p).map_err(|_| {
            ConfigError::new(
                "socket_address.port_value",
                format!("port {p} out of range"),
            )
        })?,
        Some(PortSpecifier::NamedPort(n)) => {
            return Err(ConfigError::new(
                "socket_address.named_port",
                format!("named port {n:?} needs a resolver, which tern does not have"),
            ));
        }
        None => 0,
    };
    Ok((sa.address.as_str(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(addr: &str, port: u32) -> core_pb::Address {
        core_pb::Address {
            address: Some(core_pb::address::Address::SocketAddress(
                core_pb::SocketAddress {
                    address: addr.into(),
                    port_specifier: Some(core_pb::socket_address::PortSpecifier::PortValue(port)),
                    ..Default::default()
                },
            )),
        }
    }

    #[test]
    fn converts_ipv4_ipv6_and_pipe() {
        assert_eq!(
            Address::from_proto(&sock("127.0.0.1", 80))
                .unwrap()
                .to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(
            Address::from_proto(&sock("::1", 8080)).unwrap().to_string(),
            "[::1]:8080"
        );
        let pipe = core_pb::Address {
            address: Some(core_pb::address::Address::Pipe(core_pb::Pipe {
                path: "/tmp/x".into(),
                mode: 0,
            })),
        };
        assert_eq!(
            Address::from_proto(&pipe).unwrap(),
            Address::Pipe("/tmp/x".into())
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Address::from_proto(&sock("localhost", 80)).is_err());
        assert!(Address::from_proto(&sock("1.2.3.4", 70000)).is_err());
        assert!(Address::from_proto(&core_pb::Address { address: None }).is_err());
    }
}
