//! Envoy's response flags (`%RESPONSE_FLAGS%`): why a stream ended the way it did, with
//! Envoy's short letters (`UF`, `NR`, ...) and long names (`UpstreamConnectionFailure`).

/// One response flag. The order is Envoy's `StreamInfo::ResponseFlag` (its bit index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ResponseFlag {
    /// `LH`: the local service failed its health check.
    FailedLocalHealthCheck,
    /// `UH`: no healthy upstream host in the cluster.
    NoHealthyUpstream,
    /// `UT`: the upstream request timed out.
    UpstreamRequestTimeout,
    /// `LR`: the stream was reset locally.
    LocalReset,
    /// `UR`: the upstream reset the stream.
    UpstreamRemoteReset,
    /// `UF`: the upstream connection could not be established.
    UpstreamConnectionFailure,
    /// `UC`: the upstream connection closed.
    UpstreamConnectionTermination,
    /// `UO`: a circuit breaker was open.
    UpstreamOverflow,
    /// `NR`: no route (HTTP) or no filter chain (listener).
    NoRouteFound,
    /// `DI`: a fault filter delayed the request.
    DelayInjected,
    /// `FI`: a fault filter aborted the request.
    FaultInjected,
    /// `RL`: rate limited locally.
    RateLimited,
    /// `UAEX`: denied by an external authorization service.
    UnauthorizedExternalService,
    /// `RLSE`: the rate limit service failed.
    RateLimitServiceError,
    /// `DC`: the downstream connection closed before the stream ended.
    DownstreamConnectionTermination,
    /// `URX`: retries (HTTP) or connect attempts (TCP) ran out.
    UpstreamRetryLimitExceeded,
    /// `SI`: the stream idle timeout fired.
    StreamIdleTimeout,
    /// `IH`: an `x-envoy-*` request header had an invalid value.
    InvalidEnvoyRequestHeaders,
    /// `DPE`: the downstream request broke the HTTP protocol.
    DownstreamProtocolError,
    /// `UMSDR`: the upstream request reached its max stream duration.
    UpstreamMaxStreamDurationReached,
    /// `RFCF`: the response came from the cache filter.
    ResponseFromCacheFilter,
    /// `NFCF`: a filter's config (ECDS) was not found.
    NoFilterConfigFound,
    /// `DT`: the request or connection exceeded its max duration.
    DurationTimeout,
    /// `UPE`: the upstream response broke the HTTP protocol.
    UpstreamProtocolError,
    /// `NC`: the cluster was not found.
    NoClusterFound,
    /// `OM`: the overload manager terminated the request.
    OverloadManager,
    /// `DF`: DNS resolution of the upstream failed.
    DnsResolutionFailed,
    /// `DO`: dropped by the cluster's drop_overload.
    DropOverload,
}

use ResponseFlag as F;

/// Every flag with its short and long name, in Envoy's order.
const NAMES: [(ResponseFlag, &str, &str); 28] = [
    (F::FailedLocalHealthCheck, "LH", "FailedLocalHealthCheck"),
    (F::NoHealthyUpstream, "UH", "NoHealthyUpstream"),
    (F::UpstreamRequestTimeout, "UT", "UpstreamRequestTimeout"),
    (F::LocalReset, "LR", "LocalReset"),
    (F::UpstreamRemoteReset, "UR", "UpstreamRemoteReset"),
    (
        F::UpstreamConnectionFailure,
        "UF",
        "UpstreamConnectionFailure",
    ),
    (
        F::UpstreamConnectionTermination,
        "UC",
        "UpstreamConnectionTermination",
    ),
    (F::UpstreamOverflow, "UO", "UpstreamOverflow"),
    (F::NoRouteFound, "NR", "NoRouteFound"),
    (F::DelayInjected, "DI", "DelayInjected"),
    (F::FaultInjected, "FI", "FaultInjected"),
    (F::RateLimited, "RL", "RateLimited"),
    (
        F::UnauthorizedExternalService,
        "UAEX",
        "UnauthorizedExternalService",
    ),
    (F::RateLimitServiceError, "RLSE", "RateLimitServiceError"),
    (
        F::DownstreamConnectionTermination,
        "DC",
        "DownstreamConnectionTermination",
    ),
    (
        F::UpstreamRetryLimitExceeded,
        "URX",
        "UpstreamRetryLimitExceeded",
    ),
    (F::StreamIdleTimeout, "SI", "StreamIdleTimeout"),
    (
        F::InvalidEnvoyRequestHeaders,
        "IH",
        "InvalidEnvoyRequestHeaders",
    ),
    (F::DownstreamProtocolError, "DPE", "DownstreamProtocolError"),
    (
        F::UpstreamMaxStreamDurationReached,
        "UMSDR",
        "UpstreamMaxStreamDurationReached",
    ),
    (
        F::ResponseFromCacheFilter,
        "RFCF",
        "ResponseFromCacheFilter",
    ),
    (F::NoFilterConfigFound, "NFCF", "NoFilterConfigFound"),
    (F::DurationTimeout, "DT", "DurationTimeout"),
    (F::UpstreamProtocolError, "UPE", "UpstreamProtocolError"),
    (F::NoClusterFound, "NC", "NoClusterFound"),
    (F::OverloadManager, "OM", "OverloadManagerTerminated"),
    (F::DnsResolutionFailed, "DF", "DnsResolutionFailed"),
    (F::DropOverload, "DO", "DropOverload"),
];

