use super::ConfigError;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use std::net::IpAddr;

/// A CIDR range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// From a `CidrRange`; errors name the field.
    pub fn from_proto(c: &core_pb::CidrRange) -> Result<Self, ConfigError> {
        let addr: IpAddr = c.address_prefix.parse().map_err(|_| {
            ConfigError::new(
                "address_prefix",
                format!("malformed IP address: {}", c.address_prefix),
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = c.prefix_len.as_ref().map_or(max, |v| v.value);
        if len > max {
            return Err(ConfigError::new(
                "prefix_len",
                format!("{len} is longer than {max}"),
            ));
        }
        Ok(Self {
            addr,
            len: len as u8,
        })
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses match IPv4 ranges).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len))
                };
                (u32::from(a) & mask) == (u32::from(b) & mask)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.len))
                };
                (u128::from(a) & mask) == (u128::from(b) & mask)
            }
            _ => false,
        }
    }
}