impl ResponseFlag {
    /// Envoy's short name (`%RESPONSE_FLAGS%`): `UF`, `NR`, ...
    pub fn short_name(self) -> &'static str {
        NAMES[self as usize].1
    }

    /// Envoy's long name (`%RESPONSE_FLAGS_LONG%`): `UpstreamConnectionFailure`, ...
    pub fn long_name(self) -> &'static str {
        NAMES[self as usize].2
    }

    /// The flag with this short name (as `ResponseFlagFilter.flags` names them).
    pub fn from_short_name(s: &str) -> Option<ResponseFlag> {
        NAMES.iter().find(|(_, n, _)| *n == s).map(|(f, _, _)| *f)
    }

    fn from_index(i: u8) -> Option<ResponseFlag> {
        NAMES.get(usize::from(i)).map(|(f, _, _)| *f)
    }
}

/// The response flags of one stream, in the order they were set (Envoy prints them that way:
/// `URX,UF` when the retry limit was hit before the last connect failure was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseFlags {
    bits: u32,
    order: [u8; 6],
    len: u8,
}

impl ResponseFlags {
    /// Set a flag (a flag already set keeps its place).
    pub fn insert(&mut self, f: ResponseFlag) {
        let bit = 1u32 << (f as u32);
        if self.bits & bit != 0 {
            return;
        }
        self.bits |= bit;
        if let Some(slot) = self.order.get_mut(usize::from(self.len)) {
            *slot = f as u8;
            self.len += 1;
        }
    }

    /// Whether a flag is set.
    pub fn contains(&self, f: ResponseFlag) -> bool {
        self.bits & (1u32 << (f as u32)) != 0
    }

    /// Whether no flag is set.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// Whether any of `other`'s flags is set.
    pub fn intersects(&self, other: &ResponseFlags) -> bool {
        self.bits & other.bits != 0
    }

    /// The flags in the order they were set (flags beyond the first six come last, in
    /// Envoy's order).
    pub fn iter(&self) -> impl Iterator<Item = ResponseFlag> + '_ {
        let ordered = self.order[..usize::from(self.len)]
            .iter()
            .filter_map(|i| ResponseFlag::from_index(*i));
        let listed = self.order[..usize::from(self.len)]
            .iter()
            .fold(0u32, |acc, i| acc | (1u32 << i));
        let rest = (0..NAMES.len() as u8)
            .filter(move |i| self.bits & !listed & (1u32 << i) != 0)
            .filter_map(ResponseFlag::from_index);
        ordered.chain(rest)
    }

    /// Write the flags as Envoy does: short or long names joined with `,`, or `-` when none
    /// is set.
    pub fn write_to(&self, long: bool, out: &mut String) {
        if self.is_empty() {
            out.push('-');
            return;
        }
        for (i, f) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(if long { f.long_name() } else { f.short_name() });
        }
    }
}

impl FromIterator<ResponseFlag> for ResponseFlags {
    fn from_iter<I: IntoIterator<Item = ResponseFlag>>(iter: I) -> Self {
        let mut s = ResponseFlags::default();
        for f in iter {
            s.insert(f);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_follow_envoy_order() {
        for (i, (f, short, long)) in NAMES.iter().enumerate() {
            assert_eq!(*f as usize, i);
            assert_eq!(ResponseFlag::from_short_name(short), Some(*f));
            assert_eq!(f.long_name(), *long);
        }
        assert_eq!(ResponseFlag::from_short_name("XX"), None);
        assert_eq!(
            ResponseFlag::OverloadManager.long_name(),
            "OverloadManagerTerminated"
        );
    }

    #[test]
    fn flags_print_in_insertion_order() {
        let mut f = ResponseFlags::default();
        let mut s = String::new();
        f.write_to(false, &mut s);
        assert_eq!(s, "-");
        f.insert(ResponseFlag::UpstreamRetryLimitExceeded);
        f.insert(ResponseFlag::UpstreamConnectionFailure);
        f.insert(ResponseFlag::UpstreamRetryLimitExceeded);
        s.clear();
        f.write_to(false, &mut s);
        assert_eq!(s, "URX,UF");
        s.clear();
        f.write_to(true, &mut s);
        assert_eq!(s, "UpstreamRetryLimitExceeded,UpstreamConnectionFailure");
        assert!(f.contains(ResponseFlag::UpstreamConnectionFailure));
        assert!(!f.contains(ResponseFlag::NoRouteFound));
    }

    #[test]
    fn more_flags_than_the_order_list_holds_are_all_printed() {
        let all: ResponseFlags = NAMES.iter().rev().map(|(f, _, _)| *f).collect();
        assert_eq!(all.iter().count(), NAMES.len());
        let first: Vec<_> = all.iter().take(2).collect();
        assert_eq!(
            first,
            [
                ResponseFlag::DropOverload,
                ResponseFlag::DnsResolutionFailed
            ]
        );
    }
}
